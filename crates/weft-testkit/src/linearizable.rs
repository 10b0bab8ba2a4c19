//! A linearizability checker for KV histories: Wing–Gong search with Lowe's memoisation, per key (a history is
//! linearizable iff each key's sub-history is, since keys are independent registers).
//!
//! Each operation has a call time and, when the client got an answer, a return time. A write whose outcome is
//! unknown (timeout, connection lost, an error that may hide a committed write) may take effect at any point after
//! its call, or never; reads without an answer are dropped, as they change nothing.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Set the key to this value.
    Write(String),
    /// Saw this value (`None`: the key was absent).
    Read(Option<String>),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub key: String,
    pub kind: Kind,
    /// Nanoseconds since the start of the run.
    pub call: u64,
    /// `None` when the outcome is unknown.
    pub ret: Option<u64>,
}

/// The result of a check: the first key whose history cannot be linearized, if any.
pub fn check(history: &[Op]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        // A read without an answer tells nothing.
        if matches!(op.kind, Kind::Read(_)) && op.ret.is_none() {
            continue;
        }
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in by_key {
        if !check_register(&ops) {
            return Err(format!(
                "the history of key {key:?} ({} operations) is not linearizable",
                ops.len()
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: Option<usize>,
    next: Option<usize>,
}

/// The call and return events in time order, as a doubly linked list that operations are lifted out of (when
/// linearized) and put back into (when the search backtracks).
struct Events {
    list: Vec<Event>,
    head: Option<usize>,
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
}

impl Events {
    fn new(ops: &[&Op]) -> Events {
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            // At equal times calls sort before returns: overlapping, the permissive reading.
            order.push((op.call, 0, i));
            order.push((op.ret.unwrap_or(u64::MAX), 1, i));
        }
        order.sort();
        let list: Vec<Event> = order
            .iter()
            .enumerate()
            .map(|(pos, (_, kind, op))| Event {
                op: *op,
                is_call: *kind == 0,
                prev: pos.checked_sub(1),
                next: (pos + 1 < order.len()).then_some(pos + 1),
            })
            .collect();
        let mut call_of = vec![0usize; ops.len()];
        let mut ret_of = vec![0usize; ops.len()];
        for (pos, e) in list.iter().enumerate() {
            if e.is_call {
                call_of[e.op] = pos;
            } else {
                ret_of[e.op] = pos;
            }
        }
        Events {
            head: (!list.is_empty()).then_some(0),
            list,
            call_of,
            ret_of,
        }
    }

    fn unlink(&mut self, pos: usize) {
        let (prev, next) = (self.list[pos].prev, self.list[pos].next);
        match prev {
            Some(p) => self.list[p].next = next,
            None => self.head = next,
        }
        if let Some(nx) = next {
            self.list[nx].prev = prev;
        }
    }

    fn relink(&mut self, pos: usize) {
        let (prev, next) = (self.list[pos].prev, self.list[pos].next);
        match prev {
            Some(p) => self.list[p].next = Some(pos),
            None => self.head = Some(pos),
        }
        if let Some(nx) = next {
            self.list[nx].prev = Some(pos);
        }
    }

    /// Lifts an operation (both its events) out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        self.unlink(self.ret_of[op]);
    }

    /// Puts an operation back; answers the event after its call, where the search goes on.
    fn unlift(&mut self, op: usize) -> Option<usize> {
        self.relink(self.ret_of[op]);
        self.relink(self.call_of[op]);
        self.list[self.call_of[op]].next
    }

    /// True when every event left belongs to a write of unknown outcome (which may never have happened).
    fn only_unknown_left(&self, ops: &[&Op]) -> bool {
        let mut p = self.head;
        while let Some(pos) = p {
            if ops[self.list[pos].op].ret.is_some() {
                return false;
            }
            p = self.list[pos].next;
        }
        true
    }
}

/// One register's history, starting absent.
fn check_register(ops: &[&Op]) -> bool {
    let mut events = Events::new(ops);
    let mut state: Option<String> = None;
    let mut linearized = vec![false; ops.len()];
    let mut seen: HashSet<(Vec<bool>, Option<String>)> = HashSet::new();
    // (op, the state before it)
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut cursor = events.head;
    loop {
        if events.only_unknown_left(ops) {
            return true;
        }
        let next = match cursor {
            Some(pos) if events.list[pos].is_call => {
                let e = events.list[pos];
                let (ok, after) = match &ops[e.op].kind {
                    Kind::Write(v) => (true, Some(v.clone())),
                    Kind::Read(v) => (*v == state, state.clone()),
                };
                if ok {
                    linearized[e.op] = true;
                    if seen.insert((linearized.clone(), after.clone())) {
                        stack.push((e.op, std::mem::replace(&mut state, after)));
                        events.lift(e.op);
                        cursor = events.head;
                        continue;
                    }
                    linearized[e.op] = false;
                }
                Some(e.next)
            }
            // A return whose call is still in the list (or the end): undo the last choice.
            _ => None,
        };
        cursor = match next {
            Some(n) => n,
            None => {
                let Some((op, before)) = stack.pop() else {
                    return false;
                };
                linearized[op] = false;
                state = before;
                events.unlift(op)
            }
        };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn w(key: &str, v: &str, call: u64, ret: Option<u64>) -> Op {
        Op {
            key: key.into(),
            kind: Kind::Write(v.into()),
            call,
            ret,
        }
    }

    fn r(key: &str, v: Option<&str>, call: u64, ret: u64) -> Op {
        Op {
            key: key.into(),
            kind: Kind::Read(v.map(String::from)),
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_and_overlapping_histories_pass() {
        let h = vec![
            r("k", None, 0, 1),
            w("k", "a", 2, Some(3)),
            r("k", Some("a"), 4, 5),
            // Overlapping write and read: the read may see either value.
            w("k", "b", 6, Some(10)),
            r("k", Some("a"), 7, 8),
            r("k", Some("b"), 11, 12),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let h = vec![
            w("k", "a", 0, Some(1)),
            w("k", "b", 2, Some(3)),
            r("k", Some("a"), 4, 5),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn unknown_writes_may_or_may_not_have_happened() {
        // Never observed: fine. Observed later: also fine.
        let h = vec![
            w("k", "a", 0, Some(1)),
            w("k", "x", 2, None),
            r("k", Some("a"), 3, 4),
        ];
        assert!(check(&h).is_ok());
        let h = vec![
            w("k", "a", 0, Some(1)),
            w("k", "x", 2, None),
            r("k", Some("x"), 5, 6),
        ];
        assert!(check(&h).is_ok());
        // But not before it was called.
        let h = vec![
            w("k", "a", 0, Some(1)),
            r("k", Some("x"), 2, 3),
            w("k", "x", 4, None),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_independently() {
        let h = vec![
            w("a", "1", 0, Some(1)),
            w("b", "2", 0, Some(1)),
            r("a", Some("1"), 2, 3),
            r("b", Some("1"), 2, 3),
        ];
        let err = check(&h).unwrap_err();
        assert!(err.contains("\"b\""), "{err}");
    }
}
