//! What the proxy learns from its local agent, and how: long-lived blocking queries over the agent's HTTP API for
//! the CA roots, this service's leaf certificate, the healthy endpoints of each upstream and the intentions
//! towards this service. Each watch publishes into a `watch` channel; a failed query keeps the last good value
//! (fail-static) and retries with backoff. Nothing is looked up per connection.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
/// The request method type [`AgentClient::request`] takes.
pub use hyper::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_types::Intention;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// The agent's HTTP API, as the proxy uses it.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    #[error("agent answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// One answer of a (possibly blocking) read.
pub struct Answer {
    pub index: u64,
    pub body: Value,
    pub default_allow: bool,
}

impl AgentClient {
    pub fn new(http_addr: &str, token: Option<String>) -> Result<AgentClient, ControlError> {
        let base = if let Some(rest) = http_addr.strip_prefix("http://") {
            format!("http://{}", rest.trim_end_matches('/'))
        } else if http_addr.starts_with("https://") {
            return Err(ControlError::Unreachable(format!(
                "{http_addr}: the proxy talks to its local agent over plain HTTP on loopback"
            )));
        } else {
            format!("http://{http_addr}")
        };
        // A plain-HTTP client: the local agent is on loopback, so no TLS stack, no CA bundle to read at start-up.
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(AgentClient { base, http, token })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, ControlError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        // Blocking queries hold a request for up to a minute; the timeout covers the longest wait we ask for.
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| ControlError::Unreachable("timed out".into()))?
            .map_err(|e| ControlError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let default_allow = resp
            .headers()
            .get("x-consul-default-acl-policy")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v != "deny");
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ControlError::Unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(ControlError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ControlError::Decode(e.to_string()))?
        };
        Ok(Answer {
            index,
            body,
            default_allow,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ControlError> {
        self.request(Method::GET, path, None).await
    }

    /// A blocking read: waits up to `wait` for the result's index to pass `index`.
    pub async fn get_blocking(
        &self,
        path: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Answer, ControlError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.get(&format!(
            "{path}{sep}index={index}&wait={}ms",
            wait.as_millis()
        ))
        .await
    }
}

/// The CA roots every peer certificate must chain to.
#[derive(Debug, Clone)]
pub struct Roots {
    pub trust_domain: String,
    pub certs: Vec<CertificateDer<'static>>,
}

/// This service's certificate chain and key.
#[derive(Debug)]
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub serial: String,
}

/// One healthy instance of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// `host:port` of the instance's sidecar (or native service) public listener.
    pub address: String,
    /// The service its certificate must name.
    pub service: String,
    pub datacenter: String,
    pub node: String,
}

/// Intentions towards this service, and what applies when none matches.
#[derive(Debug, Clone, Default)]
pub struct Intentions {
    pub list: Vec<Intention>,
    pub default_allow: bool,
}

pub fn parse_roots(body: &Value) -> Result<Roots, ControlError> {
    let trust_domain = body["TrustDomain"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    if trust_domain.is_empty() {
        return Err(ControlError::Decode("the cluster has no CA yet".into()));
    }
    let mut certs = Vec::new();
    for root in body["Roots"].as_array().into_iter().flatten() {
        let pem = root["RootCert"].as_str().unwrap_or("");
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            certs.push(cert.map_err(|e| ControlError::Decode(format!("root certificate: {e}")))?);
        }
    }
    if certs.is_empty() {
        return Err(ControlError::Decode("no CA roots".into()));
    }
    Ok(Roots {
        trust_domain,
        certs,
    })
}

pub fn parse_leaf(body: &Value) -> Result<Leaf, ControlError> {
    let cert_pem = body["CertPEM"].as_str().unwrap_or("");
    let key_pem = body["PrivateKeyPEM"].as_str().unwrap_or("");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ControlError::Decode(format!("leaf certificate: {e}")))?;
    if chain.is_empty() {
        return Err(ControlError::Decode("leaf certificate missing".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ControlError::Decode(format!("leaf key: {e}")))?;
    Ok(Leaf {
        chain,
        key,
        serial: body["SerialNumber"].as_str().unwrap_or("").to_string(),
    })
}

/// Healthy Connect endpoints from `/v1/health/connect/:name?passing`.
pub fn parse_endpoints(body: &Value) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let svc = &entry["Service"];
            let node = &entry["Node"];
            let port = svc["Port"].as_u64().filter(|p| *p > 0 && *p <= 65535)?;
            let host = match svc["Address"].as_str() {
                Some(a) if !a.is_empty() => a,
                _ => node["Address"].as_str()?,
            };
            let service = if svc["Kind"].as_str() == Some("connect-proxy") {
                svc["Proxy"]["DestinationServiceName"].as_str()?
            } else {
                svc["Service"].as_str()?
            };
            let address = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            Some(Endpoint {
                address,
                service: service.to_string(),
                datacenter: node["Datacenter"].as_str().unwrap_or("").to_string(),
                node: node["Node"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect();
    out.sort();
    out
}

pub fn parse_intentions(body: &Value, name: &str, default_allow: bool) -> Intentions {
    let list = body[name]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_value::<Intention>(v.clone()).ok())
        .collect();
    Intentions {
        list,
        default_allow,
    }
}

/// Keeps `tx` up to date with the result of a blocking query, parsed by `parse`. Errors leave the last good value
/// in place (fail-static) and are retried with backoff; the task ends when every receiver is gone.
pub fn spawn_watch<T, F>(
    client: AgentClient,
    path: String,
    tx: watch::Sender<Option<Arc<T>>>,
    parse: F,
) where
    T: Send + Sync + 'static,
    F: Fn(&Answer) -> Result<T, ControlError> + Send + 'static,
{
    tokio::spawn(async move {
        let mut index = 0u64;
        let mut backoff = Duration::from_millis(100);
        loop {
            if tx.is_closed() {
                return;
            }
            let answer = tokio::select! {
                a = client.get_blocking(&path, index, Duration::from_secs(60)) => a,
                _ = tx.closed() => return,
            };
            match answer.and_then(|a| parse(&a).map(|v| (a.index, v))) {
                Ok((new_index, value)) => {
                    // An index that goes backwards means the agent restarted: start over from its new state.
                    index = if new_index < index { 0 } else { new_index };
                    tx.send_replace(Some(Arc::new(value)));
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(%path, error = %e, "watch failed; keeping the last known state");
                    index = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}
