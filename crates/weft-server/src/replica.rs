//! Client agents' read replica of the servers' store.
//!
//! A server streams, over `GET /v1/internal/stream` on its RPC port, one line per event: a full `snapshot` first,
//! then every applied `entry` in log order, and a `ping` each second naming the leader and the servers. The client
//! applies them to its own [`Store`], so its dashboard, `?stale` reads, alias checks and Connect authorisation are
//! local, and its blocking queries wake on the same watches as a server's. A lagging or broken stream is dropped
//! and started over from a fresh snapshot.
//!
//! The cost, written down: every client agent holds the whole catalog in memory, as every server does. That is
//! cheap at the scale of one datacenter of VMs (about 2 KB per service instance) and keeps the agent's reads off
//! the servers; a partial (per-query) replica is the alternative if catalogs grow past that. KV is the exception:
//! it is application data of any size, which nothing on the agent itself reads, so the stream leaves it out (a
//! KV command arrives as a `Skip` of its index) and client agents pass every KV request, `?stale` ones included,
//! and the dashboard's KV pages to the servers.

use crate::Server;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use weft_raft::Applied;
use weft_rpc::HttpClient;
use weft_state::{Command, Store};

/// One line of the stream.
#[derive(Debug, Serialize, Deserialize)]
pub enum StreamLine {
    Entry {
        index: u64,
        now_ms: u64,
        command: Command,
    },
    Ping {
        leader: Option<String>,
        servers: Vec<String>,
    },
    /// A command the replica does not hold (KV, ACLs): only its index.
    Skip { index: u64 },
}

const PING_EVERY: Duration = Duration::from_secs(1);

/// The server side: the lines for one subscriber, ending when it falls behind or the state is replaced.
pub fn stream_lines(server: &Server) -> Option<mpsc::Receiver<Bytes>> {
    let node = server.raft_node()?.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // Subscribe before the snapshot, so nothing applied in between is missed (entries the snapshot already has
    // are skipped by index).
    let mut events = node.subscribe();
    let server = server.clone();
    tokio::spawn(async move {
        let (snapshot, at) = {
            let store = server.read();
            (store.snapshot_without_kv(), store.last_index())
        };
        let mut first = b"snapshot ".to_vec();
        first.extend_from_slice(&snapshot);
        first.push(b'\n');
        if tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut ticker = tokio::time::interval(PING_EVERY);
        loop {
            let line = tokio::select! {
                event = events.recv() => match event {
                    Ok(Applied::Command { index, now_ms, command }) if index > at => match &*command {
                        Command::Kv(_) | Command::Txn(_) => StreamLine::Skip { index },
                        // Tokens are secrets: client agents ask the servers to resolve them.
                        c if c.is_acl() => StreamLine::Skip { index },
                        // An operator's restore replaces everything, KV included: the subscriber starts over from
                        // a snapshot without KV.
                        Command::Restore { .. } => return,
                        // The CA's private keys never leave the servers.
                        Command::CaSet(setup) => StreamLine::Entry {
                            index,
                            now_ms,
                            command: Command::CaSet(Box::new(setup.without_keys())),
                        },
                        // A prepared query's stored token is a secret too.
                        Command::QuerySet { query, create } => StreamLine::Entry {
                            index,
                            now_ms,
                            command: Command::QuerySet {
                                query: Box::new(query.without_token()),
                                create: *create,
                            },
                        },
                        _ => StreamLine::Entry {
                            index,
                            now_ms,
                            command: (*command).clone(),
                        },
                    },
                    Ok(Applied::Command { .. }) => continue,
                    Ok(Applied::Restored) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => StreamLine::Ping {
                    leader: server.leader(),
                    servers: server.peers(),
                },
            };
            let Ok(mut bytes) = serde_json::to_vec(&line) else {
                return;
            };
            bytes.push(b'\n');
            if tx.send(Bytes::from(bytes)).await.is_err() {
                return;
            }
        }
    });
    Some(rx)
}

/// The client side.
pub struct Replica {
    /// Servers' RPC addresses, the one that answered last first.
    servers: Mutex<Vec<String>>,
    store: Arc<RwLock<Store>>,
    leader: Mutex<Option<String>>,
    last_contact: Mutex<Option<Instant>>,
    applied: watch::Sender<u64>,
}

impl Replica {
    pub(crate) fn new(servers: Vec<String>, store: Arc<RwLock<Store>>) -> Arc<Replica> {
        Arc::new(Replica {
            servers: Mutex::new(servers),
            store,
            leader: Mutex::new(None),
            last_contact: Mutex::new(None),
            applied: watch::channel(0).0,
        })
    }

    pub(crate) fn start(self: &Arc<Self>, http: HttpClient) {
        tokio::spawn(follow(Arc::downgrade(self), http));
    }

    pub fn servers(&self) -> Vec<String> {
        lock(&self.servers).clone()
    }

    /// Moves `addr` to the front: the next write tries it first.
    pub(crate) fn prefer(&self, addr: &str) {
        let mut servers = lock(&self.servers);
        if let Some(pos) = servers.iter().position(|s| s == addr) {
            let s = servers.remove(pos);
            servers.insert(0, s);
        }
    }

    /// Keeps the server list in step with the alive servers gossip knows.
    pub(crate) fn follow_gossip(self: &Arc<Self>, gossip: &weft_gossip::Gossip) {
        let mut rx = gossip.subscribe();
        let me = Arc::downgrade(self);
        let gossip = gossip.clone();
        tokio::spawn(async move {
            loop {
                let Some(r) = me.upgrade() else { return };
                r.learn_servers(&gossip.servers());
                drop(r);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn learn_servers(&self, found: &[String]) {
        let mut servers = lock(&self.servers);
        for s in found {
            if !servers.contains(s) {
                servers.push(s.clone());
            }
        }
    }

    pub fn leader(&self) -> Option<String> {
        lock(&self.leader).clone()
    }

    pub fn last_contact_ms(&self) -> Option<u64> {
        lock(&self.last_contact).map(|t| t.elapsed().as_millis() as u64)
    }

    /// Waits until the replica has applied `index` (or `timeout` passes): read-your-writes on a client agent.
    pub(crate) async fn wait_for(&self, index: u64, timeout: Duration) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|at| *at >= index)).await;
    }

    fn apply_line(&self, line: &[u8]) -> Result<(), StreamError> {
        if let Some(snapshot) = line.strip_prefix(b"snapshot ") {
            let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
            store
                .restore(snapshot)
                .map_err(|e| StreamError::BadSnapshot(e.to_string()))?;
            self.applied.send_replace(store.last_index());
            return Ok(());
        }
        match serde_json::from_slice::<StreamLine>(line)
            .map_err(|e| StreamError::BadLine(e.to_string()))?
        {
            StreamLine::Entry {
                index,
                now_ms,
                command,
            } => {
                let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
                if index > store.last_index() {
                    // The verdict was the servers'; a replica applies for the state, not the answer.
                    let _ = store.apply(index, now_ms, &command);
                }
                self.applied.send_replace(index.max(store.last_index()));
            }
            StreamLine::Skip { index } => {
                let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
                store.skip_to(index);
                self.applied.send_replace(store.last_index());
            }
            StreamLine::Ping { leader, servers } => {
                *lock(&self.leader) = leader;
                self.learn_servers(&servers);
            }
        }
        *lock(&self.last_contact) = Some(Instant::now());
        Ok(())
    }
}

/// Why a replica stream ended (the replica then follows another server).
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("no answer")]
    NoAnswer,
    #[error(transparent)]
    Rpc(#[from] weft_rpc::RpcError),
    #[error("status {0}")]
    Status(u16),
    #[error("stream went quiet")]
    Quiet,
    #[error("{0}")]
    Broken(String),
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    #[error("bad line: {0}")]
    BadLine(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Follows one server's stream at a time, moving to the next on any failure.
async fn follow(replica: Weak<Replica>, http: HttpClient) {
    let mut attempt: usize = 0;
    loop {
        let Some(r) = replica.upgrade() else { return };
        let servers = r.servers();
        drop(r);
        if servers.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let addr = servers[attempt % servers.len()].clone();
        attempt += 1;
        match follow_one(&replica, &http, &addr).await {
            Ok(()) => tracing::debug!(server = %addr, "replica stream ended; reconnecting"),
            Err(e) => {
                tracing::debug!(server = %addr, error = %e, "replica stream failed; trying another server")
            }
        }
        if let Some(r) = replica.upgrade() {
            *lock(&r.leader) = None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn follow_one(
    replica: &Weak<Replica>,
    http: &HttpClient,
    addr: &str,
) -> Result<(), StreamError> {
    let no_headers = hyper::HeaderMap::new();
    let request = http.send(
        hyper::Method::GET,
        addr,
        "/v1/internal/stream",
        &no_headers,
        Bytes::new(),
    );
    let response = tokio::time::timeout(Duration::from_secs(3), request)
        .await
        .map_err(|_| StreamError::NoAnswer)??;
    if !response.status().is_success() {
        return Err(StreamError::Status(response.status().as_u16()));
    }
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Pings arrive every second; three missing means the server is gone or cut off.
        let frame = tokio::time::timeout(PING_EVERY * 3, body.frame())
            .await
            .map_err(|_| StreamError::Quiet)?;
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|e| StreamError::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Some(r) = replica.upgrade() else {
                return Ok(());
            };
            r.apply_line(&line[..line.len() - 1])?;
        }
    }
}
