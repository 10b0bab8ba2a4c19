//! A member's identity (what SWIM gossips about) and its state in the member table.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Server,
    Client,
}

/// What a member tells the others about itself (Consul's serf tags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    pub role: Role,
    pub datacenter: String,
    /// Servers' RPC address (`ip:port`).
    pub rpc: Option<String>,
    /// Servers' `-bootstrap-expect`.
    pub expect: u32,
    pub build: String,
}

/// The identity SWIM gossips about. `bump` changes when the member rejoins after being declared down, so the new
/// incarnation wins over the old one at the same address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u16,
    pub tags: Tags,
}

impl Member {
    pub fn new(name: &str, addr: SocketAddr, tags: Tags) -> Member {
        // A restarted agent starts from a fresh bump, so it is not mistaken for its own old, down incarnation.
        let bump = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| (d.as_millis() % 65_000) as u16)
            .unwrap_or(0);
        Member {
            name: name.into(),
            addr,
            bump,
            tags,
        }
    }
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Wrapping comparison: the newer bump wins even across the wrap.
        self.bump.wrapping_sub(adversary.bump) < u16::MAX / 2 && self.bump != adversary.bump
    }
}

/// Consul's member states (`/v1/agent/members` status codes 1, 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Alive,
    Left,
    Failed,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Alive => 1,
            Status::Left => 3,
            Status::Failed => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Left => "left",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub member: Member,
    pub status: Status,
    /// When the status last changed.
    pub since: SystemTime,
}

impl MemberInfo {
    pub fn alive(member: &Member) -> MemberInfo {
        MemberInfo {
            member: member.clone(),
            status: Status::Alive,
            since: SystemTime::now(),
        }
    }
}
