//! Failover without waiting out the timers when the leader's process dies.
//!
//! openraft's followers notice a dead leader only when their election timers run out, and each of them also refuses
//! to vote for `election_max` after it last heard from the leader (the leader lease). The first candidate is
//! therefore usually refused, and an election takes two rounds of random timeouts (600–800 ms with the default
//! timings, more when the two survivors split the vote).
//!
//! A follower here keeps one idle TCP connection open to the leader's RPC port. When the leader's process dies its
//! kernel closes that connection at once, and a new connection is refused: the follower then calls the election
//! itself the moment every follower's lease has run out, the survivors one after another in id order so that they
//! do not split the vote. A leader that is slow, or cut off by the network, or whose machine is gone, is left to
//! the ordinary timers: only a refused connection counts as death.

use crate::node::RaftNode;
use std::io::ErrorKind;
use std::sync::Weak;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// How long a connection to the leader may take before the watch leaves that leader to the timers.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A refused connection counts as the leader's death this long after the watch last held one to it.
const RECENT: Duration = Duration::from_secs(10);

/// Watches whoever this member believes is the leader, until the member is dropped.
pub(crate) async fn run(node: Weak<RaftNode>, lease: Duration, heartbeat: Duration) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft().metrics()) else {
        return;
    };
    // The leader this member last held a connection to, and when: a refused connection to it soon after means its
    // process is gone, even when the refusal comes while the watch is between two connections (the RPC listener
    // closes idle connections after its handshake timeout, and the watch then connects again).
    let mut watched: Option<(u64, Instant)> = None;
    loop {
        // Wait for a leader other than this member.
        let (leader, addr) = loop {
            let Some(n) = node.upgrade() else { return };
            if let Some((id, addr)) = n.leader().filter(|(id, _)| *id != n.id()) {
                break (id, addr);
            }
            drop(n);
            if metrics.changed().await.is_err() {
                return;
            }
        };
        let recently_watched = |w: &Option<(u64, Instant)>| {
            w.is_some_and(|(l, at)| l == leader && at.elapsed() < RECENT)
        };
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(mut conn)) => {
                watched = Some((leader, Instant::now()));
                let mut byte = [0u8; 1];
                let closed = tokio::select! {
                    _ = conn.read(&mut byte) => true,
                    gone = leader_changes(&node, leader) => match gone {
                        Change::Stopped => return,
                        Change::NewLeader => false,
                    },
                };
                if !closed {
                    continue;
                }
                watched = Some((leader, Instant::now()));
                // An idle connection may also be closed by a live server: only a refused reconnect means the
                // process is gone.
                if !refused(&addr).await {
                    continue;
                }
            }
            Ok(Err(e))
                if e.kind() == ErrorKind::ConnectionRefused && recently_watched(&watched) => {}
            _ => {
                // Unreachable or refused before any connection: the timers decide; look again later.
                tokio::select! {
                    _ = sleep(Duration::from_secs(1)) => {}
                    r = metrics.changed() => if r.is_err() { return },
                }
                continue;
            }
        }
        watched = None;
        let Some(n) = node.upgrade() else { return };
        // Survivors in id order: the first calls the election once the leases have run out (one more heartbeat of
        // slack, since a peer may have heard from the leader a little later), the next a little after.
        let rank = n
            .voters()
            .iter()
            .filter(|(id, _)| *id != leader && *id < n.id())
            .count() as u32;
        if !n.voters().iter().any(|(id, _)| *id == n.id()) {
            continue;
        }
        let since = n.last_contact().map(|t| t.elapsed()).unwrap_or(lease);
        let wait = (lease + heartbeat + Duration::from_millis(5) + heartbeat * 2 * rank)
            .saturating_sub(since);
        drop(n);
        tracing::info!(
            leader,
            wait_ms = wait.as_millis() as u64,
            "the leader's process is gone; calling an election once the leader lease runs out"
        );
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = sleep(left) => {}
                r = metrics.changed() => if r.is_err() { return },
            }
            if elected_elsewhere(&node, leader) {
                break;
            }
        }
        let Some(n) = node.upgrade() else { return };
        // Heard from the leader meanwhile (its port refuses us, yet it is alive): leave it be.
        let silent = n.last_contact().is_none_or(|t| t.elapsed() >= lease);
        if silent && !elected_elsewhere(&node, leader) {
            if let Err(e) = n.raft().trigger().elect().await {
                tracing::debug!(error = %e, "could not call an election");
            }
        }
    }
}

/// Whether a new connection to `addr` is refused (a timeout, on a loaded machine, is asked again once).
async fn refused(addr: &str) -> bool {
    for _ in 0..2 {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Err(e)) => return e.kind() == ErrorKind::ConnectionRefused,
            Ok(Ok(_)) => return false,
            Err(_) => {}
        }
    }
    false
}

/// True once some member other than the dead `leader` is known to lead.
fn elected_elsewhere(node: &Weak<RaftNode>, leader: u64) -> bool {
    node.upgrade()
        .and_then(|n| n.leader())
        .is_some_and(|(id, _)| id != leader)
}

enum Change {
    NewLeader,
    /// Raft has stopped (or the member is gone): the watch ends.
    Stopped,
}

/// Resolves when this member no longer believes `leader` leads, or when Raft stops.
async fn leader_changes(node: &Weak<RaftNode>, leader: u64) -> Change {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft().metrics()) else {
        return Change::Stopped;
    };
    loop {
        if metrics.changed().await.is_err() {
            return Change::Stopped;
        }
        let still = metrics.borrow().current_leader == Some(leader);
        if !still {
            return Change::NewLeader;
        }
    }
}
