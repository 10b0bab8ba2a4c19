//! One server's Raft member: starting it over a data dir, writing through it, answering peers' RPCs, and the
//! membership operations (bootstrap, join, remove).

use crate::log_store::{open_in, LogStore, OpenError};
use crate::network::Network;
use crate::state_machine::{SnapshotFileError, StateMachine};
use crate::{Applied, Request, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use weft_rpc::HttpClient;
use weft_state::Store;

/// Raft timings. The defaults elect a new leader well within a second on a LAN.
#[derive(Debug, Clone)]
pub struct Timings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// A snapshot is taken after this many entries since the last one; older entries are then purged.
    pub snapshot_every: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(200),
            election_max: Duration::from_millis(400),
            snapshot_every: 8192,
        }
    }
}

/// Why a write did not happen here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// This server is not the leader; the leader's id and RPC address when known.
    #[error("not the leader")]
    ForwardToLeader(Option<(u64, String)>),
    #[error("No cluster leader")]
    NoLeader,
    #[error("raft: {0}")]
    Fatal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotFileError),
    #[error("{0}")]
    Other(String),
}

/// Why bootstrapping a cluster or a manual snapshot failed, in openraft's words: what the caller can act on apart
/// from a stopped Raft.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bootstrapping was refused: this member already has state, or is not in the member list it was given.
    #[error(transparent)]
    Initialize(openraft::error::InitializeError<u64, BasicNode>),
    /// Raft has stopped (a storage failure, a panic, or shutdown).
    #[error(transparent)]
    Fatal(#[from] openraft::error::Fatal<u64>),
}

/// Why a peer's Raft RPC got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RaftRpcError {
    /// The body is not a request of this kind (`rpc` is `append`, `vote` or `snapshot`).
    #[error("bad {rpc} request: {source}")]
    BadRequest {
        rpc: &'static str,
        source: serde_json::Error,
    },
    #[error("unknown raft RPC {0:?}")]
    UnknownKind(String),
    /// The answer could not be encoded.
    #[error(transparent)]
    Encode(serde_json::Error),
}

pub struct RaftNode {
    raft: Raft<TypeConfig>,
    id: u64,
    addr: String,
    log: LogStore,
    state: StateMachine,
    client: HttpClient,
    /// When this follower last heard from a leader (appends and heartbeats): `X-Consul-LastContact`.
    last_contact: Mutex<Option<Instant>>,
    /// The leader lease (openraft's `election_timeout_max`) and the heartbeat interval.
    pub(crate) lease: Duration,
    pub(crate) heartbeat: Duration,
    /// Bumped by each leadership transfer notice, so only the latest one gives elections back.
    pub(crate) transfer_generation: std::sync::atomic::AtomicU64,
    /// Holds writes back while this leader hands leadership over.
    pub(crate) write_gate: crate::transfer::WriteGate,
    /// This member, for tasks it spawns.
    me: std::sync::Weak<RaftNode>,
}

impl RaftNode {
    /// Opens the log and snapshot under `dir` and starts the member, speaking to its peers through `client` (the
    /// process's RPC client: TLS and authentication are its business). The store is restored from the snapshot; the
    /// log after it is re-applied by openraft.
    pub async fn start(
        id: u64,
        addr: &str,
        dir: &Path,
        store: Arc<RwLock<Store>>,
        timings: &Timings,
        client: HttpClient,
    ) -> Result<Arc<RaftNode>, StartError> {
        let log = open_in(dir)?;
        let state = StateMachine::open(dir, store)?;
        let config = Config {
            cluster_name: "weft".into(),
            heartbeat_interval: timings.heartbeat.as_millis() as u64,
            election_timeout_min: timings.election_min.as_millis() as u64,
            election_timeout_max: timings.election_max.as_millis() as u64,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(timings.snapshot_every),
            max_in_snapshot_log_to_keep: 1024,
            // openraft 0.9 gives each AppendEntries one heartbeat interval to complete, and a new leader probes a
            // follower's log by binary search from the middle of its log: with the default 300 entries (each a batch
            // of writes) per request, those probes took longer than 50 ms after a busy period, timed out and were
            // retried, and a failover stalled for a second. Small requests finish in time.
            max_payload_entries: 32,
            ..Config::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| StartError::Other(format!("raft configuration: {e}")))?,
        );
        let raft = Raft::new(
            id,
            config,
            Network::new(client.clone()),
            log.clone(),
            state.clone(),
        )
        .await
        .map_err(|e| StartError::Other(format!("raft did not start: {e}")))?;
        let node = Arc::new_cyclic(|me| RaftNode {
            raft,
            id,
            addr: addr.to_string(),
            log,
            state,
            client,
            last_contact: Mutex::new(None),
            lease: timings.election_max,
            heartbeat: timings.heartbeat,
            transfer_generation: std::sync::atomic::AtomicU64::new(0),
            write_gate: Default::default(),
            me: me.clone(),
        });
        tokio::spawn(crate::leader_watch::run(
            Arc::downgrade(&node),
            timings.election_max,
            timings.heartbeat,
        ));
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn http(&self) -> &HttpClient {
        &self.client
    }

    /// True once this member has a vote or log entries on disk: it must not bootstrap a new cluster.
    pub fn has_state(&self) -> bool {
        self.log.has_state()
    }

    /// Applied commands and snapshot installs, for replica streams to client agents.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.state.shared.events.subscribe()
    }

    pub fn store(&self) -> &Arc<RwLock<Store>> {
        &self.state.shared.store
    }

    /// Proposes commands as one log entry and waits until it is committed and applied here; answers each
    /// command's store index and result, in order.
    pub async fn write(&self, req: Request) -> Result<Vec<crate::CommandResult>, WriteError> {
        let _passing = self.write_gate.pass().await;
        match self.raft.client_write(req).await {
            Ok(resp) => Ok(resp.data.results),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => {
                        Err(WriteError::ForwardToLeader(Some((id, node.addr))))
                    }
                    _ => Err(WriteError::NoLeader),
                }
            }
            Err(e) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    /// Confirms leadership with a quorum and waits until everything committed so far is applied (`?consistent`).
    pub async fn ensure_linearizable(&self) -> Result<(), WriteError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => {
                        Err(WriteError::ForwardToLeader(Some((id, node.addr))))
                    }
                    _ => Err(WriteError::NoLeader),
                }
            }
            Err(RaftError::APIError(_)) => Err(WriteError::NoLeader),
            Err(e) => Err(WriteError::Fatal(e.to_string())),
        }
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The leader's id and RPC address, as this member knows it.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// Voting members: (id, RPC address).
    pub fn voters(&self) -> Vec<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect()
    }

    /// Every member (voters and learners) with its address and whether it votes.
    pub fn members(&self) -> Vec<(u64, String, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Consul's `raft` stats (`/v1/agent/self`), as Consul writes them: every value a string.
    pub fn stats(&self) -> std::collections::BTreeMap<&'static str, String> {
        let m = self.raft.metrics().borrow().clone();
        let state = match m.state {
            openraft::ServerState::Leader => "Leader",
            openraft::ServerState::Follower => "Follower",
            openraft::ServerState::Candidate => "Candidate",
            openraft::ServerState::Learner => "Learner",
            openraft::ServerState::Shutdown => "Shutdown",
        };
        let voters = self.voters();
        let configuration: Vec<String> = self
            .members()
            .iter()
            .map(|(id, addr, voter)| {
                format!(
                    "{{Suffrage:{} ID:{id} Address:{addr}}}",
                    if *voter { "Voter" } else { "Nonvoter" }
                )
            })
            .collect();
        let last_contact = match self.last_contact_ms() {
            Some(0) => "0".to_string(),
            Some(ms) => format!("{ms}ms"),
            None => "never".to_string(),
        };
        [
            ("state", state.to_string()),
            ("term", m.current_term.to_string()),
            ("last_log_index", m.last_log_index.unwrap_or(0).to_string()),
            (
                "applied_index",
                m.last_applied.map_or(0, |l| l.index).to_string(),
            ),
            ("commit_index", self.log.commit_index().to_string()),
            (
                "last_snapshot_index",
                m.snapshot.map_or(0, |l| l.index).to_string(),
            ),
            (
                "last_snapshot_term",
                m.snapshot.map_or(0, |l| l.leader_id.term).to_string(),
            ),
            ("num_peers", voters.len().saturating_sub(1).to_string()),
            ("last_contact", last_contact),
            (
                "latest_configuration",
                format!("[{}]", configuration.join(" ")),
            ),
            ("protocol_version", "3".to_string()),
        ]
        .into_iter()
        .collect()
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    pub fn last_applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// When this member last heard from a leader, `None` when it never has.
    pub(crate) fn last_contact(&self) -> Option<Instant> {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds since this member last heard from the leader: 0 on the leader, `None` when it never has.
    pub fn last_contact_ms(&self) -> Option<u64> {
        if self.is_leader() {
            return Some(0);
        }
        self.last_contact().map(|t| t.elapsed().as_millis() as u64)
    }

    /// Starts a new cluster with these members. Call on exactly one member with the full list.
    pub async fn initialize(&self, members: BTreeMap<u64, String>) -> Result<(), NodeError> {
        let nodes: BTreeMap<u64, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        self.raft.initialize(nodes).await.map_err(|e| match e {
            RaftError::APIError(e) => NodeError::Initialize(e),
            RaftError::Fatal(e) => NodeError::Fatal(e),
        })
    }

    /// Leader only: adds a server as a learner, waits until it has caught up, then makes it a voter.
    pub async fn add_server(
        &self,
        id: u64,
        addr: &str,
        catch_up: Duration,
    ) -> Result<(), WriteError> {
        let known = self.members().into_iter().find(|(i, _, _)| *i == id);
        if let Some((_, old_addr, voter)) = &known {
            if *voter && old_addr == addr {
                return Ok(());
            }
        }
        let node = BasicNode { addr: addr.into() };
        // The learner is added at once; waiting for it to catch up is bounded, and a learner that does not is
        // removed again, so that a server that went away mid-join leaves no change hanging in the configuration.
        self.raft
            .add_learner(id, node, false)
            .await
            .map_err(|e| self.map_membership_error(e))?;
        if !self.wait_caught_up(id, catch_up).await {
            let _ = self
                .raft
                .change_membership(
                    ChangeMembers::RemoveNodes([id].into_iter().collect()),
                    false,
                )
                .await;
            return Err(WriteError::Fatal(format!(
                "server {id} at {addr} did not catch up with the log within {catch_up:?}; it was not added"
            )));
        }
        self.raft
            .change_membership(
                ChangeMembers::AddVoterIds([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(|e| self.map_membership_error(e))?;
        Ok(())
    }

    /// True once the leader has replicated its whole log (as of the call) to `id`, within `wait`.
    pub(crate) async fn wait_caught_up(&self, id: u64, wait: Duration) -> bool {
        let target = self.last_log_index();
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let matched = metrics
                .borrow()
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |log_id| log_id.index);
            if matched >= target {
                return true;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// Leader only: removes a server from the voters and the member list.
    pub async fn remove_server(&self, id: u64) -> Result<(), WriteError> {
        let voters: BTreeSet<u64> = self.voters().into_iter().map(|(i, _)| i).collect();
        if voters.contains(&id) {
            self.raft
                .change_membership(
                    ChangeMembers::RemoveVoters([id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| self.map_membership_error(e))?;
        }
        if self.members().iter().any(|(i, _, _)| *i == id) {
            self.raft
                .change_membership(
                    ChangeMembers::RemoveNodes([id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| self.map_membership_error(e))?;
        }
        Ok(())
    }

    fn map_membership_error(
        &self,
        e: RaftError<u64, ClientWriteError<u64, BasicNode>>,
    ) -> WriteError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => WriteError::ForwardToLeader(Some((id, node.addr))),
                    _ => WriteError::NoLeader,
                }
            }
            other => WriteError::Fatal(other.to_string()),
        }
    }

    /// Answers a peer's Raft RPC (`append`, `vote` or `snapshot`) with its JSON-encoded `Result`, and the leader's
    /// notice of a leadership transfer (`transfer`).
    pub async fn handle(&self, kind: &str, body: &[u8]) -> Result<Vec<u8>, RaftRpcError> {
        fn enc<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, RaftRpcError> {
            serde_json::to_vec(v).map_err(RaftRpcError::Encode)
        }
        match kind {
            "append" => {
                let req: openraft::raft::AppendEntriesRequest<TypeConfig> =
                    serde_json::from_slice(body).map_err(|source| RaftRpcError::BadRequest {
                        rpc: "append",
                        source,
                    })?;
                let answer = self.raft.append_entries(req).await;
                if answer.is_ok() {
                    *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                }
                enc(&answer)
            }
            "vote" => {
                let req: openraft::raft::VoteRequest<u64> =
                    serde_json::from_slice(body).map_err(|source| RaftRpcError::BadRequest {
                        rpc: "vote",
                        source,
                    })?;
                enc(&self.raft.vote(req).await)
            }
            "snapshot" => {
                let req: openraft::raft::InstallSnapshotRequest<TypeConfig> =
                    serde_json::from_slice(body).map_err(|source| RaftRpcError::BadRequest {
                        rpc: "snapshot",
                        source,
                    })?;
                let answer = self.raft.install_snapshot(req).await;
                if answer.is_ok() {
                    *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                }
                enc(&answer)
            }
            "transfer" => {
                let notice: crate::transfer::TransferNotice = serde_json::from_slice(body)
                    .map_err(|source| RaftRpcError::BadRequest {
                        rpc: "transfer",
                        source,
                    })?;
                if let Some(me) = self.me.upgrade() {
                    me.take_transfer_notice(notice);
                }
                enc(&true)
            }
            other => Err(RaftRpcError::UnknownKind(other.to_string())),
        }
    }

    /// Takes a snapshot now (operators' `weft snapshot save` reads the store directly; this compacts the log).
    pub async fn trigger_snapshot(&self) -> Result<(), NodeError> {
        Ok(self.raft.trigger().snapshot().await?)
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
