//! Issue 18's close-correctness finding, reproduced: an HTTP/1.0 backend that closes after each response
//! (Python's `http.server`), behind a sidecar pair, with keep-alive and `Connection: close` clients at once, over
//! 100,000 requests. Every request must get its whole response: a relay must never lose bytes, or reset a
//! connection, at close. And a binary protocol that half-closes (the client sends its request and shuts its side;
//! the server answers only once it has read to the end) gets every answer whole.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_testkit::mesh::{sidecar_for_with, upstream_proxy};
use weft_testkit::net::{free_port, strings};
use weft_testkit::{eventually, DevAgent, Spawned, TempDir};

/// Requests per client thread through the sidecar pair; eight threads, 100,000 requests.
const PER_CLIENT: usize = 12_500;
/// Requests per client thread straight to the backend, to show the load itself is clean.
const PER_CLIENT_DIRECT: usize = 1500;
const BODY: &str = "hello from an HTTP/1.0 backend that closes after every response\n";

/// One response read in full from `conn`: (status, body, whether the server keeps the connection).
fn read_response(conn: &mut TcpStream) -> Result<(u16, String, bool)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = conn.read(&mut chunk).context("reading the response head")?;
        if n == 0 {
            bail!(
                "connection closed before a response head ({} bytes)",
                buf.len()
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let length = weft_testkit::net::content_length(&head).context("no Content-Length")?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).context("reading the body")?;
        if n == 0 {
            bail!(
                "connection closed mid-body ({} of {length} bytes)",
                body.len()
            );
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let http10 = head.starts_with("HTTP/1.0");
    let keep = !http10 && !head.to_ascii_lowercase().contains("connection: close");
    Ok((
        status,
        String::from_utf8_lossy(&body[..length]).to_string(),
        keep,
    ))
}

/// `n` requests to `port`; keep-alive clients reuse the connection while the server allows it.
fn client(
    port: u16,
    n: usize,
    keep_alive: bool,
    errors: &AtomicUsize,
    first: &std::sync::Mutex<Option<String>>,
) {
    let mut conn: Option<TcpStream> = None;
    for _ in 0..n {
        let result = (|| -> Result<()> {
            let mut c = match conn.take() {
                Some(c) => c,
                None => TcpStream::connect(("127.0.0.1", port))?,
            };
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            let header = if keep_alive { "keep-alive" } else { "close" };
            write!(
                c,
                "GET /body.txt HTTP/1.1\r\nHost: x\r\nConnection: {header}\r\n\r\n"
            )?;
            let (status, body, keep) = read_response(&mut c)?;
            if status != 200 || body != BODY {
                bail!("answered {status} with {body:?}");
            }
            if keep_alive && keep {
                conn = Some(c);
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors.fetch_add(1, Ordering::Relaxed);
            first
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(format!("{e:#}"));
        }
    }
}

fn run_clients(port: u16, per_client: usize) -> (usize, Option<String>) {
    let errors = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(std::sync::Mutex::new(None));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (errors, first) = (errors.clone(), first.clone());
            std::thread::spawn(move || client(port, per_client, i % 2 == 0, &errors, &first))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let first = first.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (errors.load(Ordering::Relaxed), first)
}

fn python_backend(dir: &Path, port: u16) -> Result<Spawned> {
    std::fs::write(dir.join("body.txt"), BODY)?;
    Spawned::start(
        Path::new("python3"),
        &strings(&[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
            &dir.to_string_lossy(),
        ]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_is_lost_or_reset_at_close() -> Result<()> {
    let dir = TempDir::new()?;
    let agent = DevAgent::start()?;
    let http = agent.addr().to_string();
    let app_port = free_port()?;
    let _backend = python_backend(dir.path(), app_port)?;
    let reg = json!({
        "ID": "web-1", "Name": "web", "Port": app_port, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port()?}},
    });
    agent
        .put_json("/v1/agent/service/register", &reg)
        .await?
        .expect_status(200)?;
    let sidecar = sidecar_for_with("web-1", &http, &[])?;
    let port = free_port()?;
    let client_proxy = upstream_proxy("test", "web", port, &http)?;
    eventually(Duration::from_secs(60), async || -> Result<bool> {
        let r = agent.get("/v1/health/connect/web?passing=1").await?;
        Ok(r.json()?.as_array().map(|a| a.len()) == Some(1))
    })
    .await
    .context("the sidecar never became healthy")?;

    // The backend alone first: the load itself is clean.
    let (direct, why) =
        tokio::task::spawn_blocking(move || run_clients(app_port, PER_CLIENT_DIRECT)).await?;
    anyhow::ensure!(
        direct == 0,
        "{direct} errors straight to the backend: {why:?}"
    );
    let (errors, why) = tokio::task::spawn_blocking(move || run_clients(port, PER_CLIENT)).await?;
    anyhow::ensure!(
        errors == 0,
        "{errors} of {} requests through the sidecar pair failed; first: {why:?}\nclient proxy:\n{}\nsidecar:\n{}",
        8 * PER_CLIENT,
        client_proxy.output(),
        sidecar.output()
    );
    Ok(())
}

/// A server of a binary protocol that half-closes: it reads a request to its end (the client's shutdown), then
/// answers with the request's length and its bytes reversed, and closes.
fn half_closing_backend() -> Result<(u16, std::thread::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let handle = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                if conn.read_to_end(&mut request).is_err() {
                    return;
                }
                let mut answer = (request.len() as u64).to_be_bytes().to_vec();
                answer.extend(request.iter().rev());
                let _ = conn.write_all(&answer);
            });
        }
    });
    Ok((port, handle))
}

/// One exchange: `size` bytes sent, the write side shut, the whole answer read and checked.
fn half_closed_exchange(port: u16, size: usize, seed: u8) -> Result<()> {
    let request: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(&request)?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)
        .with_context(|| format!("reading the answer to {size} bytes"))?;
    let mut want = (size as u64).to_be_bytes().to_vec();
    want.extend(request.iter().rev());
    if answer != want {
        bail!(
            "{size} bytes sent: got {} bytes back, want {}",
            answer.len(),
            want.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_that_half_closes_gets_every_answer_whole() -> Result<()> {
    let agent = DevAgent::start()?;
    let http = agent.addr().to_string();
    let (app_port, _backend) = half_closing_backend()?;
    let reg = json!({
        "ID": "rev-1", "Name": "rev", "Port": app_port, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port()?}},
    });
    agent
        .put_json("/v1/agent/service/register", &reg)
        .await?
        .expect_status(200)?;
    let sidecar = sidecar_for_with("rev-1", &http, &[])?;
    let port = free_port()?;
    let client_proxy = upstream_proxy("test", "rev", port, &http)?;
    eventually(Duration::from_secs(60), async || -> Result<bool> {
        let r = agent.get("/v1/health/connect/rev?passing=1").await?;
        Ok(r.json()?.as_array().map(|a| a.len()) == Some(1))
    })
    .await
    .context("the sidecar never became healthy")?;
    // Sizes from nothing to well past a TLS record and the relay's buffers, four clients at once.
    let failures = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || -> Vec<String> {
                    let mut failed = Vec::new();
                    for (i, size) in [0usize, 1, 100, 16_383, 16_384, 16_385, 70_000, 1 << 20]
                        .iter()
                        .cycle()
                        .take(80)
                        .enumerate()
                    {
                        if let Err(e) = half_closed_exchange(port, *size, t.wrapping_add(i as u8)) {
                            failed.push(format!("{e:#}"));
                        }
                    }
                    failed
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| {
                t.join()
                    .unwrap_or_else(|_| vec!["a client thread panicked".into()])
            })
            .collect::<Vec<_>>()
    })
    .await?;
    anyhow::ensure!(
        failures.is_empty(),
        "{} of 320 half-closed exchanges failed; first: {:?}\nclient proxy:\n{}\nsidecar:\n{}",
        failures.len(),
        failures.first(),
        client_proxy.output(),
        sidecar.output()
    );
    Ok(())
}
