//! Serving the HTTP API with limits, so that slow, idle and greedy clients cannot starve the others:
//! - a request's headers must arrive within `header_read_timeout` (slowloris), and a keep-alive connection that
//!   sends no next request within it is closed (idle sockets); see `idle` for how, without a timer per request;
//! - headers are read into at most `max_header_bytes`;
//! - one client address holds at most `http_max_conns_per_client` connections (Consul's default: 200); further
//!   ones are closed at once, before any byte is read, and counted (`weft_rpc::Connections`).
//!
//! Blocking queries are unaffected: the header timeout runs only while a request is being read, never while a
//! handler waits.

use crate::browser_guard::BrowserGuard;
use crate::idle::{HeldBody, IdleGuard, Tracked};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use weft_rpc::Connections;

/// The limits one listener applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Serves `app` on `listener` until `stop` completes, then gives in-flight requests up to `grace` to finish. Each
/// client address holds at most the connections `connections` allows, and `browsers` refuses what a browser must
/// not ask before anything is routed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    browsers: Arc<BrowserGuard>,
    limits: Limits,
    connections: Arc<Connections>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(limits.max_header_bytes.max(8192));
    // Idle connections and slow request heads are cut by the guard's sweeper, not by a timer per request.
    let idle = IdleGuard::start(limits.header_read_timeout);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Some(slot) = connections.take(peer.ip()) else {
            tracing::debug!(%peer, "refused a connection: the client holds its limit of connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = idle.track();
        let tower = TowerToHyperService::new(app.clone());
        let busy = state.clone();
        let browsers = browsers.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = busy.request();
            let answer = match browsers.refusal(req.method(), req.headers(), req.uri().path()) {
                Some(refused) => Err(refused),
                None => Ok(hyper::service::Service::call(&tower, req)),
            };
            async move {
                let response = match answer {
                    Err(refused) => refused,
                    Ok(call) => call.await?,
                };
                // A streamed answer keeps the connection busy until it ends; any other is done with its head.
                let busy = response
                    .extensions()
                    .get::<crate::idle::LongLived>()
                    .is_some()
                    .then_some(in_flight);
                Ok::<_, std::convert::Infallible>(response.map(|body| HeldBody::new(body, busy)))
            }
        });
        let io = TokioIo::new(Tracked::new(stream, state.clone()));
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                _ = conn => {}
                // Idle, or a request head too slow: dropping the connection closes it.
                _ = state.close.notified() => {}
            }
        });
    }
    drop(listener);
    // Blocking queries may park for minutes: give in-flight requests a moment, then stop regardless.
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}
