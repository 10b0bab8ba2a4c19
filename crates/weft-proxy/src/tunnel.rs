//! Pooled, multiplexed tunnels between sidecars (the shape of Istio ambient's HBONE). An upstream sidecar keeps a
//! few mutual-TLS HTTP/2 connections per destination instance and carries each new application connection as one
//! HTTP/2 `CONNECT` stream, so a new connection costs a stream (a few microseconds) rather than a TLS handshake.
//!
//! The tunnel is chosen by ALPN (`weft-tunnel/1`): a public listener that does not offer it (an older Weft) makes
//! the dialer fall back to one TLS connection per application connection, and clients that do not ask for it (the
//! ingress of an older Weft, native clients, nginx) get today's form. A tunnel client's handshake checks its chain
//! and identity; the intentions are decided per stream, so a refused client is answered with the reason (403
//! `intention_deny`). When roots, the leaf or the intentions change, every open tunnel's peer is checked again: a
//! peer the intentions now deny has its open streams cut (later ones are refused one by one), and a peer whose
//! chain no longer passes has its tunnel closed.

use crate::metrics::{Metrics, Refusal};
use crate::tls::MeshTls;
use crate::upstream_error::UpstreamError;
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use weft_ca::ServiceId;

/// The ALPN protocol that asks a public listener for a tunnel.
pub const TUNNEL_ALPN: &[u8] = b"weft-tunnel/1";
/// Streams one tunnel carries at once (the public side's `SETTINGS_MAX_CONCURRENT_STREAMS`); the dialer opens
/// another tunnel to the instance beyond that.
const STREAMS_PER_TUNNEL: usize = 100;
/// Tunnels kept per destination instance; past `STREAMS_PER_TUNNEL` on each, new streams wait for a free slot.
const TUNNELS_PER_INSTANCE: usize = 4;
/// Bytes a stream may have in flight before its reader takes them. Measured in `weft-bench mesh` (bulk, 64 MiB on a
/// fresh connection): 256 KiB, 512 KiB with 64 KiB frames and 2 MiB all gave ~500-530 MB/s, CPU-bound on the
/// sidecars' copies and framing rather than on the window, so the smallest keeps what a stalled reader can pin down.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's window covers every stream's, so streams whose readers stall never starve the others.
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * STREAMS_PER_TUNNEL as u32;
/// Read size when relaying a stream (HTTP/2's default largest frame, 16 KiB; 64 KiB frames measured no faster).
pub(crate) const STREAM_CHUNK: usize = 16 * 1024;
/// Liveness of an idle tunnel: a ping this often, and the tunnel is dead when none is answered in time.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel that carries no stream for this long is closed by its public side (the dialer redials when needed).
const IDLE_TUNNEL: Duration = Duration::from_secs(120);
/// The largest request head a tunnel stream may send (a CONNECT has a handful of short headers).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// The header that says why a stream was refused (as `X-Weft-Refusal` does on the ingress's 503s).
pub const REFUSAL_HEADER: &str = "x-weft-refusal";

/// One application connection's way to an instance.
pub enum Carrier {
    /// A stream of a pooled tunnel; the lease counts it against its tunnel until dropped.
    Stream(TokioIo<Upgraded>, StreamLease),
    /// The instance does not speak tunnels (an older Weft): this TLS connection carries this one connection.
    Direct(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A stream's place on its tunnel.
pub struct StreamLease(Arc<AtomicUsize>);

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
struct Tunnel {
    send: SendRequest<Empty<Bytes>>,
    streams: Arc<AtomicUsize>,
}

impl Tunnel {
    fn lease(&self) -> StreamLease {
        self.streams.fetch_add(1, Ordering::AcqRel);
        StreamLease(self.streams.clone())
    }
}

/// Why a stream could not be opened on a tunnel.
enum StreamError {
    /// The tunnel is gone (closed, reset, its peer dead): forget it and dial again.
    Dead(String),
    /// The peer answered: this is the outcome for this instance.
    Refused(UpstreamError),
}

/// The tunnels a sidecar holds, per destination identity and instance address. One pool lives in each TLS
/// snapshot ([`MeshTls`]), so a new leaf, root or intention set starts new tunnels while the old ones finish.
#[derive(Default)]
pub struct TunnelPool {
    by_instance: Mutex<HashMap<String, Vec<Tunnel>>>,
}

impl TunnelPool {
    /// A stream to the instance at `address` (expected to be `identity`), on a pooled tunnel when one has room,
    /// else on a tunnel made with `dial` (which offers [`TUNNEL_ALPN`]). An instance that does not take the tunnel
    /// gets the dialed TLS connection back as [`Carrier::Direct`].
    pub async fn open<D>(
        &self,
        identity: &str,
        address: &str,
        dial: D,
        metrics: &Metrics,
    ) -> Result<Carrier, UpstreamError>
    where
        D: Future<Output = Result<tokio_rustls::client::TlsStream<TcpStream>, UpstreamError>>,
    {
        let key = format!("{identity} {address}");
        if let Some(tunnel) = self.pick(&key) {
            // Leased before the stream is asked for, so concurrent openers see the tunnel busier.
            let lease = tunnel.lease();
            match stream(&tunnel, address).await {
                Ok(io) => {
                    metrics.tunnel_streams.fetch_add(1, Ordering::Relaxed);
                    return Ok(Carrier::Stream(io, lease));
                }
                Err(StreamError::Refused(why)) => return Err(why),
                Err(StreamError::Dead(why)) => {
                    tracing::debug!(instance = %address, error = %why, "a pooled tunnel is gone; dialing a new one");
                    self.forget(&key, &tunnel);
                }
            }
        }
        let tls = dial.await?;
        if tls.get_ref().1.alpn_protocol() != Some(TUNNEL_ALPN) {
            return Ok(Carrier::Direct(Box::new(tls)));
        }
        // hyper keeps only the kind and text of an I/O error; the tunnel's own first error keeps its type.
        let first_error = Arc::new(Mutex::new(None));
        let tls = FirstError {
            inner: tls,
            error: first_error.clone(),
        };
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                let first = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
                first.unwrap_or_else(|| UpstreamError::Io(format!("tunnel handshake: {e}")))
            })?;
        let instance = address.to_string();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let why = conn.await.err().map(|e| {
                tracing::debug!(%instance, error = %e, "tunnel ended with an error");
                let first = first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
                first.unwrap_or_else(|| UpstreamError::Io(e.to_string()))
            });
            let _ = ended_tx.send(why);
        });
        metrics.tunnels_dialed.fetch_add(1, Ordering::Relaxed);
        let tunnel = Tunnel {
            send,
            streams: Arc::default(),
        };
        // Leased before it is shared, so concurrent openers see it busy.
        let lease = tunnel.lease();
        self.keep(&key, &tunnel);
        match stream(&tunnel, address).await {
            Ok(io) => {
                metrics.tunnel_streams.fetch_add(1, Ordering::Relaxed);
                Ok(Carrier::Stream(io, lease))
            }
            Err(StreamError::Refused(why)) => Err(why),
            Err(StreamError::Dead(why)) => {
                self.forget(&key, &tunnel);
                // A new tunnel that fails at once: how the connection ended says why (a TLS `access_denied`
                // alert, sent once the peer has checked our certificate, means an intention refused us).
                let ended = tokio::time::timeout(Duration::from_secs(1), ended_rx).await;
                Err(ended
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
                    .unwrap_or(UpstreamError::Io(why)))
            }
        }
    }

    /// The least busy open tunnel to `key` with room for a stream, or (all full and no room for another tunnel)
    /// the least busy one; None when a new tunnel should be dialed.
    fn pick(&self, key: &str) -> Option<Tunnel> {
        let mut all = self.by_instance.lock().unwrap_or_else(|p| p.into_inner());
        let list = all.get_mut(key)?;
        list.retain(|t| !t.send.is_closed());
        let least = list
            .iter()
            .min_by_key(|t| t.streams.load(Ordering::Acquire))?
            .clone();
        let busy = least.streams.load(Ordering::Acquire) >= STREAMS_PER_TUNNEL;
        if busy && list.len() < TUNNELS_PER_INSTANCE {
            return None;
        }
        Some(least)
    }

    fn keep(&self, key: &str, tunnel: &Tunnel) {
        let mut all = self.by_instance.lock().unwrap_or_else(|p| p.into_inner());
        // Instances come and go: a dial (rare next to streams) also sweeps out the tunnels that have closed, so
        // the pool holds no more than what is open.
        all.retain(|_, list| {
            list.retain(|t| !t.send.is_closed());
            !list.is_empty()
        });
        let list = all.entry(key.to_string()).or_default();
        // Two openers may both have dialed: the extra tunnel carries its stream and closes when that ends.
        if list.len() < TUNNELS_PER_INSTANCE {
            list.push(tunnel.clone());
        }
    }

    fn forget(&self, key: &str, tunnel: &Tunnel) {
        let mut all = self.by_instance.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = all.get_mut(key) {
            list.retain(|t| !Arc::ptr_eq(&t.streams, &tunnel.streams) && !t.send.is_closed());
            if list.is_empty() {
                all.remove(key);
            }
        }
    }

    /// Open tunnels (for tests and metrics).
    pub fn tunnels(&self) -> usize {
        let mut all = self.by_instance.lock().unwrap_or_else(|p| p.into_inner());
        all.values_mut()
            .map(|l| {
                l.retain(|t| !t.send.is_closed());
                l.len()
            })
            .sum()
    }
}

/// A tunnel's TLS stream that remembers its first I/O error, classified (a TLS `access_denied` alert is the
/// destination's intention check refusing us).
struct FirstError {
    inner: tokio_rustls::client::TlsStream<TcpStream>,
    error: Arc<Mutex<Option<UpstreamError>>>,
}

impl FirstError {
    fn note<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| UpstreamError::from_io(e));
        }
        r
    }
}

impl AsyncRead for FirstError {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(r)
    }
}

impl AsyncWrite for FirstError {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(r)
    }
}

/// Opens one `CONNECT` stream on `tunnel`.
async fn stream(tunnel: &Tunnel, address: &str) -> Result<TokioIo<Upgraded>, StreamError> {
    let mut send = tunnel.send.clone();
    send.ready()
        .await
        .map_err(|e| StreamError::Dead(e.to_string()))?;
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(address)
        .body(Empty::new())
        .map_err(|e| StreamError::Refused(UpstreamError::Io(e.to_string())))?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| StreamError::Dead(e.to_string()))?;
    match response.status() {
        StatusCode::OK => hyper::upgrade::on(response)
            .await
            .map(TokioIo::new)
            .map_err(|e| StreamError::Dead(e.to_string())),
        StatusCode::FORBIDDEN => Err(StreamError::Refused(UpstreamError::RefusedByIntention)),
        status => {
            let reason = response
                .headers()
                .get(REFUSAL_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            Err(StreamError::Refused(UpstreamError::Io(format!(
                "the instance refused the stream with {status} ({reason})"
            ))))
        }
    }
}

/// The public side of one tunnel.
pub struct TunnelServer {
    /// The peer's certificate chain as presented in the tunnel's handshake (end entity first), and the identity
    /// it names (checked at the handshake).
    peer_chain: Vec<CertificateDer<'static>>,
    peer: ServiceId,
    tls: watch::Receiver<Option<Arc<MeshTls>>>,
    local: String,
    metrics: Arc<Metrics>,
    tracker: Arc<crate::listeners::Tracker>,
    /// This tunnel's streams being relayed now, and all it has carried.
    open: Arc<AtomicUsize>,
    carried: AtomicUsize,
}

impl TunnelServer {
    pub fn new(
        peer_chain: Vec<CertificateDer<'static>>,
        peer: ServiceId,
        tls: watch::Receiver<Option<Arc<MeshTls>>>,
        local: String,
        metrics: Arc<Metrics>,
        tracker: Arc<crate::listeners::Tracker>,
    ) -> TunnelServer {
        TunnelServer {
            peer_chain,
            peer,
            tls,
            local,
            metrics,
            tracker,
            open: Arc::default(),
            carried: AtomicUsize::new(0),
        }
    }

    /// Serves the tunnel's streams until the peer closes it, it idles out, or its peer is no longer allowed.
    pub async fn serve(self, tls: tokio_rustls::server::TlsStream<TcpStream>) {
        let this = Arc::new(self);
        // Moves each time the intentions turn against the peer: every relay open at that moment stops, and later
        // streams are refused one by one (403) while the tunnel stays, so the client hears why.
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let serving = this.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (this, cut) = (serving.clone(), cut_rx.clone());
            async move { Ok::<_, std::convert::Infallible>(this.stream(req, cut).await) }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(STREAMS_PER_TUNNEL as u32)
            .max_header_list_size(MAX_HEADER_LIST)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        loop {
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                    return;
                }
                why = this.refused_later() => {
                    if why == Refusal::IntentionDeny {
                        tracing::info!(reason = why.code(), "cutting a tunnel's streams: the intentions deny its peer now");
                        cut_tx.send_modify(|n| *n += 1);
                        continue;
                    }
                    // The chain no longer passes (roots rotated out, say): the tunnel itself goes.
                    tracing::info!(reason = why.code(), "closing a tunnel: its peer is no longer allowed");
                    cut_tx.send_modify(|n| *n += 1);
                    return;
                }
                _ = this.idle() => {
                    tracing::debug!("closing a tunnel that carried nothing for a while");
                    return;
                }
            }
        }
    }

    /// One `CONNECT` stream: decided against the intentions of now, then relayed to the local application.
    async fn stream(
        &self,
        req: Request<Incoming>,
        mut cut: watch::Receiver<u64>,
    ) -> Response<Empty<Bytes>> {
        // A cut from before this stream does not concern it.
        cut.borrow_and_update();
        if req.method() != Method::CONNECT {
            return refusal(StatusCode::METHOD_NOT_ALLOWED, "not_a_connect");
        }
        let policy = self.tls.borrow().as_ref().and_then(|s| s.policy.clone());
        let decision = match policy {
            Some(policy) => policy.allow(&self.peer),
            None => Err(Refusal::NoCertificate),
        };
        if let Err(why) = decision {
            return refusal(StatusCode::FORBIDDEN, why.code());
        }
        let app = tokio::time::timeout(
            crate::listeners::LOCAL_CONNECT_TIMEOUT,
            TcpStream::connect(self.local.as_str()),
        )
        .await;
        let mut app = match app {
            Ok(Ok(app)) => app,
            Ok(Err(e)) => {
                tracing::warn!(local = %self.local, error = %e, "failed to dial the local application");
                return refusal(StatusCode::BAD_GATEWAY, "local_application_unreachable");
            }
            Err(_) => {
                tracing::warn!(local = %self.local, "timed out dialing the local application");
                return refusal(StatusCode::GATEWAY_TIMEOUT, "local_application_timed_out");
            }
        };
        let _ = app.set_nodelay(true);
        self.metrics
            .inbound_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .inbound_tunnel_streams
            .fetch_add(1, Ordering::Relaxed);
        self.carried.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::AcqRel);
        let (guard, lease) = (self.tracker.track(), StreamLease(self.open.clone()));
        tokio::spawn(async move {
            let (_guard, _lease) = (guard, lease);
            let mut stream = match hyper::upgrade::on(req).await {
                Ok(up) => TokioIo::new(up),
                Err(e) => {
                    tracing::debug!(error = %e, "a tunnel stream ended before it started");
                    return;
                }
            };
            let relay = tokio::io::copy_bidirectional_with_sizes(
                &mut stream,
                &mut app,
                STREAM_CHUNK,
                STREAM_CHUNK,
            );
            tokio::select! {
                r = relay => if let Err(e) = r {
                    tracing::debug!(error = %e, "a tunnel stream ended with an error");
                },
                _ = cut.changed() => {}
            }
        });
        Response::new(Empty::new())
    }

    /// Completes when a new TLS snapshot (roots, leaf or intentions changed) no longer admits the peer.
    async fn refused_later(&self) -> Refusal {
        let mut rx = self.tls.clone();
        rx.borrow_and_update();
        loop {
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            let state = rx.borrow_and_update().clone();
            let Some(state) = state else { continue };
            if let Err(why) = state.admit(&self.peer_chain) {
                return why;
            }
        }
    }

    /// Completes once the tunnel has carried no stream for [`IDLE_TUNNEL`].
    async fn idle(&self) {
        let mut last = self.carried.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(IDLE_TUNNEL).await;
            let now = self.carried.load(Ordering::Relaxed);
            if now == last && self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            last = now;
        }
    }
}

fn refusal(status: StatusCode, reason: &str) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(reason) {
        response.headers_mut().insert(REFUSAL_HEADER, v);
    }
    response
}
