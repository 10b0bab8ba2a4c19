//! The cluster's members as the API shows them: gossip's view as plain data, and joining or force-leaving through
//! this agent's gossip, so the interfaces need not know gossip's types.

use crate::Server;
use std::net::SocketAddr;

/// A member's state (Consul's serf codes: 1 alive, 3 left, 4 failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Alive,
    Left,
    Failed,
}

impl MemberStatus {
    pub fn code(self) -> u8 {
        match self {
            MemberStatus::Alive => 1,
            MemberStatus::Left => 3,
            MemberStatus::Failed => 4,
        }
    }
}

/// One member of the gossip pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    pub server: bool,
    pub datacenter: String,
    pub build: String,
    /// Servers' RPC port, empty for client agents.
    pub rpc_port: String,
    pub bootstrap_expect: u32,
    pub status: MemberStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("this agent runs in dev mode as a single-node cluster: it has no gossip pool")]
    NoGossip,
    #[error("this agent is not in a WAN pool: only servers started with ports.serf_wan or retry_join_wan are")]
    NoWan,
    #[error(transparent)]
    Resolve(#[from] weft_gossip::ResolveError),
    #[error("gossip: {0}")]
    Gossip(String),
}

fn view(m: &weft_gossip::MemberInfo) -> MemberView {
    let tags = &m.member.tags;
    MemberView {
        name: m.member.name.clone(),
        addr: m.member.addr,
        server: tags.role == weft_gossip::Role::Server,
        datacenter: tags.datacenter.clone(),
        build: tags.build.clone(),
        rpc_port: tags
            .rpc
            .as_deref()
            .and_then(|r| r.rsplit_once(':'))
            .map(|(_, p)| p.to_string())
            .unwrap_or_default(),
        bootstrap_expect: tags.expect,
        status: match m.status {
            weft_gossip::Status::Alive => MemberStatus::Alive,
            weft_gossip::Status::Left => MemberStatus::Left,
            weft_gossip::Status::Failed => MemberStatus::Failed,
        },
    }
}

impl Server {
    /// Every member this agent knows of, itself included; `None` without gossip (dev mode).
    pub fn members(&self) -> Option<Vec<MemberView>> {
        self.gossip()
            .map(|g| g.members().iter().map(view).collect())
    }

    /// This agent as a member; `None` without gossip.
    pub fn local_member(&self) -> Option<MemberView> {
        let gossip = self.gossip()?;
        let me = gossip.local();
        gossip
            .members()
            .iter()
            .find(|m| m.member.name == me.name)
            .map(view)
    }

    /// Members of the WAN pool (every federated datacenter's servers); `None` on agents outside it.
    pub fn wan_members(&self) -> Option<Vec<MemberView>> {
        self.wan().map(|g| g.members().iter().map(view).collect())
    }

    /// Joins the WAN pool through another datacenter's server at `target` (port 8302 unless given).
    pub async fn join_wan(&self, target: &str) -> Result<(), MembershipError> {
        let wan = self.wan().ok_or(MembershipError::NoWan)?;
        let target = weft_types::addr::with_default_port(target, crate::wan::DEFAULT_PORT);
        let addrs = weft_gossip::resolve(&target).await?;
        wan.join(addrs)
            .await
            .map_err(|e| MembershipError::Gossip(e.to_string()))
    }

    /// Joins the pool through the agent at `target` (`host`, `ip`, with or without `:port`).
    pub async fn join_through(&self, target: &str) -> Result<(), MembershipError> {
        let gossip = self.gossip().ok_or(MembershipError::NoGossip)?;
        let addrs = weft_gossip::resolve(target).await?;
        gossip
            .join(addrs)
            .await
            .map_err(|e| MembershipError::Gossip(e.to_string()))
    }

    /// Marks the failed member `name` as left everywhere; false when no failed member has that name.
    pub async fn force_leave(&self, name: &str) -> Result<bool, MembershipError> {
        let gossip = self.gossip().ok_or(MembershipError::NoGossip)?;
        gossip
            .force_leave(name)
            .await
            .map_err(|e| MembershipError::Gossip(e.to_string()))
    }
}
