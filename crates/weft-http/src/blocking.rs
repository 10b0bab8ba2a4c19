//! Blocking reads: evaluate, and if the result's index has not passed the client's `?index`, park on the watches
//! of the tables the query reads until one moves or `?wait` runs out. Evaluation happens under the store's read
//! lock and yields JSON, so nothing borrowed escapes and filtering happens after the lock is released.

use crate::ctx::{Consistency, Ctx};
use crate::reply::{ApiError, Reply};
use serde_json::Value;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_state::{Store, Table};

/// Runs a read with Consul's blocking semantics and returns its index and value.
pub async fn read<F>(ctx: &Ctx, tables: &[Table], eval: F) -> Result<(u64, Value), ApiError>
where
    F: Fn(&Store) -> (u64, Value),
{
    let blocking = ctx.blocking()?;
    let server = ctx.state.agent.server();
    let mut receivers: Vec<watch::Receiver<u64>> = tables.iter().map(|t| server.subscribe(*t)).collect();
    let deadline = blocking.map(|b| Instant::now() + b.wait);
    loop {
        for r in receivers.iter_mut() {
            r.borrow_and_update();
        }
        let (index, value) = {
            let store = server.read();
            eval(&store)
        };
        let (Some(b), Some(deadline)) = (blocking, deadline) else { return Ok((index, value)) };
        if index > b.min_index {
            return Ok((index, value));
        }
        tokio::select! {
            _ = any_changed(&mut receivers) => continue,
            _ = tokio::time::sleep_until(deadline) => return Ok((index, value)),
        }
    }
}

/// Reads, then answers with the value as JSON and the query-meta headers.
pub async fn read_reply<F>(ctx: &Ctx, tables: &[Table], eval: F) -> Result<Reply, ApiError>
where
    F: Fn(&Store) -> (u64, Value),
{
    let consistency = prepare(ctx)?;
    let (index, value) = read(ctx, tables, eval).await?;
    Ok(ctx.read_meta(ctx.json(&value), index, consistency))
}

/// The checks every read makes before touching the store.
pub fn prepare(ctx: &Ctx) -> Result<Consistency, ApiError> {
    ctx.check_scope()?;
    ctx.blocking()?;
    ctx.consistency()
}

async fn any_changed(receivers: &mut [watch::Receiver<u64>]) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + '_>>> =
        receivers.iter_mut().map(|r| Box::pin(r.changed()) as Pin<Box<_>>).collect();
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
