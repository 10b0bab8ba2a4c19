//! The ingress gateway's HTTP listener: plain HTTP from outside, routed by `Host` to a mesh service and carried
//! over mutual TLS under the gateway's own identity (so intentions decide what the public may reach).
//!
//! A request for `<service>`, `<service>.ingress.<anything>` (Consul's default ingress hosts) or one of a route's
//! extra hosts goes to that service; a listener with a single service takes every host. The route is chosen from
//! the first request of a connection, and the rest of that connection follows it.

use crate::balance::Balancer;
use crate::config::Upstream;
use crate::listeners::{forward, ready, EndpointWatch, TlsWatch, Tracker};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_HEAD: usize = 16 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// One routable service of an HTTP listener.
pub struct Route {
    pub upstream: Upstream,
    pub hosts: Vec<String>,
    pub endpoints: EndpointWatch,
    pub balancer: Arc<Balancer>,
}

impl Route {
    fn matches(&self, host: &str) -> bool {
        let name = self.upstream.destination.as_str();
        host.eq_ignore_ascii_case(name)
            || host
                .to_ascii_lowercase()
                .starts_with(&format!("{}.ingress.", name.to_ascii_lowercase()))
            || self.hosts.iter().any(|h| host_matches(h, host))
    }
}

/// Whether `host` is `pattern`, or a subdomain of it when the pattern is `*.domain` (case-insensitive).
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let host = host.to_ascii_lowercase();
            let suffix = format!(".{}", domain.to_ascii_lowercase());
            host.len() > suffix.len() && host.ends_with(&suffix)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// The `Host` of a request head, without its port.
pub fn host_of(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text
        .lines()
        .skip(1)
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("host:"))?;
    let host = line[5..].trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    Some(host.to_string())
}

/// Reads until the end of the request head (or the limit); returns what was read.
async fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let read = async {
        loop {
            let n = client.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_HEAD {
                return Some(());
            }
        }
    };
    tokio::time::timeout(HEAD_TIMEOUT, read)
        .await
        .ok()
        .flatten()?;
    Some(head)
}

async fn answer(client: &mut TcpStream, status: &str, body: &str) {
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
}

pub async fn serve_http(
    listener: TcpListener,
    routes: Arc<Vec<Route>>,
    tls: TlsWatch,
    metrics: Arc<Metrics>,
    tracker: Arc<Tracker>,
) {
    loop {
        let (mut client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let (mut tls, routes, metrics) = (tls.clone(), routes.clone(), metrics.clone());
        let guard = tracker.track();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(head) = read_head(&mut client).await else {
                return;
            };
            let host = host_of(&head).unwrap_or_default();
            let route = match routes.iter().find(|r| r.matches(&host)) {
                Some(r) => r,
                None if routes.len() == 1 => &routes[0],
                None => {
                    tracing::info!(%peer, %host, "no ingress route for host");
                    answer(
                        &mut client,
                        "404 Not Found",
                        &format!("no ingress route for host {host:?}\n"),
                    )
                    .await;
                    return;
                }
            };
            let Some(state) = ready(&mut tls).await else {
                answer(
                    &mut client,
                    "503 Service Unavailable",
                    "ingress gateway has no certificate yet\n",
                )
                .await;
                return;
            };
            let list = route.endpoints.borrow().clone().unwrap_or_default();
            forward(
                client,
                head,
                &route.upstream,
                &state,
                &list,
                &route.balancer,
                &metrics,
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{host_matches, host_of};

    #[test]
    fn hosts_match_exactly_or_as_wildcard_subdomains() {
        assert!(host_matches("web.example.com", "WEB.example.com"));
        assert!(host_matches("*.example.org", "a.example.org"));
        assert!(host_matches("*.example.org", "a.b.EXAMPLE.org"));
        assert!(!host_matches("*.example.org", "example.org"));
        assert!(!host_matches("*.example.org", "aexample.org"));
        assert!(!host_matches("web.example.com", "web.example.com.evil"));
    }

    #[test]
    fn host_header_is_found_without_port() {
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nhost: greeter.ingress.example:8080\r\n\r\n").as_deref(),
            Some("greeter.ingress.example")
        );
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").as_deref(),
            Some("::1")
        );
        assert_eq!(host_of(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
