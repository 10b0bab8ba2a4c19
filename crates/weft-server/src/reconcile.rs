//! The leader turns gossip membership into catalog health, as Consul's leader does with serf: an alive member's
//! `serfHealth` check is passing, a failed member's is critical (so its services leave the healthy set), a member
//! that left is deregistered, and a member failed for longer than the reconnect timeout is reaped.

use crate::Server;
use std::time::{Duration, SystemTime};
use weft_gossip::Status;
use weft_state::Command;
use weft_types::CheckStatus;

const SERF_HEALTH: &str = "serfHealth";
const ALIVE: &str = "Agent alive and reachable";
const FAILED: &str = "Agent not live or unreachable";
/// Reconcile at least this often, even without membership changes (a write may have failed during an election).
const EVERY: Duration = Duration::from_secs(5);

pub(crate) async fn run(server: Server) {
    let Some(gossip) = server.gossip().cloned() else {
        return std::future::pending().await;
    };
    let mut members = gossip.subscribe();
    loop {
        reconcile_once(&server, &gossip).await;
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

async fn reconcile_once(server: &Server, gossip: &weft_gossip::Gossip) {
    let dc = server.config().datacenter.clone();
    let reap_after = gossip.reconnect_timeout();
    let mut writes = Vec::new();
    {
        let store = server.read();
        for m in gossip.members() {
            if m.member.tags.datacenter != dc {
                continue;
            }
            let name = &m.member.name;
            if store.node(name).is_none() {
                continue;
            }
            let serf = store
                .node_checks(name)
                .find(|c| c.check_id == SERF_HEALTH)
                .map(|c| c.status);
            let age = SystemTime::now()
                .duration_since(m.since)
                .unwrap_or_default();
            match m.status {
                Status::Alive if serf != Some(CheckStatus::Passing) && serf.is_some() => {
                    writes.push(update(name, CheckStatus::Passing, ALIVE));
                }
                Status::Failed if age >= reap_after => {
                    tracing::info!(node = %name, "reaping a node failed for longer than the reconnect timeout");
                    writes.push(deregister(name));
                }
                Status::Failed if serf != Some(CheckStatus::Critical) => {
                    tracing::info!(node = %name, "member failed; marking serfHealth critical");
                    writes.push(update(name, CheckStatus::Critical, FAILED));
                }
                Status::Left => {
                    tracing::info!(node = %name, "member left; deregistering the node");
                    writes.push(deregister(name));
                }
                _ => {}
            }
        }
    }
    for w in writes {
        if let Err(e) = server.write(w).await {
            tracing::debug!(error = %e, "reconcile write failed; retrying later");
        }
    }
}

fn update(node: &str, status: CheckStatus, output: &str) -> Command {
    Command::UpdateCheck {
        node: node.to_string(),
        check_id: SERF_HEALTH.into(),
        status,
        output: output.into(),
    }
}

fn deregister(node: &str) -> Command {
    Command::Deregister {
        node: node.to_string(),
        service_id: None,
        check_id: None,
    }
}
