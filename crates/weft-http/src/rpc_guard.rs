//! Who may call the server RPC listener. With TLS and client certificates, the role the certificate names decides
//! (Raft, joins and `hello` are for servers; client agents may stream their replica, pass on their requests and have
//! leaves signed; another datacenter's servers may only pass on requests and fail prepared queries over). With the gossip key, every request must carry a valid HMAC (`weft_rpc::auth`). A request that
//! fails either is answered 401/403 before anything runs.

use crate::policy::{Listener, Resource};
use crate::routes;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use weft_rpc::{PeerRole, RpcAuth, RpcPeer};

/// How the RPC listener checks its callers.
#[derive(Clone, Default)]
pub struct RpcGuard {
    /// Set when the cluster has a gossip key: every request is signed with a key derived from it.
    pub auth: Option<Arc<RpcAuth>>,
    /// Set when TLS demands client certificates: their role decides what a caller may do.
    pub roles: bool,
}

/// Largest body the guard reads to check its signature (the RPC listener's own limit).
const MAX_BODY: usize = 64 * 1024 * 1024 + 1;

/// Who a path is for: servers only, or any member. Routes in the table say it in their ACL rule; the replica stream
/// and forwarded requests are for members.
fn for_servers_only(path: &str) -> bool {
    routes::find(path, Listener::RpcOnly)
        .is_some_and(|(route, _)| route.policy.acl.resource == Resource::ClusterServer)
}

/// What another datacenter's server may call: requests it passes on for this datacenter (`?dc=`; reads and writes
/// of the servers' routes, decided by this datacenter's ACLs with the token they carry, so with ACLs off by nothing
/// more), and prepared queries failing over here. Never Raft, joins, the replica stream, leaf signing or this
/// state machine's internal apply.
fn from_other_datacenters(path: &str) -> bool {
    path.starts_with(&format!("{}/", crate::FORWARD_PREFIX))
        || path == crate::query_failover::REMOTE_PATH
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, format!("rpc: {why}\n")).into_response()
}

/// The middleware; see the module comment.
pub async fn guard(State(guard): State<RpcGuard>, req: Request, next: Next) -> Response {
    let role = req
        .extensions()
        .get::<ConnectInfo<RpcPeer>>()
        .map_or(PeerRole::Anonymous, |c| c.0.role);
    if guard.roles {
        let allowed = match role {
            PeerRole::Server => true,
            PeerRole::Client => !for_servers_only(req.uri().path()),
            PeerRole::RemoteServer => from_other_datacenters(req.uri().path()),
            PeerRole::Anonymous => false,
        };
        if !allowed {
            tracing::warn!(?role, path = %req.uri().path(), "refused an RPC request its certificate does not allow");
            return refuse(
                StatusCode::FORBIDDEN,
                "this certificate's role may not call this route",
            );
        }
    }
    let Some(auth) = guard.auth else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let header = parts
        .headers
        .get(weft_rpc::auth::HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = auth.verify(parts.method.as_str(), path_and_query, header, &bytes) {
        tracing::warn!(path = %parts.uri.path(), error = %e, "refused an unauthenticated RPC request");
        return refuse(StatusCode::UNAUTHORIZED, e);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
