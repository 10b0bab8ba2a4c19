//! `/v1/status/...`: the Raft leader and peers, as server RPC addresses.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::json;

pub async fn leader(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    Ok(ctx.json(&json!(ctx
        .state
        .agent
        .server()
        .leader()
        .unwrap_or_default())))
}

pub async fn peers(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    Ok(ctx.json(&json!(ctx.state.agent.server().peers())))
}
