//! Autopilot, run by the leader: probes every Raft member once a second, reports their health
//! (`/v1/operator/autopilot/health`), and removes a dead voter once a replacement has joined, so a server that is
//! gone for good does not count against the quorum forever (Consul's `CleanupDeadServers`). Its settings are
//! `/v1/operator/autopilot/configuration`'s: the operator's from the Raft state, else the agent configuration's.

use crate::{Hello, Mode, Server};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The shortest contact threshold in force: below two probe rounds every server would look unhealthy between
/// probes (and a cluster that looks unhealthy never cleans up).
const MIN_CONTACT_THRESHOLD: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Tracker {
    seen: Mutex<BTreeMap<u64, Seen>>,
}

struct Seen {
    name: String,
    last_ok: Instant,
    term: u64,
    last_index: u64,
    /// The leader's last index when this member answered: how far it trailed then.
    trailing: u64,
    healthy_since: SystemTime,
}

/// One server in `/v1/operator/autopilot/health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub address: String,
    pub serf_status: String,
    pub version: String,
    pub leader: bool,
    pub last_contact: String,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub voter: bool,
    pub stable_since: String,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, hello: &Hello, leader_index: u64, threshold: Duration) {
        let (term, last_index) = (hello.term, hello.last_index);
        let mut seen = self.lock();
        let now = Instant::now();
        let entry = seen.entry(hello.id).or_insert_with(|| Seen {
            name: hello.node_name.clone(),
            last_ok: now,
            term,
            last_index,
            trailing: 0,
            healthy_since: SystemTime::now(),
        });
        if now.duration_since(entry.last_ok) > threshold {
            entry.healthy_since = SystemTime::now();
        }
        entry.name = hello.node_name.clone();
        entry.last_ok = now;
        entry.term = term;
        entry.last_index = last_index;
        entry.trailing = leader_index.saturating_sub(last_index);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

impl Server {
    /// Autopilot's settings in force: the operator's (Raft state), else the agent configuration's.
    pub fn autopilot_config(&self) -> weft_types::autopilot::AutopilotConfig {
        self.read()
            .autopilot_config()
            .cloned()
            .unwrap_or_else(|| self.config().autopilot.clone())
    }

    fn contact_threshold(config: &weft_types::autopilot::AutopilotConfig) -> Duration {
        config.last_contact_threshold().max(MIN_CONTACT_THRESHOLD)
    }

    /// The health of every Raft member, as the leader sees it (this member alone in dev mode).
    pub fn autopilot_health(&self) -> Vec<ServerHealth> {
        let Mode::Raft(node) = self.mode() else {
            return vec![ServerHealth {
                id: "1".into(),
                name: self.config().node_name.clone(),
                address: self.config().rpc_addr.clone(),
                serf_status: "alive".into(),
                version: weft_types::VERSION.into(),
                leader: true,
                last_contact: "0s".into(),
                last_term: 1,
                last_index: self.read().last_index(),
                healthy: true,
                voter: true,
                stable_since: weft_types::timefmt::rfc3339(SystemTime::now()),
            }];
        };
        let settings = self.autopilot_config();
        let threshold = Self::contact_threshold(&settings);
        let seen = self.autopilot().lock();
        node.members()
            .into_iter()
            .map(|(id, addr, voter)| {
                let me = id == node.id();
                let s = seen.get(&id);
                let since_ok = if me {
                    Some(Duration::ZERO)
                } else {
                    s.map(|s| s.last_ok.elapsed())
                };
                let trailing = if me { 0 } else { s.map_or(0, |s| s.trailing) };
                let healthy = since_ok.is_some_and(|d| d < threshold)
                    && trailing <= settings.max_trailing_logs;
                ServerHealth {
                    id: id.to_string(),
                    name: if me {
                        self.config().node_name.clone()
                    } else {
                        s.map(|s| s.name.clone()).unwrap_or_default()
                    },
                    address: addr,
                    serf_status: if healthy { "alive" } else { "failed" }.into(),
                    version: weft_types::VERSION.into(),
                    leader: node.leader().is_some_and(|(l, _)| l == id),
                    last_contact: since_ok
                        .map(|d| format!("{}ms", d.as_millis()))
                        .unwrap_or_else(|| "never".into()),
                    last_term: if me {
                        node.term()
                    } else {
                        s.map(|s| s.term).unwrap_or(0)
                    },
                    last_index: if me {
                        node.last_log_index()
                    } else {
                        s.map(|s| s.last_index).unwrap_or(0)
                    },
                    healthy,
                    voter,
                    stable_since: s
                        .map(|s| weft_types::timefmt::rfc3339(s.healthy_since))
                        .unwrap_or_else(|| weft_types::timefmt::rfc3339(SystemTime::now())),
                }
            })
            .collect()
    }

    /// How many voters may fail with the cluster still having a quorum.
    pub fn failure_tolerance(&self) -> usize {
        let health = self.autopilot_health();
        let voters = health.iter().filter(|h| h.voter).count();
        let healthy = health.iter().filter(|h| h.voter && h.healthy).count();
        let quorum = voters / 2 + 1;
        healthy.saturating_sub(quorum)
    }
}

/// The leader's autopilot loop: probe, then clean up.
pub(crate) async fn run(server: Server) {
    let Some(node) = server.raft_node().cloned() else {
        return std::future::pending().await;
    };
    server.autopilot().clear();
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    loop {
        ticker.tick().await;
        for (id, addr, _) in node.members() {
            if id == node.id() {
                continue;
            }
            let hello: Result<Hello, weft_rpc::RpcError> = weft_rpc::post_json(
                server.http(),
                &addr,
                "/v1/internal/hello",
                &(),
                Duration::from_millis(800),
            )
            .await;
            if let Ok(h) = hello {
                let threshold = Server::contact_threshold(&server.autopilot_config());
                server
                    .autopilot()
                    .record(&h, node.last_log_index(), threshold);
            }
        }
        cleanup_dead_servers(&server, &node).await;
    }
}

/// Removes voters that have been unreachable for `ServerStabilizationTime` when enough healthy voters remain
/// without them (at least `-bootstrap-expect`: a replacement has joined) and at least `MinQuorum` voters would
/// remain, never more than one per pass; nothing when `CleanupDeadServers` is off.
async fn cleanup_dead_servers(server: &Server, node: &weft_raft::RaftNode) {
    let settings = server.autopilot_config();
    if !settings.cleanup_dead_servers {
        return;
    }
    let after = settings.server_stabilization_time();
    let health = server.autopilot_health();
    let expect = server.config().bootstrap_expect.max(1) as usize;
    let healthy_voters = health.iter().filter(|h| h.voter && h.healthy).count();
    let started = server.autopilot().lock().len();
    let dead: Vec<u64> = {
        let seen = server.autopilot().lock();
        health
            .iter()
            .filter(|h| h.voter && !h.healthy)
            .filter_map(|h| h.id.parse::<u64>().ok())
            .filter(|id| seen.get(id).is_none_or(|s| s.last_ok.elapsed() >= after))
            .collect()
    };
    // Give members that never answered a probe a full `after` of this leader's time before judging them.
    if started == 0 {
        return;
    }
    let voters = health.iter().filter(|h| h.voter).count();
    if let Some(id) = dead.first() {
        if healthy_voters >= expect && voters > settings.min_quorum as usize {
            tracing::info!(
                server = id,
                "removing a dead server: a replacement has joined"
            );
            if let Err(e) = node.remove_server(*id).await {
                tracing::warn!(server = id, error = %e, "could not remove a dead server");
            }
        }
    }
}
