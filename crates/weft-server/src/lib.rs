//! The server role.
//!
//! A [`Server`] owns the state store and is the only writer: every change is a [`Command`] applied at the next log
//! index. In dev mode the log is in memory and this process is its own leader; the cluster issue puts Raft behind
//! [`Server::write`] without changing its callers. The leader's loops (session TTL expiry) live here too.

mod ca;
mod sessions;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use weft_state::{ApplyResult, Command, Store, StoreError, Table};

pub use ca::CaManagerError;
pub use sessions::SessionTimers;

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
        }
    }
}

/// A cheap handle to the server; clones share one store.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    store: RwLock<Store>,
    sessions: SessionTimers,
}

/// Milliseconds since the Unix epoch: the clock commands carry.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Server {
    pub fn new(config: ServerConfig) -> Server {
        Server {
            inner: Arc::new(Inner {
                config,
                store: RwLock::new(Store::new()),
                sessions: SessionTimers::default(),
            }),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Applies a command at the next index. Writes are serialised by the store's lock, which is what a log gives.
    pub fn write(&self, cmd: Command) -> Result<ApplyResult, StoreError> {
        self.write_indexed(cmd).1
    }

    /// Like [`Server::write`], also returning the log index the command was applied at.
    pub fn write_indexed(&self, cmd: Command) -> (u64, Result<ApplyResult, StoreError>) {
        let (index, result) = {
            let mut store = self
                .inner
                .store
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let index = store.last_index() + 1;
            (index, store.apply(index, now_ms(), &cmd))
        };
        if let (Command::SessionDestroy { id }, Ok(_)) = (&cmd, &result) {
            self.inner.sessions.forget(id);
        }
        (index, result)
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

    /// The leader's RPC address; in dev mode, always this server.
    pub fn leader(&self) -> String {
        self.inner.config.rpc_addr.clone()
    }

    pub fn peers(&self) -> Vec<String> {
        vec![self.inner.config.rpc_addr.clone()]
    }

    pub fn session_timers(&self) -> &SessionTimers {
        &self.inner.sessions
    }

    /// Starts the leader's session-expiry loop; it ends when the returned handle is dropped or aborted.
    pub fn spawn_leader_loops(&self) -> tokio::task::JoinHandle<()> {
        let server = self.clone();
        tokio::spawn(async move {
            let pruner = tokio::spawn(ca::prune_loop(server.clone()));
            sessions::expiry_loop(server).await;
            pruner.abort();
        })
    }
}
