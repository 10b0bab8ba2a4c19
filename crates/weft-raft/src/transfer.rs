//! Leadership transfer (Consul's `operator raft transfer-leader`), built from openraft's runtime switches since
//! openraft 0.9 has no transfer of its own.
//!
//! The leader waits until the target holds its whole log, then stops its heartbeats and its own elections and
//! tells every other voter: the target calls an election as soon as its leader lease has run out (the other
//! members refuse votes until theirs has), and the rest hold their elections meanwhile so that the target is the
//! only candidate. The old leader steps down when it sees the new term. Every switch is restored when a new leader
//! is known or the hold runs out, whichever comes first, so a transfer that fails (the target died, say) leaves the
//! cluster as it was, with its ordinary timers.

use crate::node::RaftNode;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the target may take to catch up with the log before the transfer is refused.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long members hold their elections, and how long the leader waits for the new one.
pub(crate) const HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("this server is not the leader")]
    NotLeader,
    #[error("cannot transfer leadership to itself")]
    ToItself,
    #[error("server {0} is not a voter in the Raft configuration")]
    NotAVoter(String),
    #[error("there is no other voter to transfer leadership to")]
    NoOtherVoter,
    #[error("server {0} did not catch up with the leader's log within 5 s")]
    Behind(u64),
    #[error("leadership did not move to server {0} within 5 s; this server still leads")]
    TimedOut(u64),
}

/// Holds writes back while leadership is handed over: the target must hold the whole log when it calls its
/// election, and entries the old leader kept appending (and the other voters kept accepting) would make them refuse
/// it. Writes wait (at most for the transfer) and then go to whichever server leads.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    closed: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
    reopened: tokio::sync::Notify,
}

/// A write under way; the gate counts it until it drops.
pub(crate) struct Passing<'a>(&'a WriteGate);

impl Drop for Passing<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriteGate {
    /// Waits while a transfer holds writes (bounded: a transfer reopens the gate when it ends, whatever happened).
    pub(crate) async fn pass(&self) -> Passing<'_> {
        loop {
            let reopened = self.reopened.notified();
            if !self.closed.load(Ordering::SeqCst) {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
                if !self.closed.load(Ordering::SeqCst) {
                    return Passing(self);
                }
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            let _ = tokio::time::timeout(CATCH_UP + HOLD, reopened).await;
        }
    }

    /// Closes the gate and waits (up to `wait`) for the writes already under way.
    async fn close(&self, wait: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        let until = Instant::now() + wait;
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.reopened.notify_waiters();
    }
}

/// What the leader tells each voter (`POST /v1/internal/raft/transfer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TransferNotice {
    pub leader: u64,
    pub target: u64,
    pub hold_ms: u64,
}

impl RaftNode {
    /// Leader only: hands leadership to `target` (else to the voter with the most of the log); answers the new
    /// leader's id once it leads.
    pub async fn transfer_leadership(&self, target: Option<u64>) -> Result<u64, TransferError> {
        if !self.is_leader() {
            return Err(TransferError::NotLeader);
        }
        let others: Vec<(u64, String)> = self
            .voters()
            .into_iter()
            .filter(|(id, _)| *id != self.id())
            .collect();
        let target = match target {
            Some(t) if t == self.id() => return Err(TransferError::ToItself),
            Some(t) if !others.iter().any(|(id, _)| *id == t) => {
                return Err(TransferError::NotAVoter(t.to_string()))
            }
            Some(t) => t,
            None => {
                let matched = |id: u64| {
                    self.raft()
                        .metrics()
                        .borrow()
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map_or(0, |l| l.index)
                };
                others
                    .iter()
                    .map(|(id, _)| *id)
                    .max_by_key(|id| (matched(*id), std::cmp::Reverse(*id)))
                    .ok_or(TransferError::NoOtherVoter)?
            }
        };
        // No new entries from here on, so the target can hold the whole log when it asks for votes.
        self.write_gate.close(Duration::from_secs(2)).await;
        let moved = self.hand_over(target, others).await;
        self.write_gate.open();
        moved
    }

    /// The transfer proper, with writes held.
    async fn hand_over(
        &self,
        target: u64,
        others: Vec<(u64, String)>,
    ) -> Result<u64, TransferError> {
        if !self.wait_caught_up(target, CATCH_UP).await {
            return Err(TransferError::Behind(target));
        }
        tracing::info!(to = target, "transferring leadership");
        let switches = self.raft().runtime_config();
        switches.heartbeat(false);
        switches.elect(false);
        // The others first, so that they hold their elections before the target calls its own.
        let mut others = others;
        others.sort_by_key(|(id, _)| *id == target);
        let notice = TransferNotice {
            leader: self.id(),
            target,
            hold_ms: HOLD.as_millis() as u64,
        };
        for (id, addr) in &others {
            let sent: Result<serde_json::Value, _> = weft_rpc::post_json(
                self.http(),
                addr,
                "/v1/internal/raft/transfer",
                &notice,
                Duration::from_secs(2),
            )
            .await;
            if let Err(e) = sent {
                tracing::warn!(server = id, error = %e, "could not tell a server about the leadership transfer");
            }
        }
        let moved = self.wait_for_other_leader(HOLD).await;
        switches.heartbeat(true);
        switches.elect(true);
        match moved {
            Some(leader) => {
                tracing::info!(leader, "leadership transferred");
                Ok(leader)
            }
            None => Err(TransferError::TimedOut(target)),
        }
    }

    /// A voter's part of a transfer: the target calls an election once its lease has run out; the others hold
    /// theirs until a new leader is known or the hold runs out.
    pub(crate) fn take_transfer_notice(self: std::sync::Arc<Self>, notice: TransferNotice) {
        let hold = Duration::from_millis(notice.hold_ms).min(HOLD);
        let generation = self.transfer_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let node = std::sync::Arc::downgrade(&self);
        if notice.target != self.id() {
            self.raft().runtime_config().elect(false);
        }
        tokio::spawn(async move {
            let until = Instant::now() + hold;
            if let Some(n) = node.upgrade() {
                if notice.target == n.id() {
                    n.elect_after_lease(notice.leader, until).await;
                } else {
                    n.wait_for_other_leader_than(notice.leader, hold).await;
                }
                // Only the latest transfer's task gives elections back.
                if n.transfer_generation.load(Ordering::SeqCst) == generation {
                    n.raft().runtime_config().elect(true);
                }
            }
        });
    }

    /// The target: calls elections (each once no voter can still be bound by the old leader's lease) until it
    /// leads, someone else does, or `until`.
    async fn elect_after_lease(&self, old_leader: u64, until: Instant) {
        while Instant::now() < until {
            let since = self.last_contact().map_or(self.lease, |t| t.elapsed());
            let wait = (self.lease + self.heartbeat).saturating_sub(since);
            tokio::time::sleep(wait).await;
            if self.leader().is_some_and(|(id, _)| id != old_leader) {
                return;
            }
            if let Err(e) = self.raft().trigger().elect().await {
                tracing::debug!(error = %e, "could not call an election");
                return;
            }
            if self
                .wait_for_other_leader_than(old_leader, self.lease * 2)
                .await
                .is_some()
            {
                return;
            }
        }
    }

    /// The leader after handing over: waits until another member leads.
    async fn wait_for_other_leader(&self, wait: Duration) -> Option<u64> {
        self.wait_for_other_leader_than(self.id(), wait).await
    }

    async fn wait_for_other_leader_than(&self, old: u64, wait: Duration) -> Option<u64> {
        let mut metrics = self.raft().metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let leader = metrics.borrow().current_leader;
            if let Some(l) = leader.filter(|l| *l != old) {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}
