//! Leader-only work follows leadership: when this member becomes leader it initialises the CA if the cluster has
//! none, rebuilds session TTL timers from the sessions in the store and prunes old roots; when it steps down, all
//! of that stops, and the next leader starts over from the replicated state.

use crate::{acl_leader, autopilot, ca, reconcile, sessions, Mode, Server};
use std::time::Duration;

pub(crate) async fn run(server: Server) {
    let node = match server.mode() {
        Mode::Client(_) => return,
        Mode::Dev => return lead(server).await,
        Mode::Raft(node) => node.clone(),
    };
    // Every server holds the CA's sealing key, so that whichever leads next can sign.
    tokio::join!(
        follow_leadership(server.clone(), node),
        crate::seal::keep_key(server)
    );
}

async fn follow_leadership(server: Server, node: std::sync::Arc<weft_raft::RaftNode>) {
    let mut metrics = node.raft().metrics();
    let mut duties: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let leading = node.is_leader();
        if leading && duties.is_none() {
            tracing::info!(term = node.term(), "this server is now the leader");
            duties = Some(tokio::spawn(lead(server.clone())));
        } else if !leading {
            if let Some(d) = duties.take() {
                tracing::info!("this server is no longer the leader");
                d.abort();
                server.session_timers().clear();
            }
        }
        if metrics.changed().await.is_err() {
            if let Some(d) = duties.take() {
                d.abort();
            }
            return;
        }
    }
}

/// The leader's duties, as one future: aborting it stops all of them.
async fn lead(server: Server) {
    if let Some(node) = server.raft_node().cloned() {
        // Reads wait until this leader has committed and applied every entry its log held when it took over. (A
        // leader resuming its term after a restart appends no new entry, and its saved commit point may be older
        // than what it had acknowledged: it must re-establish the commit before answering reads.)
        let term = node.term();
        let held = node.last_log_index();
        loop {
            let confirmed = matches!(
                tokio::time::timeout(crate::LEADER_WAIT, node.ensure_linearizable()).await,
                Ok(Ok(()))
            );
            if confirmed && node.last_applied_index() >= held {
                server.set_ready_term(term);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    loop {
        match server.ensure_ca().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "could not initialise the CA; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tokio::join!(
        acl_leader::run(server.clone()),
        ca::prune_loop(server.clone()),
        autopilot::run(server.clone()),
        reconcile::run(server.clone()),
        sessions::expiry_loop(server)
    );
}
