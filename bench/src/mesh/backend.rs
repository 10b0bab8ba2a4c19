//! The backend every topology ends at: a tiny HTTP/1.1 keep-alive server (hyper) on 127.0.0.1, in this process.
//! `GET /bulk` answers a body of `bulk_bytes` (streamed from one shared 64 KiB chunk, so the server itself copies
//! nothing); any other path answers a short text body. A request with `Connection: close` gets its answer and
//! then the close, as HTTP/1.1 says.

use anyhow::{Context, Result};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The short answer of `GET /`.
pub const HELLO: &[u8] = b"hello from the weft-bench backend\n";
const CHUNK: usize = 64 * 1024;

/// A running backend; dropping it stops the accept loop and every open connection.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `left` bytes, handed out as slices of one shared chunk.
struct Payload {
    chunk: Bytes,
    left: u64,
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        let data = self.chunk.slice(..n as usize);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn answer(req: &Request<Incoming>, bulk_bytes: u64, chunk: &Bytes) -> Response<Payload> {
    let body = if req.uri().path() == "/bulk" {
        Payload {
            chunk: chunk.clone(),
            left: bulk_bytes,
        }
    } else {
        Payload {
            chunk: Bytes::from_static(HELLO),
            left: HELLO.len() as u64,
        }
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

pub async fn start(bulk_bytes: u64) -> Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("backend: cannot bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            while conns.try_join_next().is_some() {}
            let _ = tcp.set_nodelay(true);
            let chunk = chunk.clone();
            conns.spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = answer(&req, bulk_bytes, &chunk);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(Backend { addr, task })
}
