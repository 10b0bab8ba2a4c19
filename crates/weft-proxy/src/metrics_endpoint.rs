//! `GET /metrics` in Prometheus' text format on an address the operator chooses (`-metrics-addr`), so that refusals
//! by reason and connection counts reach the monitoring users already run, rather than only the logs.

use crate::metrics::Metrics;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, service: String) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, say: do not spin.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, service) = (metrics.clone(), service.clone());
        tokio::spawn(async move {
            let answer = hyper::service::service_fn(move |req: Request<Incoming>| {
                let reply = respond(&req, &metrics, &service);
                async move { Ok::<_, Infallible>(reply) }
            });
            // A scraper that connects and says nothing is dropped rather than held forever.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), answer)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, service: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if req.uri().path() == "/metrics" && matches!(*req.method(), Method::GET | Method::HEAD) {
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics.prometheus(service),
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found: the proxy's metrics are at GET /metrics\n".to_string(),
            )
        };
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        reply.headers_mut().insert(CONTENT_TYPE, v);
    }
    reply
}
