//! Cluster-wide keyring operations (Consul's `keyring` command, which Serf carries as internal queries): the agent
//! asked applies the operation to its own keyring, sends it to every alive member over the gossip socket (sealed
//! like every frame), and gathers one answer per member, each with the keys that member holds afterwards. Members
//! that have not answered are asked again until they do or the query times out, and a member answers a repeated
//! query with its first answer rather than applying the operation twice.
//!
//! A query names its sender, and the answer goes to that member's gossip address from the member table, never to
//! where the packet seems to come from; a query older than [`FRESH_FOR`] is ignored, so one captured on the wire
//! cannot be replayed to put back a key that was removed.

use crate::crypto::Keyring;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How long a query waits for every member's answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Members that have not answered are asked again this often.
const ASK_AGAIN_EVERY: Duration = Duration::from_millis(700);
/// Queries this agent runs at once; more are refused.
pub(crate) const MAX_QUERIES: usize = 8;
/// Answers remembered, so a repeated query gets the same answer.
const REMEMBERED: usize = 1024;
/// Queries from further away in time (either way) are ignored.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// One keyring operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    List,
    Install(String),
    Use(String),
    Remove(String),
}

/// One member's answer: the keys it holds after the operation, and the operation's error there if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeys {
    pub node: String,
    pub error: Option<String>,
    /// Primary first.
    pub keys: Vec<String>,
}

impl NodeKeys {
    pub fn primary(&self) -> Option<&str> {
        self.keys.first().map(String::as_str)
    }
}

/// What one operation found across the cluster: every member asked (this one included) and who answered what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyringAnswer {
    pub num_nodes: usize,
    pub answers: Vec<NodeKeys>,
    /// Members asked that never answered.
    pub silent: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyQuery {
    pub id: u64,
    /// The asking member: answers go to its gossip address.
    pub from: String,
    pub at_ms: u64,
    pub op: KeyOp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyReply {
    pub id: u64,
    pub answer: NodeKeys,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Applies `op` to this member's keyring. Without one, the answer carries Serf's texts.
pub fn apply(keyring: Option<&Keyring>, op: &KeyOp, node: &str) -> NodeKeys {
    let Some(ring) = keyring else {
        let error = match op {
            KeyOp::List => "Keyring is empty (encryption not enabled)",
            _ => "No keyring to modify (encryption not enabled)",
        };
        return NodeKeys {
            node: node.to_string(),
            error: Some(error.to_string()),
            keys: Vec::new(),
        };
    };
    let result = match op {
        KeyOp::List => Ok(()),
        KeyOp::Install(key) => ring.install(key),
        KeyOp::Use(key) => ring.use_key(key),
        KeyOp::Remove(key) => ring.remove(key),
    };
    if let Err(e) = &result {
        tracing::warn!(error = %e, "keyring operation failed on this agent");
    } else if *op != KeyOp::List {
        tracing::info!(op = op.name(), "gossip keyring changed");
    }
    NodeKeys {
        node: node.to_string(),
        error: result.err().map(|e| e.to_string()),
        keys: ring.list().1,
    }
}

impl KeyOp {
    fn name(&self) -> &'static str {
        match self {
            KeyOp::List => "list",
            KeyOp::Install(_) => "install",
            KeyOp::Use(_) => "use",
            KeyOp::Remove(_) => "remove",
        }
    }
}

/// One query this agent asked, waiting for answers.
struct Pending {
    id: u64,
    query: Vec<u8>,
    /// Members asked and not yet answered, with their gossip addresses.
    waiting: BTreeMap<String, SocketAddr>,
    answer: KeyringAnswer,
    started: Instant,
    asked: Instant,
    done: oneshot::Sender<KeyringAnswer>,
}

/// The queries this agent asked and the answers it gave.
#[derive(Default)]
pub(crate) struct Queries {
    pending: Vec<Pending>,
    answered: HashMap<u64, NodeKeys>,
    order: VecDeque<u64>,
}

impl Queries {
    pub fn busy(&self) -> bool {
        self.pending.len() >= MAX_QUERIES
    }

    /// Starts a query: `local` is this member's own answer, `members` the others to ask. Answers the query body and
    /// the addresses to send it to, or finishes at once when there is nobody to ask.
    pub fn start(
        &mut self,
        from: &str,
        op: KeyOp,
        local: NodeKeys,
        members: BTreeMap<String, SocketAddr>,
        done: oneshot::Sender<KeyringAnswer>,
    ) -> Option<(Vec<u8>, Vec<SocketAddr>)> {
        let answer = KeyringAnswer {
            num_nodes: members.len() + 1,
            answers: vec![local],
            silent: Vec::new(),
        };
        if members.is_empty() {
            let _ = done.send(answer);
            return None;
        }
        let query = KeyQuery {
            id: rand::random(),
            from: from.to_string(),
            at_ms: now_ms(),
            op,
        };
        let body = serde_json::to_vec(&query).ok()?;
        let addresses = members.values().copied().collect();
        let now = Instant::now();
        self.pending.push(Pending {
            id: query.id,
            query: body.clone(),
            waiting: members,
            answer,
            started: now,
            asked: now,
            done,
        });
        Some((body, addresses))
    }

    /// Takes a member's answer; finishes the query once everyone answered.
    pub fn answered(&mut self, reply: KeyReply) {
        let Some(at) = self.pending.iter().position(|p| p.id == reply.id) else {
            return;
        };
        let p = &mut self.pending[at];
        if p.waiting.remove(&reply.answer.node).is_none() {
            return;
        }
        p.answer.answers.push(reply.answer);
        if p.waiting.is_empty() {
            let p = self.pending.swap_remove(at);
            let _ = p.done.send(p.answer);
        }
    }

    /// Finishes queries that ran out of time and answers which (query, address) pairs to ask again.
    pub fn tick(&mut self) -> Vec<(Vec<u8>, SocketAddr)> {
        let now = Instant::now();
        let mut again = Vec::new();
        let mut at = 0;
        while at < self.pending.len() {
            let p = &mut self.pending[at];
            if now.duration_since(p.started) >= QUERY_TIMEOUT {
                let mut p = self.pending.swap_remove(at);
                p.answer.silent = p.waiting.keys().cloned().collect();
                let _ = p.done.send(p.answer);
                continue;
            }
            if now.duration_since(p.asked) >= ASK_AGAIN_EVERY {
                p.asked = now;
                again.extend(p.waiting.values().map(|a| (p.query.clone(), *a)));
            }
            at += 1;
        }
        again
    }

    /// Decides what to do with a query from another member: `None` for a stale one; otherwise the answer this
    /// member gave before, or the one `apply` gives now (remembered).
    pub fn receive(
        &mut self,
        query: &KeyQuery,
        apply: impl FnOnce(&KeyOp) -> NodeKeys,
    ) -> Option<NodeKeys> {
        if now_ms().abs_diff(query.at_ms) > FRESH_FOR.as_millis() as u64 {
            return None;
        }
        if let Some(answer) = self.answered.get(&query.id) {
            return Some(answer.clone());
        }
        let answer = apply(&query.op);
        self.answered.insert(query.id, answer.clone());
        self.order.push_back(query.id);
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.answered.remove(&old);
            }
        }
        Some(answer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(node: &str) -> NodeKeys {
        NodeKeys {
            node: node.into(),
            error: None,
            keys: vec!["k".into()],
        }
    }

    #[test]
    fn a_query_finishes_when_everyone_answered_or_time_is_up() {
        let mut q = Queries::default();
        let (tx, mut rx) = oneshot::channel();
        let members: BTreeMap<String, SocketAddr> = [
            ("b".to_string(), "127.0.0.1:1".parse().unwrap()),
            ("c".to_string(), "127.0.0.1:2".parse().unwrap()),
        ]
        .into();
        let (body, addresses) = q.start("a", KeyOp::List, keys("a"), members, tx).unwrap();
        assert_eq!(addresses.len(), 2);
        let id = serde_json::from_slice::<KeyQuery>(&body).unwrap().id;
        // An answer from someone not asked, or to another query, counts for nothing.
        q.answered(KeyReply {
            id,
            answer: keys("mallory"),
        });
        q.answered(KeyReply {
            id: id ^ 1,
            answer: keys("b"),
        });
        q.answered(KeyReply {
            id,
            answer: keys("b"),
        });
        assert!(rx.try_recv().is_err());
        q.answered(KeyReply {
            id,
            answer: keys("c"),
        });
        let answer = rx.try_recv().unwrap();
        assert_eq!(answer.num_nodes, 3);
        assert_eq!(answer.answers.len(), 3);
        assert!(answer.silent.is_empty());
        // Nobody else: done at once.
        let (tx, mut rx) = oneshot::channel();
        assert!(q
            .start("a", KeyOp::List, keys("a"), BTreeMap::new(), tx)
            .is_none());
        assert_eq!(rx.try_recv().unwrap().num_nodes, 1);
    }

    #[test]
    fn a_repeated_query_is_answered_alike_and_a_stale_one_not_at_all() {
        let mut q = Queries::default();
        let query = KeyQuery {
            id: 7,
            from: "a".into(),
            at_ms: now_ms(),
            op: KeyOp::Install("x".into()),
        };
        let mut applied = 0;
        let first = q.receive(&query, |_| {
            applied += 1;
            keys("b")
        });
        let again = q.receive(&query, |_| {
            applied += 1;
            keys("other")
        });
        assert_eq!(first, again);
        assert_eq!(applied, 1);
        let stale = KeyQuery {
            id: 8,
            at_ms: now_ms() - 60_000,
            ..query
        };
        assert!(q.receive(&stale, |_| keys("b")).is_none());
    }

    #[test]
    fn without_encryption_every_operation_says_so() {
        let list = apply(None, &KeyOp::List, "a");
        assert_eq!(
            list.error.as_deref(),
            Some("Keyring is empty (encryption not enabled)")
        );
        let install = apply(None, &KeyOp::Install("k".into()), "a");
        assert_eq!(
            install.error.as_deref(),
            Some("No keyring to modify (encryption not enabled)")
        );
    }
}
