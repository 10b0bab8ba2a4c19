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
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weft_ca::{CaRootList, IssuedCert};
use weft_types::{DefaultPolicy, Intention, ServiceEntry};

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

/// One answer of a (possibly blocking) read: its raw body, decoded by whoever asked into the type they expect.
pub struct Answer {
    pub index: u64,
    pub body: Bytes,
    /// `X-Weft-Default-Intention-Policy`; `None` when missing or not a policy (then connections no intention covers
    /// are refused: fail closed).
    pub default_policy: Option<DefaultPolicy>,
}

impl Answer {
    /// The body decoded as `T`; an answer that does not decode is an error, never a default.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ControlError> {
        serde_json::from_slice(&self.body).map_err(|e| ControlError::Decode(e.to_string()))
    }
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
        let default_policy = resp
            .headers()
            .get(weft_types::intention::DEFAULT_INTENTION_POLICY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(DefaultPolicy::parse);
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
        Ok(Answer {
            index,
            body: bytes,
            default_policy,
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
#[derive(Debug, Clone)]
pub struct Intentions {
    pub list: Vec<Intention>,
    pub default_policy: DefaultPolicy,
}

pub fn parse_roots(answer: &Answer) -> Result<Roots, ControlError> {
    let list: CaRootList = answer.decode()?;
    let trust_domain = list.trust_domain.to_ascii_lowercase();
    if trust_domain.is_empty() {
        return Err(ControlError::Decode("the cluster has no CA yet".into()));
    }
    let mut certs = Vec::new();
    for root in &list.roots {
        for cert in CertificateDer::pem_slice_iter(root.root_cert.as_bytes()) {
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

pub fn parse_leaf(answer: &Answer) -> Result<Leaf, ControlError> {
    let issued: IssuedCert = answer.decode()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| ControlError::Decode(format!("leaf certificate: {e}")))?;
    if chain.is_empty() {
        return Err(ControlError::Decode("leaf certificate missing".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(issued.private_key_pem.as_bytes())
        .map_err(|e| ControlError::Decode(format!("leaf key: {e}")))?;
    Ok(Leaf {
        chain,
        key,
        serial: issued.serial_number,
    })
}

/// Healthy Connect endpoints from `/v1/health/connect/:name?passing`. An answer that does not decode is an error
/// (the watch keeps the last good set), never an empty set.
pub fn parse_endpoints(answer: &Answer) -> Result<Vec<Endpoint>, ControlError> {
    let entries: Vec<ServiceEntry> = answer.decode()?;
    let mut out: Vec<Endpoint> = entries
        .into_iter()
        .filter_map(|ServiceEntry { node, service }| {
            if service.port == 0 {
                return None;
            }
            let name = if service.is_connect_proxy() {
                service.proxy.destination_service_name
            } else {
                service.service
            };
            let host = if service.address.is_empty() {
                node.address
            } else {
                service.address
            };
            (!host.is_empty() && !name.is_empty()).then(|| Endpoint {
                address: weft_types::addr::join_host_port(&host, service.port),
                service: name,
                datacenter: node.datacenter,
                node: node.node,
            })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Intentions towards `name` from `/v1/connect/intentions/match`. Any intention that does not decode fails the
/// whole answer, so the watch keeps the last good set: dropping one (a deny, say) could let a lower-precedence
/// intention or the default allow what it denied. A missing or unknown default policy is deny.
pub fn parse_intentions(answer: &Answer, name: &str) -> Result<Intentions, ControlError> {
    let mut by_name: BTreeMap<String, Vec<Intention>> = answer.decode()?;
    let default_policy = answer.default_policy.unwrap_or_else(|| {
        tracing::warn!("the agent named no default policy (X-Weft-Default-Intention-Policy); denying what no intention allows");
        DefaultPolicy::Deny
    });
    Ok(Intentions {
        list: by_name.remove(name).unwrap_or_default(),
        default_policy,
    })
}

/// Keeps `tx` up to date with the result of a blocking query, parsed by `parse`. Errors leave the last good value
/// in place (fail-static) and are retried with backoff; the task ends when every receiver is gone.
pub fn spawn_watch<T, F>(
    client: AgentClient,
    path: String,
    tx: watch::Sender<Option<Arc<T>>>,
    metrics: Arc<crate::metrics::Metrics>,
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
                    metrics
                        .control_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%path, error = %e, "watch failed; keeping the last known state");
                    index = 0;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn answer(policy: Option<&str>, body: &str) -> Answer {
        Answer {
            index: 1,
            body: Bytes::from(body.to_string()),
            default_policy: policy.and_then(DefaultPolicy::parse),
        }
    }

    const DENY_API: &str = r#"{"web": [{"SourceName": "api", "DestinationName": "web", "Action": "deny",
        "Precedence": 9}]}"#;

    #[test]
    fn a_missing_or_unknown_default_policy_is_deny() {
        for header in [None, Some("DENY"), Some("Allow"), Some(""), Some("yes")] {
            let i = parse_intentions(&answer(header, "{}"), "web").unwrap();
            assert_eq!(i.default_policy, DefaultPolicy::Deny, "{header:?}");
        }
        let i = parse_intentions(&answer(Some("allow"), "{}"), "web").unwrap();
        assert_eq!(i.default_policy, DefaultPolicy::Allow);
    }

    #[test]
    fn one_undecodable_intention_fails_the_whole_answer() {
        let good = parse_intentions(&answer(Some("allow"), DENY_API), "web").unwrap();
        assert_eq!(good.list.len(), 1);
        // Before: the bad entry was dropped and the default (allow) let `api` in.
        let bad = DENY_API.replace("\"Precedence\": 9", "\"Precedence\": \"high\"");
        assert!(parse_intentions(&answer(Some("allow"), &bad), "web").is_err());
        assert!(parse_intentions(&answer(Some("allow"), "[1, 2]"), "web").is_err());
        assert!(parse_intentions(&answer(Some("allow"), ""), "web").is_err());
    }

    #[test]
    fn endpoints_decode_into_typed_entries() {
        let body = r#"[
            {"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
             "Service": {"Kind": "connect-proxy", "Service": "web-sidecar-proxy", "Address": "", "Port": 21000,
                         "Proxy": {"DestinationServiceName": "web"}}, "Checks": []},
            {"Node": {"Node": "n2", "Address": "::1", "Datacenter": "dc1"},
             "Service": {"Service": "native", "Address": "", "Port": 8443}, "Checks": []},
            {"Node": {"Node": "n3", "Address": "10.0.0.3"}, "Service": {"Service": "noport"}}
        ]"#;
        let endpoints = parse_endpoints(&answer(None, body)).unwrap();
        let got: Vec<(&str, &str, &str)> = endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.service.as_str(), e.node.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:21000", "web", "n1"),
                ("[::1]:8443", "native", "n2")
            ]
        );
        let bad = body.replace("\"Port\": 21000", "\"Port\": 70000");
        assert!(parse_endpoints(&answer(None, &bad)).is_err());
    }

    /// A fake agent: answers request n with `answers[n]` (the last one from then on), with an index header.
    async fn fake_agent(answers: Vec<String>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = &answers[n.min(answers.len() - 1)];
                let response = format!(
                    "HTTP/1.1 200 OK\r\nX-Consul-Index: {}\r\nX-Weft-Default-Intention-Policy: allow\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    n + 1,
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            }
        });
        addr.to_string()
    }

    #[tokio::test]
    async fn the_watch_keeps_the_last_good_intentions_when_an_answer_does_not_decode() {
        let bad = DENY_API.replace("\"Precedence\": 9", "\"Precedence\": \"high\"");
        let agent = fake_agent(vec![DENY_API.to_string(), bad]).await;
        let client = AgentClient::new(&agent, None).unwrap();
        let (tx, mut rx) = watch::channel::<Option<Arc<Intentions>>>(None);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        spawn_watch(
            client,
            "/v1/connect/intentions/match".into(),
            tx,
            metrics.clone(),
            |a| parse_intentions(a, "web"),
        );
        rx.wait_for(Option::is_some).await.unwrap();
        // The undecodable answers that follow (retried with backoff) change nothing.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let held = rx.borrow().clone().unwrap();
        assert_eq!(held.list.len(), 1);
        assert_eq!(held.list[0].action, "deny");
        assert_eq!(held.default_policy, DefaultPolicy::Allow);
        let d = weft_types::intention::authorize(&held.list, "api", "web", held.default_policy);
        assert!(!d.allowed);
        // Each undecodable answer is counted, for an operator's alert.
        let failures = metrics
            .control_failures
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(failures >= 1, "{failures}");
        assert!(metrics
            .prometheus("web")
            .contains("weft_proxy_control_failures_total{service=\"web\"}"));
    }
}
