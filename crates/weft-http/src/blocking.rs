//! Blocking reads: evaluate, and if the result's index has not passed the client's `?index`, park on the watches
//! of the tables the query reads until one moves or `?wait` runs out. Evaluation happens under the store's read
//! lock and yields JSON, so nothing borrowed escapes the lock.
//!
//! Identical blocking queries (same path and query, whatever their `index`/`wait`) share one evaluation per store
//! change through [`SharedReads`]: when a write wakes a thousand watchers of one service, the first evaluates and
//! the rest copy its answer, so discovery storms do not multiply work on the server.

use crate::ctx::{Consistency, Ctx};
use crate::reply::{encode, ApiError, Reply};
use axum::body::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_state::{Store, Table};

/// Runs a read with Consul's blocking semantics and returns its index and value.
pub async fn read<F>(ctx: &Ctx, tables: &[Table], eval: F) -> Result<(u64, Arc<Value>), ApiError>
where
    F: Fn(&Store) -> (u64, Value),
{
    let server = ctx.state.agent.server();
    block(ctx, tables, |slot| match slot {
        Some(slot) => slot.value(server, &eval),
        None => {
            let (index, value) = eval(&server.read());
            (index, Arc::new(value))
        }
    })
    .await
}

/// Waits per `?index`/`?wait` around `get`, which evaluates the query (through the shared slot when blocking).
async fn block<T, G>(ctx: &Ctx, tables: &[Table], get: G) -> Result<(u64, T), ApiError>
where
    G: Fn(Option<&SharedSlot>) -> (u64, T),
{
    let blocking = ctx.blocking()?;
    let server = ctx.state.agent.server();
    let Some(b) = blocking else {
        return Ok(get(None));
    };
    let mut receivers: Vec<watch::Receiver<u64>> =
        tables.iter().map(|t| server.subscribe(*t)).collect();
    let deadline = Instant::now() + b.wait;
    let slot = SlotGuard::join(ctx.state.shared_reads.clone(), ctx.share_key());
    let result = loop {
        for r in receivers.iter_mut() {
            r.borrow_and_update();
        }
        let (index, value) = get(slot.slot.as_deref());
        if index > b.min_index {
            break (index, value);
        }
        tokio::select! {
            _ = any_changed(&mut receivers) => continue,
            _ = tokio::time::sleep_until(deadline) => break (index, value),
        }
    };
    drop(slot);
    Ok(result)
}

/// Membership of one parked query in a shared slot; leaving happens on drop, so a client that hangs up mid-wait
/// does not leak its slot.
struct SlotGuard {
    shared: Arc<SharedReads>,
    key: String,
    slot: Option<Arc<SharedSlot>>,
}

impl SlotGuard {
    fn join(shared: Arc<SharedReads>, key: String) -> SlotGuard {
        let slot = Some(shared.join(&key));
        SlotGuard { shared, key, slot }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.leave(&self.key, slot);
        }
    }
}

/// The last evaluation of one query: the store index it was made at, and its result.
#[derive(Default)]
pub struct SharedSlot {
    last: Mutex<Option<Cached>>,
}

/// One evaluation: the store index it was made at, the result's index, the value and (once asked for) its encoding.
struct Cached {
    at: u64,
    index: u64,
    value: Arc<Value>,
    encoded: Option<Bytes>,
}

impl SharedSlot {
    /// The cached evaluation if the store has not moved since, else a fresh one (which then becomes the cache).
    fn fresh<'a, F: Fn(&Store) -> (u64, Value)>(
        last: &'a mut Option<Cached>,
        server: &weft_server::Server,
        eval: &F,
    ) -> &'a mut Cached {
        let store = server.read();
        let at = store.last_index();
        if last.as_ref().is_none_or(|c| c.at != at) {
            let (index, value) = eval(&store);
            *last = Some(Cached {
                at,
                index,
                value: Arc::new(value),
                encoded: None,
            });
        }
        last.get_or_insert_with(|| Cached {
            at,
            index: 0,
            value: Arc::new(Value::Null),
            encoded: None,
        })
    }

    fn value<F: Fn(&Store) -> (u64, Value)>(
        &self,
        server: &weft_server::Server,
        eval: &F,
    ) -> (u64, Arc<Value>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let c = SharedSlot::fresh(&mut last, server, eval);
        (c.index, c.value.clone())
    }

    /// The encoded answer: encoded once per store change however many queries share the slot.
    fn encoded<F: Fn(&Store) -> (u64, Value)>(
        &self,
        server: &weft_server::Server,
        eval: &F,
        pretty: bool,
    ) -> (u64, Bytes) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let c = SharedSlot::fresh(&mut last, server, eval);
        let bytes = c
            .encoded
            .get_or_insert_with(|| encode(&c.value, pretty))
            .clone();
        (c.index, bytes)
    }
}

/// Slots of the blocking queries in flight, by [`Ctx::share_key`]; a slot lives while a query waits on it.
#[derive(Default)]
pub struct SharedReads {
    slots: Mutex<HashMap<String, Arc<SharedSlot>>>,
}

impl SharedReads {
    fn join(&self, key: &str) -> Arc<SharedSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }

    fn leave(&self, key: &str, slot: Arc<SharedSlot>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        drop(slot);
        if slots.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            slots.remove(key);
        }
    }

    /// How many distinct queries are parked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads, then answers with the value as JSON and the query-meta headers.
pub async fn read_reply<F>(ctx: &Ctx, tables: &[Table], eval: F) -> Result<Reply, ApiError>
where
    F: Fn(&Store) -> (u64, Value),
{
    let consistency = prepare(ctx)?;
    let pretty = ctx.pretty();
    let server = ctx.state.agent.server();
    let (index, body) = block(ctx, tables, |slot| match slot {
        Some(slot) => slot.encoded(server, &eval, pretty),
        None => {
            let (index, value) = eval(&server.read());
            (index, encode(&value, pretty))
        }
    })
    .await?;
    Ok(ctx.read_meta(Reply::json_bytes(body), index, consistency))
}

/// The checks every read makes before touching the store.
pub fn prepare(ctx: &Ctx) -> Result<Consistency, ApiError> {
    ctx.check_scope()?;
    ctx.blocking()?;
    ctx.consistency()
}

/// One receiver's pending `changed()`.
type ChangeWait<'a> =
    Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

async fn any_changed(receivers: &mut [watch::Receiver<u64>]) {
    let mut waits: Vec<ChangeWait<'_>> = receivers
        .iter_mut()
        .map(|r| Box::pin(r.changed()) as ChangeWait<'_>)
        .collect();
    if waits.is_empty() {
        return std::future::pending().await;
    }
    poll_fn(|cx| {
        for w in waits.iter_mut() {
            if w.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Waits for an agent-local change or the deadline (hash-based blocking on `/v1/agent/service/:id`).
pub async fn wait_local_change(rx: &mut watch::Receiver<u64>, deadline: Instant) -> bool {
    tokio::select! {
        r = rx.changed() => r.is_ok(),
        _ = tokio::time::sleep_until(deadline) => false,
    }
}
