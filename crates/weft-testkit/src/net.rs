//! Small network helpers the end-to-end tests share: a free port, and one plain HTTP GET through a local port (the
//! way an application calls its sidecar's upstream).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A TCP port nothing listens on right now on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A port free for both UDP and TCP on 127.0.0.1 at the moment (gossip listens on both): a port free for UDP only
/// was once held by a TCP socket, and the agent could not listen ("Address already in use").
pub fn free_gossip_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP after 50 tries")
}

/// One HTTP/1.1 GET of `/` through `127.0.0.1:port`; the status code and the body.
pub fn http_get(port: u16) -> Result<(u16, String)> {
    http_get_path(port, "/")
}

/// One HTTP/1.1 GET of `path` through `127.0.0.1:port` on a fresh connection; the status code and the body.
pub fn http_get_path(port: u16, path: &str) -> Result<(u16, String)> {
    http_get_as(port, path, None)
}

/// `GET path` on 127.0.0.1:`port` with an ACL token (`X-Consul-Token`) when one is given.
pub fn http_get_as(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let token = token
        .map(|t| format!("X-Consul-Token: {t}\r\n"))
        .unwrap_or_default();
    stream.write_all(
        // The Host curl would send: the agent refuses names that are not its own (DNS-rebinding defence).
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{token}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    parse_response(&raw)
}

/// The status code and body of a raw HTTP/1.1 response.
pub fn parse_response(raw: &str) -> Result<(u16, String)> {
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("no HTTP response: {raw:?}")
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((code, body.to_string()))
}

/// The `Content-Length` of a response or request head, if it has one.
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Owned strings from string literals (process arguments).
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Bytes of a server's replica stream (`GET /v1/internal/stream` on its RPC port) read for `for_how_long`, while
/// `meanwhile` runs.
pub async fn replica_stream<F: std::future::Future<Output = anyhow::Result<()>>>(
    rpc: &str,
    for_how_long: Duration,
    meanwhile: F,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(rpc)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.write_all(b"GET /v1/internal/stream HTTP/1.1\r\nHost: weft\r\n\r\n")?;
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + for_how_long;
        let mut buf = [0u8; 65536];
        while std::time::Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    meanwhile.await?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stream reader panicked"))
}
