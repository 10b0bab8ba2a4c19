//! What a web page may do with the agent's HTTP API through a visitor's browser: nothing it was not meant to.
//!
//! - A write (any method but GET, HEAD, OPTIONS) carrying an `Origin` other than the agent's own is refused with
//!   403, unless the origin is listed in `http_config.allowed_origins` (a Weft addition): a page elsewhere cannot
//!   create intentions or register services through a browser that can reach the agent (CSRF, `text/plain` POSTs
//!   included). Clients that are not browsers send no `Origin` and are not affected.
//! - A `Host` that is not an IP address, `localhost`, the node's name or a name in `http_config.allowed_hosts` is
//!   refused with 403: a page on a domain that an attacker points at 127.0.0.1 (DNS rebinding) cannot read the API.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The names and origins the agent answers browsers for.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    pub node_name: String,
    /// Extra host names (without port) the API may be reached by.
    pub allowed_hosts: Vec<String>,
    /// Extra origins (`https://ops.example.com`) whose pages may write.
    pub allowed_origins: Vec<String>,
}

impl BrowserGuard {
    fn host_allowed(&self, host: &str) -> bool {
        let name = weft_types::addr::host_of(host).trim_end_matches('.');
        name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.eq_ignore_ascii_case(&self.node_name)
            || self
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// An origin is the agent's own when it names the host the request was sent to.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let own = host.is_some_and(|h| {
            ["http://", "https://"]
                .iter()
                .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{h}")))
        });
        own || self
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

fn header_text(headers: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn refuse(why: String) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// The middleware; see the module comment.
pub async fn guard(State(g): State<Arc<BrowserGuard>>, req: Request, next: Next) -> Response {
    let (host, origin) = (
        header_text(req.headers(), header::HOST),
        header_text(req.headers(), header::ORIGIN),
    );
    let host = host.as_deref();
    if let Some(host) = host {
        if !g.host_allowed(host) {
            return refuse(format!(
                "Host {host:?} is not one of this agent's names (a DNS-rebinding defence): add it to \
                 http_config.allowed_hosts\n"
            ));
        }
    }
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let (true, Some(origin)) = (writes, origin.as_deref()) {
        if !g.origin_allowed(origin, host) {
            tracing::warn!(%origin, path = %req.uri().path(), "refused a cross-origin write");
            return refuse(format!(
                "Cross-origin request from {origin:?} refused: add the origin to http_config.allowed_origins to \
                 allow its pages to write\n"
            ));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> BrowserGuard {
        BrowserGuard {
            node_name: "node-1".into(),
            allowed_hosts: vec!["consul.internal".into()],
            allowed_origins: vec!["https://ops.example/".into()],
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1:8500",
            "[::1]:8500",
            "localhost:8500",
            "LOCALHOST",
            "node-1",
            "10.0.0.5",
            "consul.internal:8500",
        ] {
            assert!(g().host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8500",
            "127.0.0.1.evil.example",
        ] {
            assert!(!g().host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        assert!(g().origin_allowed("http://127.0.0.1:8500", Some("127.0.0.1:8500")));
        assert!(g().origin_allowed("https://ops.example", Some("127.0.0.1:8500")));
        assert!(!g().origin_allowed("http://evil.example", Some("127.0.0.1:8500")));
        assert!(!g().origin_allowed("null", Some("127.0.0.1:8500")));
        assert!(!g().origin_allowed("http://127.0.0.1:8500", None));
    }
}
