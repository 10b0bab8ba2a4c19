//! `/v1/internal/...`: what servers and agents say to each other on the RPC port (Raft, forwarded writes, leaf
//! signing, `hello` and joining; the replica stream is `stream`). Mounted only on the RPC listener (see `routes`): the public API port's table does not hold these paths.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::Serialize;
use weft_server::{ApplyRequest, JoinRequest, SignRequest};
use weft_state::StoreError;

pub(crate) fn decode<T: serde::de::DeserializeOwned>(ctx: &Ctx) -> Result<T, ApiError> {
    serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))
}

fn json<T: Serialize>(value: &T) -> Result<Reply, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Reply::json_bytes(body.into()))
}

/// `POST /v1/internal/raft/{append,vote,snapshot}`.
pub async fn raft(ctx: Ctx) -> Result<Reply, ApiError> {
    match ctx
        .state
        .agent
        .server()
        .handle_raft(&ctx.rest, &ctx.body)
        .await
    {
        Ok(body) => Ok(Reply::json_bytes(body.into())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// `POST /v1/internal/apply`: a write forwarded by a client agent or a follower.
pub async fn apply(ctx: Ctx) -> Result<Reply, ApiError> {
    let req: ApplyRequest = decode(&ctx)?;
    // A client agent forwards only its own anti-entropy; tokens, the CA, intentions, KV and restores are written
    // by servers (a client agent passes such requests on as HTTP, which the leader authorises).
    if ctx.rpc_role == Some(weft_rpc::PeerRole::Client) && !req.command.is_agent_sync() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "rpc: a client agent's certificate may only sync its own catalog entries",
        ));
    }
    // With ACLs on, a client agent writes a node only with a token holding node:write on it (its agent token), as
    // Consul's anti-entropy does: a certificate or the gossip key alone does not let one host rewrite another.
    let from_client = ctx.rpc_role == Some(weft_rpc::PeerRole::Client)
        || (ctx.rpc_role != Some(weft_rpc::PeerRole::Server) && req.forward);
    if from_client && ctx.state.agent.server().acl_enabled() {
        authorize_sync(&ctx, &req).await?;
    }
    // The refusal travels typed (the sender decides on `NoLeader` by its variant, not its text).
    let answer: Result<_, StoreError> = ctx.state.agent.server().handle_apply(req).await;
    json(&answer)
}

async fn authorize_sync(ctx: &Ctx, req: &ApplyRequest) -> Result<(), ApiError> {
    let Some(node) = req.command.synced_node() else {
        return Ok(());
    };
    let secret = req
        .token
        .as_deref()
        .unwrap_or(weft_types::acl::ANONYMOUS_SECRET);
    let identity = ctx
        .state
        .agent
        .server()
        .resolve_token(secret)
        .await
        .map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    let caller = crate::caller::Caller::with_identity(identity, true);
    caller.require(weft_acl::Named::Node, node, weft_acl::Need::Write)
}

/// `POST /v1/internal/ca/sign`: a leaf CSR for the leader.
pub async fn sign(ctx: Ctx) -> Result<Reply, ApiError> {
    let req: SignRequest = decode(&ctx)?;
    json(&ctx.state.agent.server().handle_sign(req).await)
}

/// `POST /v1/internal/ca/seal-key`: the key sealing the CA's private keys, for another server (servers only).
pub async fn seal_key(ctx: Ctx) -> Result<Reply, ApiError> {
    json(&ctx.state.agent.server().handle_seal_key())
}

/// `POST /v1/internal/hello`: who this server is, for servers forming or joining a cluster.
pub async fn hello(ctx: Ctx) -> Result<Reply, ApiError> {
    match ctx.state.agent.server().hello() {
        Some(h) => json(&h),
        None => Err(ApiError::bad_request("this agent is not a Raft server")),
    }
}

/// `POST /v1/internal/join`: a server asks to be added to the cluster.
pub async fn join(ctx: Ctx) -> Result<Reply, ApiError> {
    let req: JoinRequest = decode(&ctx)?;
    json(&ctx.state.agent.server().handle_join(req).await)
}

/// `POST /v1/internal/acl/resolve`: a token's rules for a client agent (`null` for an unknown or expired one).
pub async fn acl_resolve(ctx: Ctx) -> Result<Reply, ApiError> {
    let req: weft_server::ResolveRequest = decode(&ctx)?;
    json(&ctx.state.agent.server().handle_resolve(&req))
}

/// `GET /v1/internal/stream`: the replica stream for client agents (see `weft_server::stream_lines`).
pub fn stream(state: &crate::ApiState) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(rx) = weft_server::stream_lines(state.agent.server()) else {
        return (StatusCode::BAD_REQUEST, "this agent is not a Raft server").into_response();
    };
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    axum::response::Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
