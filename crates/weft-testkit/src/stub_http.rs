//! A canned HTTP/1.1 server standing in for an endpoint of someone else's that a test cannot reach here (Amazon
//! ECS's task metadata, EC2's instance metadata): each `METHOD path` answers a set status and body, anything else
//! 404. Answers can be changed while it runs (a document that is malformed first and right later).

use anyhow::Result;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Routes = Arc<Mutex<HashMap<(String, String), (u16, String)>>>;

pub struct StubHttp {
    pub addr: SocketAddr,
    routes: Routes,
    /// Requests answered so far, as `METHOD path`.
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StubHttp {
    /// Listens on an ephemeral loopback port (inside the test's tokio runtime).
    pub async fn start() -> Result<StubHttp> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let routes: Routes = Arc::default();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (routes, seen) = (r.clone(), s.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let mut first = text.lines().next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let path = first.next().unwrap_or("").to_string();
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(format!("{method} {path}"));
                    }
                    let answer = routes
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&(method, path)).cloned());
                    let (status, body) = answer.unwrap_or((404, "not found".into()));
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(StubHttp {
            addr,
            routes,
            seen,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `method path` with `status` and `body` from now on.
    pub fn set(&self, method: &str, path: &str, status: u16, body: impl Into<String>) {
        if let Ok(mut r) = self.routes.lock() {
            r.insert((method.into(), path.into()), (status, body.into()));
        }
    }

    /// How many requests named `method path` so far.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let want = format!("{method} {path}");
        self.seen
            .lock()
            .map(|s| s.iter().filter(|x| **x == want).count())
            .unwrap_or(0)
    }
}

impl Drop for StubHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
