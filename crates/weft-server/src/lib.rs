//! The server role.
//!
//! A [`Server`] owns the state store and is the only writer: every change is a [`Command`] applied at the next log
//! index. In dev mode the log is in memory and this process is its own leader; the cluster issue puts Raft behind
//! [`Server::write`] without changing its callers. The leader's loops (session TTL expiry) live here too.

mod sessions;

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use weft_state::{ApplyResult, Command, Store, StoreError, Table};

pub use sessions::SessionTimers;

/// Static facts about this server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub datacenter: String,
    pub node_name: String,
    /// The address peers and clients see for server RPC (`/v1/status/leader`).
    pub rpc_addr: String,
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
        let result = {
            let mut store = self
                .inner
                .store
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let index = store.last_index() + 1;
            store.apply(index, now_ms(), &cmd)
        };
        if let (Command::SessionDestroy { id }, Ok(_)) = (&cmd, &result) {
            self.inner.sessions.forget(id);
        }
        result
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
        tokio::spawn(async move { sessions::expiry_loop(server).await })
    }
}
