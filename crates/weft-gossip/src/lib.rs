//! Gossip membership among all agents (Consul's serf LAN pool, port 8301): who is in the cluster, who is alive,
//! who failed and who left.
//!
//! SWIM with infection-style dissemination and suspicion comes from `foca`; this crate gives it a UDP socket, a
//! clock, optional encryption (`-encrypt`, AES-GCM with a key from `weft keygen`) and a member table with Consul's
//! three states. Each member's identity carries its tags (role, datacenter, RPC address), so agents find the
//! servers through gossip, as Consul's do.

mod coordinates;
mod crypto;
mod events;
mod keyring_query;
mod member;
mod resolve;
mod runner;

pub use coordinates::PeerCoordinates;
pub use crypto::{canonical_key, generate_key, KeyError, Keyring, MAX_KEYS};
pub use keyring_query::{KeyOp, KeyringAnswer, NodeKeys, QUERY_TIMEOUT};
pub use member::{Member, MemberInfo, Role, Status, Tags};
pub use resolve::{resolve, ResolveError, DEFAULT_PORT};

use std::net::SocketAddr;
use std::time::Duration;

/// Where an agent keeps its gossip keyring, under its data dir (the keys in use, primary first; mode 0600).
pub const KEYRING_FILE: &str = "gossip/local.keyring";
use tokio::sync::{mpsc, oneshot, watch};

/// How this agent takes part in gossip.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub name: String,
    /// The UDP address to listen on.
    pub bind: SocketAddr,
    /// The address other members reach this one at.
    pub advertise: SocketAddr,
    pub tags: Tags,
    /// Encrypts every packet when set; packets that do not decrypt are dropped (and counted).
    pub keyring: Option<Keyring>,
    /// Failed members are forgotten after this long (Consul's `reconnect_timeout`, 72 h).
    pub reconnect_timeout: Duration,
    /// How often the SWIM protocol probes a random member.
    pub probe_period: Duration,
}

impl GossipConfig {
    pub fn new(name: &str, bind: SocketAddr, advertise: SocketAddr, tags: Tags) -> GossipConfig {
        GossipConfig {
            name: name.into(),
            bind,
            advertise,
            tags,
            keyring: None,
            reconnect_timeout: Duration::from_secs(72 * 3600),
            probe_period: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot listen for gossip on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gossip has stopped")]
    Stopped,
    #[error("cannot send the event: {0}")]
    Event(String),
    #[error("too many keyring operations at once; try again")]
    Busy,
}

pub(crate) enum Command {
    Join(Vec<SocketAddr>),
    /// Spreads a user event (its Lamport time is set here) and answers it as sent.
    Fire(
        weft_types::event::UserEvent,
        oneshot::Sender<Result<weft_types::event::UserEvent, String>>,
    ),
    Leave(oneshot::Sender<()>),
    ForceLeave(String, oneshot::Sender<bool>),
    Keyring(KeyOp, oneshot::Sender<Result<KeyringAnswer, GossipError>>),
}

/// Bytes on the gossip socket since the agent started, all frames and the coordinate probes apart (counted after
/// sealing, so as they go on the wire, without UDP and IP headers).
#[derive(Debug, Default)]
pub struct GossipStats {
    pub sent_bytes: std::sync::atomic::AtomicU64,
    pub received_bytes: std::sync::atomic::AtomicU64,
    pub coordinate_sent_bytes: std::sync::atomic::AtomicU64,
    pub coordinate_received_bytes: std::sync::atomic::AtomicU64,
}

/// A cheap handle on the running gossip task.
#[derive(Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    members: watch::Receiver<Vec<MemberInfo>>,
    local: Member,
    reconnect_timeout: Duration,
    /// This agent's network coordinate, moved by every round-trip sample.
    coordinate: watch::Receiver<weft_types::coordinate::Coordinate>,
    /// User events as they arrive (this agent's own too), for the agent to take once.
    events: std::sync::Arc<std::sync::Mutex<Option<mpsc::Receiver<weft_types::event::UserEvent>>>>,
    stats: std::sync::Arc<GossipStats>,
    peers: PeerCoordinates,
}

impl Gossip {
    /// Binds the UDP socket and starts gossiping (alone until [`Gossip::join`]).
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        let socket = tokio::net::UdpSocket::bind(config.bind)
            .await
            .map_err(|source| GossipError::Bind {
                addr: config.bind,
                source,
            })?;
        let local = Member::new(&config.name, config.advertise, config.tags.clone());
        let reconnect_timeout = config.reconnect_timeout;
        let (commands, rx) = mpsc::channel(64);
        let (members_tx, members) = watch::channel(vec![MemberInfo::alive(&local)]);
        let (deliver, events) = mpsc::channel(events::DELIVERY_BACKLOG);
        let (coordinate_tx, coordinate) = watch::channel(Default::default());
        let stats = std::sync::Arc::new(GossipStats::default());
        let peers = PeerCoordinates::default();
        tokio::spawn(runner::run(
            config,
            socket,
            local.clone(),
            rx,
            runner::Outputs {
                members: members_tx,
                deliver,
                coordinate: coordinate_tx,
                stats: stats.clone(),
                peers: peers.clone(),
            },
        ));
        Ok(Gossip {
            commands,
            members,
            local,
            reconnect_timeout,
            coordinate,
            events: std::sync::Arc::new(std::sync::Mutex::new(Some(events))),
            stats,
            peers,
        })
    }

    /// Bytes sent and received on the gossip socket so far.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// How long failed members are kept before they are reaped.
    pub fn reconnect_timeout(&self) -> Duration {
        self.reconnect_timeout
    }

    /// This agent's own identity.
    pub fn local(&self) -> &Member {
        &self.local
    }

    /// Announces this agent to `seeds` (gossip addresses); the runner keeps retrying until it hears back.
    pub async fn join(&self, seeds: Vec<SocketAddr>) -> Result<(), GossipError> {
        self.commands
            .send(Command::Join(seeds))
            .await
            .map_err(|_| GossipError::Stopped)
    }

    /// Leaves gracefully: tells the members first, so they record "left" rather than "failed".
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Leave(tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        Ok(())
    }

    /// Marks a failed member as left on every member (`weft force-leave`); false when no failed member has the name.
    pub async fn force_leave(&self, name: &str) -> Result<bool, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ForceLeave(name.into(), tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)
    }

    /// Fires a user event: every member receives it once, this one included. Answers the event as sent, with its
    /// Lamport time.
    pub async fn fire(
        &self,
        event: weft_types::event::UserEvent,
    ) -> Result<weft_types::event::UserEvent, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Fire(event, tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await
            .map_err(|_| GossipError::Stopped)?
            .map_err(GossipError::Event)
    }

    /// Applies a keyring operation on every alive member (this one first) and answers what each holds afterwards;
    /// waits at most [`QUERY_TIMEOUT`] for the others. Without encryption, only this agent answers (with Serf's
    /// refusal) and nothing is sent.
    pub async fn keyring_operation(&self, op: KeyOp) -> Result<KeyringAnswer, GossipError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Keyring(op, tx))
            .await
            .map_err(|_| GossipError::Stopped)?;
        rx.await.map_err(|_| GossipError::Stopped)?
    }

    /// The user events this agent receives, in arrival order; `None` once taken.
    pub fn take_events(&self) -> Option<mpsc::Receiver<weft_types::event::UserEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// This agent's network coordinate (the origin until the first round-trip sample).
    pub fn coordinate(&self) -> weft_types::coordinate::Coordinate {
        self.coordinate.borrow().clone()
    }

    /// The coordinate a member last answered a round-trip probe with (`None` before its first answer).
    pub fn peer_coordinate(&self, name: &str) -> Option<weft_types::coordinate::Coordinate> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every member known, this one included.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.borrow().clone()
    }

    /// Wakes on every change of the member table.
    pub fn subscribe(&self) -> watch::Receiver<Vec<MemberInfo>> {
        self.members.clone()
    }

    /// Alive servers' RPC addresses.
    pub fn servers(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|m| m.status == Status::Alive && m.member.tags.role == Role::Server)
            .filter_map(|m| m.member.tags.rpc.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
