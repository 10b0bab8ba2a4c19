//! The server role, and every process's handle on the cluster's state.
//!
//! A [`Server`] holds a [`Store`] and is the only way to change it: every change is a [`Command`]. Where the command
//! goes depends on the process's [`Mode`]:
//! - **dev**: applied here at the next index (this process is the whole cluster);
//! - **Raft member** (`-server`): proposed through Raft; a follower sends it to the leader over the RPC port;
//! - **client agent**: sent to a server; the store here is a read replica streamed from the servers.
//!
//! The leader's loops (session TTL expiry, CA initialisation and pruning) run only while this member leads.

mod acl;
pub mod acl_leader;
mod autopilot;
mod batcher;
mod ca;
mod cluster;
mod leadership;
mod members;
pub mod metrics;
mod reconcile;
mod replica;
mod rpc;
mod seal;
mod sessions;
pub mod wan;

pub use acl::{
    resolve_in_store, AclConfig, DownPolicy, Identity, ResolveError, ResolveRequest, ResolvedToken,
};
pub use autopilot::ServerHealth;
pub use ca::{CaManagerError, SignRefusal};
pub use cluster::{Bootstrap, Hello, JoinRefusal, JoinRequest};
pub use members::{MemberStatus, MemberView, MembershipError};
pub use replica::{stream_lines, StreamLine};
pub use rpc::{ApplyAnswer, ApplyRequest, LeaderCallError, SignRequest};
pub use seal::{read_seal_key, SealKeyAnswer, SealKeyError, SealKeySource, SEAL_KEY_FILE};
pub use sessions::SessionTimers;
pub use weft_raft::{raft_id, RaftNode, Timings, TransferError};
pub use weft_rpc::{Pem, RpcTls};

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use weft_state::{ApplyResult, Command, Store, StoreError, Table};

/// How long a write waits for a leader (an election in progress) before failing with "No cluster leader"; Consul's
/// RPC hold timeout is 7 s.
pub const LEADER_WAIT: Duration = Duration::from_secs(7);

/// Static facts about this server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub datacenter: String,
    pub node_name: String,
    /// The address peers and clients see for server RPC (`/v1/status/leader`).
    pub rpc_addr: String,
    /// The CA configuration used when the cluster first initialises its CA.
    pub ca_config: weft_ca::CaConfig,
    /// The shortest leaf TTL accepted: Consul's 1 h, or a few seconds in dev mode for renewal tests.
    pub min_leaf_ttl: std::time::Duration,
    /// How often rotated-out roots are checked for pruning.
    pub ca_prune_interval: std::time::Duration,
    /// `-bootstrap-expect`: how many servers must meet before the first of them starts the cluster (0: join only).
    pub bootstrap_expect: u32,
    /// Autopilot's settings until an operator writes others into the Raft state.
    pub autopilot: weft_types::autopilot::AutopilotConfig,
    /// TLS for server RPC (Raft, forwarding, the replica stream); plain TCP when unset.
    pub rpc_tls: Option<weft_rpc::RpcTls>,
    /// Signs every RPC request with a key derived from the gossip key (when the cluster has one).
    pub rpc_auth: Option<Arc<weft_rpc::RpcAuth>>,
    /// Where the key sealing the CA's private keys at rest comes from.
    pub ca_seal: SealKeySource,
    /// ACL enforcement (off by default).
    pub acl: AclConfig,
}

impl ServerConfig {
    /// A configuration with Consul's defaults for the CA (72 h leaves, 1 h minimum, hourly pruning).
    pub fn new(datacenter: &str, node_name: &str, rpc_addr: &str) -> ServerConfig {
        ServerConfig {
            datacenter: datacenter.into(),
            node_name: node_name.into(),
            rpc_addr: rpc_addr.into(),
            ca_config: weft_ca::CaConfig::default(),
            min_leaf_ttl: std::time::Duration::from_secs(3600),
            ca_prune_interval: std::time::Duration::from_secs(3600),
            bootstrap_expect: 0,
            autopilot: weft_types::autopilot::AutopilotConfig::default(),
            rpc_tls: None,
            rpc_auth: None,
            ca_seal: SealKeySource::Memory,
            acl: AclConfig::default(),
        }
    }
}

/// Why `remove-peer` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("this agent is not a member of a Raft cluster")]
    NotRaft,
    #[error("id {0:?} was not found in the Raft configuration")]
    UnknownId(String),
    #[error("address {0:?} was not found in the Raft configuration")]
    UnknownAddress(String),
    #[error(
        "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
    )]
    Unnamed,
    #[error("{0}")]
    Raft(String),
    #[error("cannot transfer leadership: {0}")]
    Transfer(weft_raft::TransferError),
}

/// Why a Raft RPC was not answered.
#[derive(Debug, thiserror::Error)]
pub enum RaftCallError {
    #[error("this agent is not a Raft server")]
    NotRaft,
    #[error(transparent)]
    Refused(#[from] weft_raft::RaftRpcError),
}

/// Where this process's writes go.
pub enum Mode {
    /// Dev mode: applied here.
    Dev,
    /// A Raft member.
    Raft(Arc<RaftNode>),
    /// A client agent: writes go to these servers (RPC addresses), reads come from a streamed replica.
    Client(Arc<replica::Replica>),
}

/// A cheap handle to the server; clones share one store.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    store: Arc<RwLock<Store>>,
    sessions: SessionTimers,
    mode: Mode,
    http: weft_rpc::HttpClient,
    autopilot: autopilot::Tracker,
    gossip: std::sync::OnceLock<weft_gossip::Gossip>,
    /// The WAN pool, on servers that federate with other datacenters.
    wan: std::sync::OnceLock<weft_gossip::Gossip>,
    /// RPC clients towards other datacenters' servers, by datacenter (see [`Server::http_for`]).
    remote_http: std::sync::Mutex<std::collections::HashMap<String, weft_rpc::HttpClient>>,
    /// Raft members batch concurrent writes into one log entry.
    batcher: Option<batcher::Batcher>,
    /// The term in which this member, as leader, has applied everything committed before it took over: reads it
    /// answers from then on are not stale.
    ready_term: std::sync::atomic::AtomicU64,
    /// The last leaf serial this member handed out: concurrent signings each take the next one, so two leaves never
    /// share a serial even before either is recorded in the log.
    last_serial: std::sync::Mutex<u64>,
    /// The key the CA's private keys are sealed with in the store (see [`seal`]); `None` until created or fetched.
    seal_key: RwLock<Option<weft_ca::seal::SealKey>>,
    /// Resolved tokens (see [`acl`]).
    tokens: acl::TokenCache,
    /// The agent's own token (`acl.tokens.agent`, else `default`): what its anti-entropy writes are authorised by.
    agent_token: RwLock<Option<String>>,
    /// Counters, timings and gauges for `/v1/agent/metrics`.
    metrics: metrics::Metrics,
}

/// Milliseconds since the Unix epoch: the clock commands carry.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Server {
    /// A dev-mode server: one process, its own leader.
    pub fn new(config: ServerConfig) -> Server {
        Server::with_mode(config, Arc::new(RwLock::new(Store::new())), Mode::Dev)
    }

    /// A Raft member over `store`, which the member's state machine applies to.
    pub fn raft(config: ServerConfig, node: Arc<RaftNode>) -> Server {
        let store = node.store().clone();
        Server::with_mode(config, store, Mode::Raft(node))
    }

    /// A client agent's view of the servers at `servers` (RPC addresses): starts streaming the replica.
    pub fn client(config: ServerConfig, servers: Vec<String>) -> Server {
        let store = Arc::new(RwLock::new(Store::new()));
        let http = weft_rpc::http_client(config.rpc_tls.as_ref(), config.rpc_auth.clone());
        let replica = replica::Replica::new(servers, store.clone());
        let server = Server::with_mode(config, store, Mode::Client(replica.clone()));
        replica.start(http);
        server
    }

    fn with_mode(config: ServerConfig, store: Arc<RwLock<Store>>, mode: Mode) -> Server {
        let http = weft_rpc::http_client(config.rpc_tls.as_ref(), config.rpc_auth.clone());
        let batcher = match &mode {
            Mode::Raft(node) => Some(batcher::Batcher::start(node.clone())),
            _ => None,
        };
        let seal_key = RwLock::new(config.ca_seal.initial());
        Server {
            inner: Arc::new(Inner {
                seal_key,
                config,
                store,
                sessions: SessionTimers::default(),
                mode,
                http,
                autopilot: autopilot::Tracker::default(),
                gossip: std::sync::OnceLock::new(),
                wan: std::sync::OnceLock::new(),
                remote_http: Default::default(),
                ready_term: std::sync::atomic::AtomicU64::new(0),
                last_serial: std::sync::Mutex::new(0),
                batcher,
                tokens: acl::TokenCache::default(),
                agent_token: RwLock::new(None),
                metrics: metrics::Metrics::default(),
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub fn mode(&self) -> &Mode {
        &self.inner.mode
    }

    /// The Raft member, on servers of a cluster.
    pub fn raft_node(&self) -> Option<&Arc<RaftNode>> {
        match &self.inner.mode {
            Mode::Raft(node) => Some(node),
            _ => None,
        }
    }

    /// Consul's `raft` stats for `/v1/agent/self`; `None` outside a Raft cluster.
    pub fn raft_stats(&self) -> Option<std::collections::BTreeMap<&'static str, String>> {
        self.raft_node().map(|n| n.stats())
    }

    /// The last index in this server's Raft log (the store's last index in dev mode).
    pub fn last_log_index(&self) -> u64 {
        match self.raft_node() {
            Some(node) => node.last_log_index(),
            None => self.read().last_index(),
        }
    }

    /// Answers a Raft RPC from a peer (`append`, `vote`, `snapshot`); refused on agents that are no Raft member.
    pub async fn handle_raft(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, RaftCallError> {
        match self.raft_node() {
            Some(node) => Ok(node.handle(kind, body).await?),
            None => Err(RaftCallError::NotRaft),
        }
    }

    /// True on dev agents and cluster servers; false on client agents.
    pub fn is_server(&self) -> bool {
        !matches!(self.inner.mode, Mode::Client(_))
    }

    /// The pooled HTTP client for server RPC (forwarded writes and API requests).
    pub fn http(&self) -> &weft_rpc::HttpClient {
        &self.inner.http
    }

    /// Applies a command wherever this process's writes go, waiting for a leader for up to [`LEADER_WAIT`].
    pub async fn write(&self, cmd: Command) -> Result<ApplyResult, StoreError> {
        self.write_indexed(cmd).await.1
    }

    /// Like [`Server::write`], also returning the log index the command was applied at. On a client agent the
    /// answer comes only once the local replica has caught up with that index, so the caller reads its own write.
    pub async fn write_indexed(&self, cmd: Command) -> (u64, Result<ApplyResult, StoreError>) {
        let started = std::time::Instant::now();
        let answer = self.write_indexed_unmeasured(cmd).await;
        let m = &self.inner.metrics;
        if matches!(self.inner.mode, Mode::Client(_)) {
            m.count("consul.client.rpc", vec![], 1.0);
            if answer.1.is_err() {
                m.count("consul.client.rpc.failed", vec![], 1.0);
            }
        } else {
            m.count("consul.raft.apply", vec![], 1.0);
            m.time("consul.raft.commitTime", vec![], started.elapsed());
        }
        answer
    }

    /// Counters, timings and gauges (`/v1/agent/metrics`).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    async fn write_indexed_unmeasured(
        &self,
        cmd: Command,
    ) -> (u64, Result<ApplyResult, StoreError>) {
        let (index, result) = match &self.inner.mode {
            Mode::Dev => self.apply_here(&cmd),
            Mode::Raft(_) => match self.batcher() {
                Some(batcher) => rpc::write_through_raft(self, batcher, cmd.clone()).await,
                None => (0, Err(StoreError::Unavailable("no write batcher".into()))),
            },
            Mode::Client(replica) => {
                let answer = rpc::write_via_servers(self, replica, cmd.clone()).await;
                if answer.0 > 0 {
                    replica.wait_for(answer.0, Duration::from_secs(2)).await;
                }
                answer
            }
        };
        if let (Command::SessionDestroy { id }, Ok(_)) = (&cmd, &result) {
            self.inner.sessions.forget(id);
        }
        (index, result)
    }

    /// Dev mode: the store's lock serialises writes, which is what a log gives.
    fn apply_here(&self, cmd: &Command) -> (u64, Result<ApplyResult, StoreError>) {
        let mut store = self
            .inner
            .store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = store.last_index().saturating_add(1);
        (index, store.apply(index, now_ms(), cmd))
    }

    /// A read view of the store. Keep it short: writers wait while it is held.
    pub fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.inner
            .store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self, table: Table) -> watch::Receiver<u64> {
        self.read().watches().subscribe(table)
    }

    /// The leader's RPC address, when one is known.
    pub fn leader(&self) -> Option<String> {
        match &self.inner.mode {
            Mode::Dev => Some(self.inner.config.rpc_addr.clone()),
            Mode::Raft(node) => node.leader().map(|(_, addr)| addr),
            Mode::Client(replica) => replica.leader(),
        }
    }

    /// The current Raft term (1 in dev mode, which has one; 0 on a client agent).
    pub fn term(&self) -> u64 {
        match &self.inner.mode {
            Mode::Dev => 1,
            Mode::Raft(node) => node.term(),
            Mode::Client(_) => 0,
        }
    }

    /// True when this member leads and has applied every entry committed before its term began, so its own state
    /// answers default-mode reads (a new leader learns the commit point only by committing in its own term).
    pub fn leader_ready(&self) -> bool {
        match &self.inner.mode {
            Mode::Dev => true,
            Mode::Raft(node) => {
                node.is_leader()
                    && self
                        .inner
                        .ready_term
                        .load(std::sync::atomic::Ordering::SeqCst)
                        == node.term()
            }
            Mode::Client(_) => false,
        }
    }

    pub(crate) fn set_ready_term(&self, term: u64) {
        self.inner
            .ready_term
            .store(term, std::sync::atomic::Ordering::SeqCst);
    }

    /// True when this process serves reads and leader-only work itself (dev mode, or the Raft leader).
    pub fn is_leader(&self) -> bool {
        match &self.inner.mode {
            Mode::Dev => true,
            Mode::Raft(node) => node.is_leader(),
            Mode::Client(_) => false,
        }
    }

    /// The voting servers' RPC addresses.
    pub fn peers(&self) -> Vec<String> {
        match &self.inner.mode {
            Mode::Dev => vec![self.inner.config.rpc_addr.clone()],
            Mode::Raft(node) => node.voters().into_iter().map(|(_, a)| a).collect(),
            Mode::Client(replica) => replica.servers(),
        }
    }

    /// Milliseconds since this process last heard from the leader (`X-Consul-LastContact`); 0 on the leader.
    pub fn last_contact_ms(&self) -> Option<u64> {
        match &self.inner.mode {
            Mode::Dev => Some(0),
            Mode::Raft(node) => node.last_contact_ms(),
            Mode::Client(replica) => replica.last_contact_ms(),
        }
    }

    /// `?consistent`: confirms leadership with a quorum and waits until this member has applied everything
    /// committed before the read began.
    pub async fn ensure_linearizable(&self) -> Result<(), StoreError> {
        match &self.inner.mode {
            Mode::Raft(node) => {
                match tokio::time::timeout(LEADER_WAIT, node.ensure_linearizable()).await {
                    Ok(Ok(())) => Ok(()),
                    _ => Err(StoreError::NoLeader),
                }
            }
            _ => Ok(()),
        }
    }

    /// Attaches this agent's gossip membership (cluster modes): the leader reconciles it into the catalog, and
    /// client agents learn the servers' RPC addresses from it.
    pub fn set_gossip(&self, gossip: weft_gossip::Gossip) {
        if let Mode::Client(replica) = &self.inner.mode {
            replica.follow_gossip(&gossip);
        }
        let _ = self.inner.gossip.set(gossip);
    }

    pub fn gossip(&self) -> Option<&weft_gossip::Gossip> {
        self.inner.gossip.get()
    }

    pub(crate) fn batcher(&self) -> Option<&batcher::Batcher> {
        self.inner.batcher.as_ref()
    }

    /// Sets the token this agent's own writes (its node, anti-entropy) carry to the servers.
    pub fn set_agent_token(&self, token: Option<String>) {
        *self
            .inner
            .agent_token
            .write()
            .unwrap_or_else(|p| p.into_inner()) = token;
    }

    pub(crate) fn agent_token(&self) -> Option<String> {
        self.inner
            .agent_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn token_cache(&self) -> &acl::TokenCache {
        &self.inner.tokens
    }

    pub(crate) fn autopilot(&self) -> &autopilot::Tracker {
        &self.inner.autopilot
    }

    /// Removes a server from the Raft configuration by its Raft id or RPC address (`remove-peer`). Leader only;
    /// the API forwards the request there.
    pub async fn remove_peer(
        &self,
        id: Option<&str>,
        address: Option<&str>,
    ) -> Result<(), PeerError> {
        let Mode::Raft(node) = self.mode() else {
            return Err(PeerError::NotRaft);
        };
        let target = node.members().into_iter().find(|(i, a, _)| {
            id.is_some_and(|want| want == i.to_string()) || address.is_some_and(|want| want == a)
        });
        let Some((target, _, _)) = target else {
            return Err(match (id, address) {
                (Some(id), _) => PeerError::UnknownId(id.to_string()),
                (_, Some(a)) => PeerError::UnknownAddress(a.to_string()),
                _ => PeerError::Unnamed,
            });
        };
        node.remove_server(target)
            .await
            .map_err(|e| PeerError::Raft(e.to_string()))
    }

    /// Leader only: hands leadership to the server with Raft ID `id` (else to the voter with the most of the log);
    /// answers the new leader's ID.
    pub async fn transfer_leader(&self, id: Option<&str>) -> Result<String, PeerError> {
        let Mode::Raft(node) = self.mode() else {
            return Err(PeerError::NotRaft);
        };
        let target = match id {
            None => None,
            Some(id) => Some(
                node.members()
                    .into_iter()
                    .find(|(i, _, _)| i.to_string() == id)
                    .map(|(i, _, _)| i)
                    .ok_or_else(|| PeerError::UnknownId(id.to_string()))?,
            ),
        };
        node.transfer_leadership(target)
            .await
            .map(|leader| leader.to_string())
            .map_err(PeerError::Transfer)
    }

    pub fn session_timers(&self) -> &SessionTimers {
        &self.inner.sessions
    }

    /// Runs the leader's loops (session expiry, CA initialisation and pruning) whenever this member leads: always
    /// in dev mode, never on client agents. They stop when the returned handle is dropped or aborted.
    pub fn spawn_leader_loops(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(leadership::run(self.clone()))
    }
}
