//! The two kinds of listener. Public: mutual TLS in, plaintext to the local application. Upstream: plaintext in
//! from the local application, mutual TLS out to a healthy instance of the destination, retrying another instance
//! when a dial or handshake fails. Both pipe bytes with `copy_bidirectional`, which keeps half-closes intact.

use crate::balance::Balancer;
use crate::config::Upstream;
use crate::control::Endpoint;
use crate::metrics::{Metrics, Refusal};
use crate::tls::MeshTls;
use crate::tunnel::{Carrier, TunnelServer, STREAM_CHUNK, TUNNEL_ALPN};
use crate::upstream_error::UpstreamError;
use rand::RngExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::{server, LazyConfigAcceptor, TlsConnector};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Consul's `local_connect_timeout_ms` (5 s). A local application whose listen backlog is full drops the SYN, and
/// the kernel sends it again only after a second: a shorter timeout failed those connections (issue 18's resets).
pub(crate) const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After one direction of a relayed connection fails, how long the other may still deliver what it has.
const LINGER: Duration = Duration::from_secs(5);
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_ATTEMPTS: usize = 3;
/// Read size when relaying over TLS: one full TLS record.
const TLS_RECORD: usize = 16 * 1024;

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
        // No Nagle: a TLS 1.3 server's session ticket is a small write right after the handshake, and a response
        // written before its ACK came back (delayed by the peer) would wait for it.
        let _ = tcp.set_nodelay(true);
        let (mut tls, metrics, local) = (tls.clone(), metrics.clone(), local_service.clone());
        let (guard, tracker) = (tracker.track(), tracker.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let Some(state) = ready(&mut tls).await else {
                tracing::warn!(%peer, "no certificate yet; dropping inbound connection");
                return;
            };
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(tcp, &state)).await;
            let (mut stream, tunnel) = match accepted {
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
            // The intention check again, on every connection: a resumed handshake skipped the verifier. A tunnel
            // is checked per stream instead, so that a refused client hears why (403 `intention_deny`) rather
            // than seeing the connection close.
            let (_, conn) = stream.get_ref();
            let (policy, leaf) = (
                &state.policy,
                conn.peer_certificates().and_then(|c| c.first()),
            );
            let client = match (policy, leaf) {
                (Some(policy), Some(leaf)) => {
                    policy.identify(leaf).and_then(|client| match tunnel {
                        true => Ok(client),
                        false => policy.allow(&client).map(|()| client),
                    })
                }
                _ => {
                    metrics.refused(Refusal::NoCertificate);
                    Err(Refusal::NoCertificate)
                }
            };
            let client = match client {
                Ok(client) => client,
                Err(_) => {
                    let _ = stream.shutdown().await;
                    return;
                }
            };
            if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                metrics.inbound_resumed.fetch_add(1, Ordering::Relaxed);
            }
            if tunnel {
                let chain = conn
                    .peer_certificates()
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                // Each stream counts for draining, not the tunnel: an idle tunnel must not hold a drain up.
                drop(_guard);
                TunnelServer::new(chain, client, tls, local, metrics, tracker)
                    .serve(stream)
                    .await;
                return;
            }
            metrics.inbound_accepted.fetch_add(1, Ordering::Relaxed);
            let app =
                tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, TcpStream::connect(local.as_str()))
                    .await;
            let mut app = match app {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    tracing::warn!(%local, error = %e, "failed to dial the local application");
                    // A clean end (close_notify), so the caller's side tells "nothing came" from a broken link.
                    let _ = stream.shutdown().await;
                    return;
                }
                Err(_) => {
                    tracing::warn!(%local, "timed out dialing the local application");
                    let _ = stream.shutdown().await;
                    return;
                }
            };
            let _ = app.set_nodelay(true);
            // 16 KiB buffers: full-size TLS records instead of copy_bidirectional's default 8 KiB halves.
            if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                &mut stream,
                &mut app,
                TLS_RECORD,
                TLS_RECORD,
            )
            .await
            {
                tracing::debug!(%peer, error = %e, "inbound connection ended with an error");
            }
        });
    }
}

/// The public listener's TLS handshake: the tunnel's configuration for a client that asks for a tunnel (true),
/// else the plain one.
async fn accept(
    tcp: TcpStream,
    state: &MeshTls,
) -> std::io::Result<(server::TlsStream<TcpStream>, bool)> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
    let tunnel = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == TUNNEL_ALPN));
    let config = if tunnel {
        state.tunnel_server.clone()
    } else {
        state.server.clone()
    };
    let config =
        config.ok_or_else(|| std::io::Error::other("this proxy has no public listener"))?;
    Ok((start.into_stream(config).await?, tunnel))
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
async fn relay_upstream<S>(
    client: &mut TcpStream,
    mut upstream: S,
    chunk: usize,
    prefix: &[u8],
    destination: &str,
) -> Result<(), UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
        let mut buf = vec![0u8; chunk];
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
        let mut buf = vec![0u8; chunk];
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
    // When sending towards the upstream fails (it stopped reading, say), what it already answered is still
    // delivered to the client, for a moment; when the upstream side itself breaks, there is nothing more to wait for.
    let linger = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(linger);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut to_upstream, if !up_done => {
                up_done = true;
                if let Err(e) = r {
                    linger.as_mut().reset(tokio::time::Instant::now() + LINGER);
                    outcome = Err(e);
                }
            }
            r = &mut from_upstream, if !down_done => {
                down_done = true;
                if let Err(e) = r { outcome = Err(e); break; }
            }
            _ = &mut linger => break,
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
/// opens a stream on a pooled tunnel to it (dialing one over mutual TLS when none has room), retries another
/// instance when that fails, and relays. `prefix` holds
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
        let identity = state.expected_identity(&endpoint.service, datacenter(endpoint, upstream));
        let opened = state
            .tunnels
            .open(
                &identity,
                &endpoint.address,
                dial(state, endpoint, upstream, metrics),
                metrics,
            )
            .await;
        let relayed = match opened {
            Ok(Carrier::Stream(io, _stream)) => {
                metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
                relay_upstream(
                    &mut client,
                    io,
                    STREAM_CHUNK,
                    &prefix,
                    &upstream.destination,
                )
                .await
            }
            Ok(Carrier::Direct(tls)) => {
                metrics.upstream_connections.fetch_add(1, Ordering::Relaxed);
                relay_upstream(&mut client, tls, TLS_RECORD, &prefix, &upstream.destination).await
            }
            // The instance's sidecar answered: an intention denies us. Another instance would say the same.
            Err(UpstreamError::RefusedByIntention) => {
                metrics.refused(Refusal::IntentionDeny);
                tracing::info!(upstream = %upstream.destination, instance = %endpoint.address, "refused by intention");
                refuse(
                    client,
                    &prefix,
                    &UpstreamError::RefusedByIntention,
                    &upstream.destination,
                )
                .await;
                return;
            }
            Err(why) => {
                metrics
                    .upstream_dial_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %upstream.destination, instance = %endpoint.address, error = %why, "dial failed; trying another instance");
                failed.push(endpoint.address.clone());
                continue;
            }
        };
        if let Err(why) = relayed {
            if why == UpstreamError::RefusedByIntention {
                metrics.refused(Refusal::IntentionDeny);
            }
            tracing::info!(upstream = %upstream.destination, instance = %endpoint.address, error = %why, "upstream connection ended");
        }
        drop(lease);
        return;
    }
    let why = if list.is_empty() {
        tracing::warn!(upstream = %upstream.destination, "no healthy instances found");
        UpstreamError::NoHealthyInstances
    } else {
        tracing::warn!(upstream = %upstream.destination, tried = failed.len(), "every attempt failed");
        UpstreamError::EveryInstanceFailed
    };
    refuse(client, &prefix, &why, &upstream.destination).await;
}

/// Tells a client whose connection cannot be carried why: an HTTP client gets a 503 naming the reason, rather
/// than an empty reply; other protocols just see the connection close.
async fn refuse(mut client: TcpStream, prefix: &[u8], why: &UpstreamError, destination: &str) {
    let mut first = [0u8; 16];
    let spoke_http = if prefix.is_empty() {
        match tokio::time::timeout(Duration::from_millis(200), client.read(&mut first)).await {
            Ok(Ok(n)) => looks_like_http(&first[..n]),
            _ => false,
        }
    } else {
        looks_like_http(prefix)
    };
    if spoke_http {
        let _ = client
            .write_all(why.http_answer(destination).as_bytes())
            .await;
        // Close gently: unread request bytes would turn our close into a reset that can overtake the answer.
        let _ = client.shutdown().await;
        let mut sink = [0u8; 4096];
        let drain = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

/// The datacenter an instance is in: its own when the catalog says, else the upstream's.
fn datacenter<'a>(endpoint: &'a Endpoint, upstream: &'a Upstream) -> &'a str {
    if endpoint.datacenter.is_empty() {
        upstream.datacenter.as_str()
    } else {
        endpoint.datacenter.as_str()
    }
}

/// The TLS name an instance is dialed by: its address as a name under `.invalid` (the verifier checks the SPIFFE
/// identity, never this name), so that each instance has its own resumable session in the client's cache.
pub(crate) fn instance_name(address: &str) -> rustls_pki_types::ServerName<'static> {
    let label: String = address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let label = label.trim_matches('-');
    rustls_pki_types::ServerName::try_from(format!("i-{label}.mesh.weft.invalid"))
        .or_else(|_| rustls_pki_types::ServerName::try_from("mesh.weft.invalid".to_string()))
        .unwrap_or_else(|_| {
            rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
        })
}

async fn dial(
    state: &MeshTls,
    endpoint: &Endpoint,
    upstream: &Upstream,
    metrics: &Metrics,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError> {
    let config = state
        .tunnel_client_for(&endpoint.service, datacenter(endpoint, upstream))
        .map_err(|e| UpstreamError::Identity(e.to_string()))?;
    let attempt = async {
        let tcp = TcpStream::connect(endpoint.address.as_str())
            .await
            .map_err(|e| UpstreamError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = TlsConnector::from(config)
            .connect(instance_name(&endpoint.address), tcp)
            .await
            .map_err(|e| UpstreamError::from_io(&e))?;
        if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            metrics.upstream_resumed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(stream)
    };
    tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| UpstreamError::TimedOut)?
}
