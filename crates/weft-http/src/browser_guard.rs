//! What a web page may do with the agent's HTTP API through a visitor's browser: nothing it was not meant to.
//!
//! - A write (any method but GET, HEAD, OPTIONS) carrying an `Origin` other than the agent's own is refused with
//!   403, unless the origin is listed in `http_config.allowed_origins` (a Weft addition): a page elsewhere cannot
//!   create intentions or register services through a browser that can reach the agent (CSRF, `text/plain` POSTs
//!   included). Clients that are not browsers send no `Origin` and are not affected.
//! - A `Host` that is not an IP address, `localhost`, the node's name or a name in `http_config.allowed_hosts` is
//!   refused with 403: a page on a domain that an attacker points at 127.0.0.1 (DNS rebinding) cannot read the API.

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

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

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refuse(why: String) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

impl BrowserGuard {
    /// The 403 for a request a browser must not make, or `None`. Called by the HTTP listener for every request
    /// before routing (a plain call rather than a middleware layer: it borrows the headers and boxes nothing, so
    /// the check costs the happy path almost nothing).
    pub fn refusal(&self, method: &Method, headers: &HeaderMap, path: &str) -> Option<Response> {
        let host = header_text(headers, header::HOST);
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Some(refuse(format!(
                    "Host {host:?} is not one of this agent's names (a DNS-rebinding defence): add it to \
                     http_config.allowed_hosts\n"
                )));
            }
        }
        let writes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let (true, Some(origin)) = (writes, header_text(headers, header::ORIGIN)) {
            if !self.origin_allowed(origin, host) {
                tracing::warn!(%origin, %path, "refused a cross-origin write");
                return Some(refuse(format!(
                    "Cross-origin request from {origin:?} refused: add the origin to http_config.allowed_origins to \
                     allow its pages to write\n"
                )));
            }
        }
        None
    }
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

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap_or_else(|_| panic!("{v}")));
        }
        h
    }

    #[test]
    fn refusals() {
        let own = (header::HOST, "127.0.0.1:8500");
        let evil_origin = (header::ORIGIN, "http://evil.example");
        // Reads are never refused for their origin; writes from another origin are.
        assert!(g()
            .refusal(
                &Method::GET,
                &headers(&[own.clone(), evil_origin.clone()]),
                "/v1/kv/a"
            )
            .is_none());
        let refused = g()
            .refusal(
                &Method::PUT,
                &headers(&[own.clone(), evil_origin]),
                "/v1/kv/a",
            )
            .map(|r| r.status());
        assert_eq!(refused, Some(StatusCode::FORBIDDEN));
        // The agent's own origin and clients that send none may write.
        let own_origin = (header::ORIGIN, "http://127.0.0.1:8500");
        assert!(g()
            .refusal(
                &Method::PUT,
                &headers(&[own.clone(), own_origin]),
                "/v1/kv/a"
            )
            .is_none());
        assert!(g()
            .refusal(&Method::POST, &headers(&[own]), "/v1/kv/a")
            .is_none());
        // A name that is not the agent's is refused even for reads.
        let rebound = headers(&[(header::HOST, "evil.example:8500")]);
        let refused = g()
            .refusal(&Method::GET, &rebound, "/v1/kv/a")
            .map(|r| r.status());
        assert_eq!(refused, Some(StatusCode::FORBIDDEN));
    }
}
