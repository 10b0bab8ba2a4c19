//! The RPC client: one pooled HTTP/1.1 client per process, and JSON requests with typed failures.

use crate::auth::RpcAuth;
use crate::tls::{RpcConnector, RpcTls};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The RPC client: HTTP/1.1 with pooled connections, inside TLS when configured, every request signed when the
/// cluster authenticates RPC with its gossip key; shared by every caller. Cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    http: Client<RpcConnector, Full<Bytes>>,
    auth: Option<Arc<RpcAuth>>,
}

/// The RPC client; see [`HttpClient`].
pub fn http_client(tls: Option<&RpcTls>, auth: Option<Arc<RpcAuth>>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    let http = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(RpcConnector::new(connector, tls));
    HttpClient { http, auth }
}

impl HttpClient {
    /// Sends one request to the server at `addr`, signed when RPC is authenticated.
    pub async fn send(
        &self,
        method: hyper::Method,
        addr: &str,
        path_and_query: &str,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, RpcError> {
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path_and_query}"));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(auth) = &self.auth {
            let proof = auth
                .sign(method.as_str(), path_and_query, &body)
                .map_err(|e| RpcError::Encode(e.to_string()))?;
            builder = builder.header(crate::auth::HEADER, proof);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| RpcError::Encode(e.to_string()))?;
        self.http.request(request).await.map_err(|e| {
            let (addr, reason) = (addr.to_string(), with_causes(&e));
            if e.is_connect() {
                RpcError::Unreachable { addr, reason }
            } else {
                RpcError::Broken { addr, reason }
            }
        })
    }
}

/// Why an RPC got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// No connection could be made (refused, unreachable, TLS refused): the peer is as good as down.
    #[error("{addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// A connection was made but the exchange broke off.
    #[error("{addr}: {reason}")]
    Broken { addr: String, reason: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The peer answered with an HTTP error (its body says why).
    #[error("{status}: {body}")]
    Status { status: u16, body: String },
    #[error("undecodable answer from {addr}: {reason}")]
    Decode { addr: String, reason: String },
}

impl RpcError {
    /// Whether the peer should be treated as unreachable (Raft backs off from it) rather than as misbehaving.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable { .. } | RpcError::Timeout { .. }
        )
    }
}

/// The error and its causes in one line: "connection refused" tells an operator more than "client error".
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// Sends one JSON request and decodes the peer's answer.
pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let bytes = serde_json::to_vec(body).map_err(|e| RpcError::Encode(e.to_string()))?;
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    let request = (hyper::Method::POST, addr, path, &headers);
    exchange_json(client, request, Bytes::from(bytes), timeout).await
}

/// Sends a GET with `headers` and decodes the peer's JSON answer.
pub async fn get_json<Resp: DeserializeOwned>(
    client: &HttpClient,
    addr: &str,
    path: &str,
    headers: &hyper::HeaderMap,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let request = (hyper::Method::GET, addr, path, headers);
    exchange_json(client, request, Bytes::new(), timeout).await
}

/// One request (method, address, path, headers) and its JSON answer, within `timeout`.
async fn exchange_json<Resp: DeserializeOwned>(
    client: &HttpClient,
    (method, addr, path, headers): (hyper::Method, &str, &str, &hyper::HeaderMap),
    body: Bytes,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let exchange = async {
        let response = client.send(method, addr, path, headers, body).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| RpcError::Broken {
                addr: addr.to_string(),
                reason: with_causes(&e),
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(RpcError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| RpcError::Decode {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RpcError::Timeout {
            addr: addr.to_string(),
            timeout,
        })?
}
