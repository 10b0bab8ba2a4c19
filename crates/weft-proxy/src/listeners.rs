//! The two kinds of listener. Public: mutual TLS in, plaintext to the local application. Upstream: plaintext in
//! from the local application, mutual TLS out to a healthy instance of the destination, retrying another instance
//! when a dial or handshake fails. Both pipe bytes with `copy_bidirectional`, which keeps half-closes intact.

use crate::balance::Balancer;
use crate::config::Upstream;
use crate::control::Endpoint;
use crate::metrics::{Metrics, Refusal};
use crate::tls::MeshTls;
use crate::upstream_error::UpstreamError;
use rand::RngExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_ATTEMPTS: usize = 3;

pub type TlsWatch = watch::Receiver<Option<Arc<MeshTls>>>;
pub type EndpointWatch = watch::Receiver<Option<Arc<Vec<Endpoint>>>>;

/// Open connections, so a draining proxy knows when it may exit.
#[derive(Default)]
pub struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

pub struct Tracked(Arc<Tracker>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    pub fn track(self: &Arc<Self>) -> Tracked {
        self.active.fetch_add(1, Ordering::AcqRel);
        Tracked(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until no connection is open (or `grace` passes); returns how many were still open.
    pub async fn drained(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            if self.active() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }
}

/// Waits for the first usable TLS state (roots and leaf loaded).
pub(crate) async fn ready(tls: &mut TlsWatch) -> Option<Arc<MeshTls>> {
    let wait = async {
        loop {
            if let Some(t) = tls.borrow_and_update().clone() {
                return Some(t);
            }
            if tls.changed().await.is_err() {
                return None;
            }
        }
    };
    tokio::time::timeout(READY_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

pub(crate) fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

pub async fn serve_public(
    listener: TcpListener,
    local_service: String,
    tls: TlsWatch,
    metrics: Arc<Metrics>,
    tracker: Arc<Tracker>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "public listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (mut tls, metrics, local) = (tls.clone(), metrics.clone(), local_service.clone());
        let guard = tracker.track();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(state) = ready(&mut tls).await else {
                tracing::warn!(%peer, "no certificate yet; dropping inbound connection");
                return;
            };
            let Some(server) = state.server.clone() else {
                return;
            };
            let accepted =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(server).accept(tcp))
                    .await;
            let mut stream = match accepted {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    match rustls_error(&e) {
                        // Certificate problems were counted, with their reason, by the verifier.
                        Some(rustls::Error::InvalidCertificate(_)) => {}
                        Some(rustls::Error::NoCertificatesPresented) => {
                            metrics.refused(Refusal::NoCertificate);
                            tracing::info!(%peer, reason = Refusal::NoCertificate.code(), "refused a client without a certificate");
                        }
                        // A bare TCP probe (the sidecar's own listening check) connects and leaves.
                        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            tracing::debug!(%peer, "connection closed before a TLS handshake");
                        }
                        _ => {
                            metrics.refused(Refusal::Handshake);
                            tracing::info!(%peer, reason = Refusal::Handshake.code(), error = %e, "TLS handshake failed");
                        }
                    }
                    return;
                }
                Err(_) => {
                    metrics.refused(Refusal::Handshake);
                    tracing::info!(%peer, reason = Refusal::Handshake.code(), "TLS handshake timed out");
                    return;
                }
            };
            metrics.inbound_accepted.fetch_add(1, Ordering::Relaxed);
            let app =
                tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, TcpStream::connect(local.as_str()))
                    .await;
            let mut app = match app {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::warn!(%local, error = %e, "failed to dial the local application");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%local, "timed out dialing the local application");
                    return;
                }
            };
            let _ = app.set_nodelay(true);
            // 16 KiB buffers: full-size TLS records instead of copy_bidirectional's default 8 KiB halves.
            if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                &mut stream,
                &mut app,
                16 * 1024,
                16 * 1024,
            )
            .await
            {
                tracing::debug!(%peer, error = %e, "inbound connection ended with an error");
            }
        });
    }
}

fn looks_like_http(first: &[u8]) -> bool {
    [
        "GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "PATCH ", "OPTIONS ",
    ]
    .iter()
    .any(|m| first.starts_with(m.as_bytes()))
}

/// Pipes bytes both ways until both directions are done. If the upstream refuses the connection (an intention
/// denies it) before answering anything and the client spoke HTTP, the client gets a 503 naming the upstream and
/// the reason instead of an empty reply; other protocols just see the connection close.
async fn relay_upstream(
    client: &mut TcpStream,
    mut upstream: tokio_rustls::client::TlsStream<TcpStream>,
    prefix: &[u8],
    destination: &str,
) -> Result<(), UpstreamError> {
    if !prefix.is_empty() {
        upstream
            .write_all(prefix)
            .await
            .map_err(|e| UpstreamError::from_io(&e))?;
    }
    use std::sync::atomic::AtomicBool;
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let (mut cr, mut cw) = client.split();
    let first = std::sync::Mutex::new(prefix.iter().take(16).copied().collect::<Vec<u8>>());
    let answered = AtomicBool::new(false);
    let mut to_upstream = Box::pin(async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr
                .read(&mut buf)
                .await
                .map_err(|e| UpstreamError::Io(e.to_string()))?;
            if n == 0 {
                let _ = uw.shutdown().await;
                return Ok::<(), UpstreamError>(());
            }
            {
                let mut f = first.lock().unwrap_or_else(|p| p.into_inner());
                if f.len() < 16 {
                    let take = n.min(16 - f.len());
                    f.extend_from_slice(&buf[..take]);
                }
            }
            uw.write_all(&buf[..n])
                .await
                .map_err(|e| UpstreamError::from_io(&e))?;
        }
    });
    let mut from_upstream = Box::pin(async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = ur
                .read(&mut buf)
                .await
                .map_err(|e| UpstreamError::from_io(&e))?;
            if n == 0 {
                let _ = cw.shutdown().await;
                return Ok::<(), UpstreamError>(());
            }
            answered.store(true, Ordering::Relaxed);
            cw.write_all(&buf[..n])
                .await
                .map_err(|e| UpstreamError::Io(e.to_string()))?;
        }
    });
    let (mut up_done, mut down_done) = (false, false);
    let mut outcome = Ok(());
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut to_upstream, if !up_done => {
                up_done = true;
                if let Err(e) = r { outcome = Err(e); break; }
            }
            r = &mut from_upstream, if !down_done => {
                down_done = true;
                if let Err(e) = r { outcome = Err(e); break; }
            }
        }
    }
    drop(to_upstream);
    drop(from_upstream);
    if let Err(why) = &outcome {
        let spoke_http = looks_like_http(&first.lock().unwrap_or_else(|p| p.into_inner()));
        if *why == UpstreamError::RefusedByIntention
            && !answered.load(Ordering::Relaxed)
            && spoke_http
        {
            let _ = cw.write_all(why.http_answer(destination).as_bytes()).await;
            let _ = cw.shutdown().await;
        }
    }
    outcome
}

pub async fn serve_upstream(
    listener: TcpListener,
    upstream: Upstream,
    tls: TlsWatch,
    endpoints: EndpointWatch,
    metrics: Arc<Metrics>,
    tracker: Arc<Tracker>,
) {
    let balancer = Arc::new(Balancer::default());
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "upstream listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let (mut tls, endpoints, metrics, balancer, upstream) = (
            tls.clone(),
            endpoints.clone(),
            metrics.clone(),
            balancer.clone(),
            upstream.clone(),
        );
        let guard = tracker.track();
        tokio::spawn(async move {
            let _guard = guard;
            let Some(state) = ready(&mut tls).await else {
                tracing::warn!(%peer, upstream = %upstream.destination, "no certificate yet; dropping connection");
                return;
            };
            let list = endpoints.borrow().clone().unwrap_or_default();
            forward(
                client,
                Vec::new(),
                &upstream,
                &state,
                &list,
                &balancer,
                &metrics,
            )
            .await;
        });
    }
}

/// Carries one client connection to a healthy instance of `upstream`: picks an instance (power of two choices),
/// dials it over mutual TLS, retries another instance when the dial or handshake fails, and relays. `prefix` holds
/// bytes already read from the client (an ingress reads the request head to route it); they go first.
pub(crate) async fn forward(
    mut client: TcpStream,
    prefix: Vec<u8>,
    upstream: &Upstream,
    state: &MeshTls,
    list: &[Endpoint],
    balancer: &Balancer,
    metrics: &Metrics,
) {
    let mut failed: Vec<String> = Vec::new();
    for _ in 0..MAX_ATTEMPTS.min(list.len().max(1)) {
        let (r1, r2): (f64, f64) = {
            let mut rng = rand::rng();
            (rng.random(), rng.random())
        };
        let Some(endpoint) = balancer.pick(list, &failed, r1, r2) else {
            break;
        };
        let lease = balancer.lease(&endpoint.address);
        match dial(state, endpoint, upstream).await {
            Ok(stream) => {
                metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
                if let Err(why) =
                    relay_upstream(&mut client, stream, &prefix, &upstream.destination).await
                {
                    if why == UpstreamError::RefusedByIntention {
                        metrics.refused(Refusal::IntentionDeny);
                    }
                    tracing::info!(upstream = %upstream.destination, instance = %endpoint.address, error = %why, "upstream connection ended");
                }
                drop(lease);
                return;
            }
            Err(why) => {
                metrics
                    .upstream_dial_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %upstream.destination, instance = %endpoint.address, error = %why, "dial failed; trying another instance");
                failed.push(endpoint.address.clone());
            }
        }
    }
    let why = if list.is_empty() {
        tracing::warn!(upstream = %upstream.destination, "no healthy instances found");
        UpstreamError::NoHealthyInstances
    } else {
        tracing::warn!(upstream = %upstream.destination, tried = failed.len(), "every attempt failed");
        UpstreamError::EveryInstanceFailed
    };
    // An HTTP client gets a 503 that says why, rather than an empty reply.
    let mut first = [0u8; 16];
    let spoke_http = if prefix.is_empty() {
        match tokio::time::timeout(Duration::from_millis(200), client.read(&mut first)).await {
            Ok(Ok(n)) => looks_like_http(&first[..n]),
            _ => false,
        }
    } else {
        looks_like_http(&prefix)
    };
    if spoke_http {
        let _ = client
            .write_all(why.http_answer(&upstream.destination).as_bytes())
            .await;
        // Close gently: unread request bytes would turn our close into a reset that can overtake the answer.
        let _ = client.shutdown().await;
        let mut sink = [0u8; 4096];
        let drain = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

async fn dial(
    state: &MeshTls,
    endpoint: &Endpoint,
    upstream: &Upstream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
    let dc = if endpoint.datacenter.is_empty() {
        upstream.datacenter.as_str()
    } else {
        endpoint.datacenter.as_str()
    };
    let config = state
        .client_for(&endpoint.service, dc)
        .map_err(|e| UpstreamError::Identity(e.to_string()))?;
    let attempt = async {
        let tcp = TcpStream::connect(endpoint.address.as_str())
            .await
            .map_err(|e| UpstreamError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from("mesh.weft.invalid")
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::from_io(&e))
    };
    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| UpstreamError::TimedOut)?
}
