//! Another federated datacenter's pages: `/ui/dc2/...` asked of an agent of dc1 is passed on (through its servers)
//! to a server of dc2, which renders its own page; the page's links stay under `/ui/dc2/`, so browsing continues
//! there. The request's cookie and token go with it, and dc2 decides what they may see (tokens are per datacenter).
//! A datacenter no server knows gets this agent's "unknown datacenter" page.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use weft_http::ApiState;

/// The datacenter a dashboard path names, when it is not this agent's.
fn other_datacenter<'a>(path: &'a str, own: &str) -> Option<&'a str> {
    let dc = path.strip_prefix("/ui/")?.split('/').next()?;
    (!dc.is_empty() && dc != "assets" && dc != own).then_some(dc)
}

/// The middleware; see the module comment.
pub async fn pass_on(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let own = state.agent.config().datacenter.clone();
    let Some(dc) = other_datacenter(req.uri().path(), &own).map(str::to_string) else {
        return next.run(req).await;
    };
    // Pages are read-only: writes go through the `/v1` API, which passes `?dc` on itself.
    if req.method() != axum::http::Method::GET {
        return next.run(req).await;
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path(), |p| p.as_str())
        .to_string();
    let mut headers = req.headers().clone();
    if !state.forwarded {
        // Asked by a browser: only agents say how far a request has come.
        headers.remove(weft_http::forward::FORWARDED);
        headers.remove(weft_http::forward::ORIGIN_NODE);
    }
    let reply =
        weft_http::forward::to_other_datacenter(&state, &dc, req.method(), &target, &headers, &[])
            .await;
    if reply.status == StatusCode::INTERNAL_SERVER_ERROR
        && reply.body.as_ref() == b"No path to datacenter"
    {
        return next.run(req).await;
    }
    reply.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_datacenters_pages_are_passed_on() {
        assert_eq!(other_datacenter("/ui/dc2/services", "dc1"), Some("dc2"));
        assert_eq!(other_datacenter("/ui/dc2", "dc1"), Some("dc2"));
        assert_eq!(other_datacenter("/ui/dc1/services", "dc1"), None);
        assert_eq!(other_datacenter("/ui/assets/app.js", "dc1"), None);
        assert_eq!(other_datacenter("/ui/", "dc1"), None);
        assert_eq!(other_datacenter("/v1/kv/x", "dc1"), None);
    }
}
