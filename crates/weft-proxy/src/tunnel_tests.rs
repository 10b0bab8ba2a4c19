//! Tunnels between a real upstream listener and a real public listener on loopback, with certificates from the
//! real CA: many connections on one tunnel, bytes intact both ways with half-closes, a stalled stream beside a live
//! one, a deny that closes an open tunnel, and an instance that does not speak tunnels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::config::Upstream;
use crate::control::Endpoint;
use crate::listeners::{serve_public, serve_upstream, Tracker};
use crate::metrics::{Metrics, Refusal};
use crate::tests::{client_with, intentions, intentions_value, server, Ca, IntentionsWatch};
use crate::tls::MeshTls;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// An application that sends back what it reads, chunk by chunk, and half-closes when its client does.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A `test` sidecar's upstream port leading to a `web` sidecar in front of `app`.
struct Pair {
    upstream: SocketAddr,
    client: Arc<Metrics>,
    server: Arc<Metrics>,
    intentions: watch::Sender<IntentionsWatch>,
    server_tls: watch::Sender<Option<Arc<MeshTls>>>,
    _client_tls: watch::Sender<Option<Arc<MeshTls>>>,
    _endpoints: watch::Sender<Option<Arc<Vec<Endpoint>>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn upstream_to(
    ca: &mut Ca,
    address: SocketAddr,
) -> (
    SocketAddr,
    Arc<Metrics>,
    watch::Sender<Option<Arc<MeshTls>>>,
    watch::Sender<Option<Arc<Vec<Endpoint>>>>,
    JoinHandle<()>,
) {
    let metrics = Arc::new(Metrics::default());
    let client = Arc::new(client_with(ca.roots(), ca.leaf("test"), "test"));
    let (client_tls, client_rx) = watch::channel(Some(client));
    let (endpoints, endpoints_rx) = watch::channel(Some(Arc::new(vec![Endpoint {
        address: address.to_string(),
        service: "web".into(),
        datacenter: "dc1".into(),
        node: "n1".into(),
    }])));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bind = listener.local_addr().unwrap();
    let upstream = Upstream {
        destination: "web".into(),
        datacenter: "dc1".into(),
        bind,
    };
    let task = tokio::spawn(serve_upstream(
        listener,
        upstream,
        client_rx,
        endpoints_rx,
        metrics.clone(),
        Arc::new(Tracker::default()),
    ));
    (bind, metrics, client_tls, endpoints, task)
}

async fn pair(ca: &mut Ca, app: SocketAddr) -> Pair {
    let server_metrics = Arc::new(Metrics::default());
    let (intentions_tx, intentions_rx) = intentions_value(vec![("test", "web", "allow")], false);
    let srv = server(ca, "web", intentions_rx, server_metrics.clone());
    let (server_tls, server_rx) = watch::channel(Some(srv));
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public_addr = public.local_addr().unwrap();
    let accept = tokio::spawn(serve_public(
        public,
        app.to_string(),
        server_rx,
        server_metrics.clone(),
        Arc::new(Tracker::default()),
    ));
    let (upstream, client, client_tls, endpoints, task) = upstream_to(ca, public_addr).await;
    Pair {
        upstream,
        client,
        server: server_metrics,
        intentions: intentions_tx,
        server_tls,
        _client_tls: client_tls,
        _endpoints: endpoints,
        tasks: vec![accept, task],
    }
}

/// Sends `data` through `at`, half-closes, and returns everything that comes back.
async fn round_trip(at: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(at).await.unwrap();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let receive = r.read_to_end(&mut back);
    let (_, got) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("round trip timed out");
    got.unwrap();
    back
}

/// What an HTTP client of the upstream port `at` is answered.
async fn http_answer(at: SocketAddr) -> String {
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_connections_ride_one_tunnel() {
    let mut ca = Ca::new();
    let app = echo_app().await;
    let p = pair(&mut ca, app).await;
    for i in 0..300 {
        let msg = format!("ping {i}");
        assert_eq!(round_trip(p.upstream, msg.as_bytes()).await, msg.as_bytes());
    }
    assert_eq!(p.client.tunnels_dialed.load(Ordering::Relaxed), 1);
    assert_eq!(p.client.tunnel_streams.load(Ordering::Relaxed), 300);
    assert_eq!(p.server.inbound_tunnel_streams.load(Ordering::Relaxed), 300);
    assert_eq!(p.server.inbound_accepted.load(Ordering::Relaxed), 300);
    // Fifty at once: still a handful of tunnels at most.
    let all: Vec<_> = (0..50)
        .map(|i| {
            let at = p.upstream;
            tokio::spawn(async move {
                let msg = format!("concurrent {i}");
                assert_eq!(round_trip(at, msg.as_bytes()).await, msg.as_bytes());
            })
        })
        .collect();
    for t in all {
        t.await.unwrap();
    }
    assert!(p.client.tunnels_dialed.load(Ordering::Relaxed) <= 4);
    assert_eq!(p.client.tunnel_streams.load(Ordering::Relaxed), 350);
    assert_eq!(p.client.upstream_dial_failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_arrive_intact_both_ways_across_half_closes() {
    let mut ca = Ca::new();
    let app = echo_app().await;
    let p = pair(&mut ca, app).await;
    for size in [0usize, 1, 16 * 1024 + 7, 3 * 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let back = round_trip(p.upstream, &data).await;
        assert_eq!(back.len(), data.len(), "size {size}");
        assert!(back == data, "size {size}: the bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_hold_up_the_others() {
    let mut ca = Ca::new();
    let app = echo_app().await;
    let p = pair(&mut ca, app).await;
    // Warm the tunnel, then a client that writes 256 MiB and never reads: its echo backs up through the stream.
    assert_eq!(round_trip(p.upstream, b"warm").await, b"warm");
    let mut stalled = TcpStream::connect(p.upstream).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..1024 {
            if stalled.write_all(&chunk).await.is_err() {
                break;
            }
        }
        stalled
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the stalled stream should be blocked by now"
    );
    assert_eq!(p.client.tunnels_dialed.load(Ordering::Relaxed), 1);
    // Others on the same tunnel go on.
    for i in 0..20 {
        let msg = format!("beside the stall {i}");
        let back = tokio::time::timeout(
            Duration::from_secs(2),
            round_trip(p.upstream, msg.as_bytes()),
        )
        .await
        .expect("a stream beside a stalled one was held up");
        assert_eq!(back, msg.as_bytes());
    }
    assert_eq!(p.client.tunnels_dialed.load(Ordering::Relaxed), 1);
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_closes_the_open_tunnel_and_refuses_new_streams() {
    let mut ca = Ca::new();
    let app = echo_app().await;
    let p = pair(&mut ca, app).await;
    let mut open = TcpStream::connect(p.upstream).await.unwrap();
    open.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    // The intention turns to deny, and the proxy's TLS snapshot is rebuilt as the proxy does on every change.
    p.intentions.send_replace(
        intentions(vec![("test", "web", "deny")], false)
            .borrow()
            .clone(),
    );
    let rebuilt = Arc::new(
        MeshTls::build(
            Arc::new(ca.roots()),
            Arc::new(ca.leaf("web")),
            "web",
            Some(p.intentions.subscribe()),
            p.server.clone(),
        )
        .unwrap(),
    );
    p.server_tls.send_replace(Some(rebuilt));
    // The open connection ends within a moment.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(3), open.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the open connection was not closed after the deny"
    );
    // A new one is refused, and an HTTP client is told why.
    let answer = http_answer(p.upstream).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("refused_by_intention"), "{answer}");
    assert!(p.server.refusals(Refusal::IntentionDeny) >= 1);
    assert!(p.client.refusals(Refusal::IntentionDeny) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_tunnels_gets_a_tls_connection_per_client() {
    let mut ca = Ca::new();
    // An older Weft's public listener: mutual TLS, no ALPN, "hello" to each client.
    let srv = server(
        &mut ca,
        "web",
        intentions(vec![("test", "web", "allow")], false),
        Arc::new(Metrics::default()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let old = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(srv.server.clone().unwrap());
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    assert_eq!(s.get_ref().1.alpn_protocol(), None);
                    let _ = s.write_all(b"hello").await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    let (upstream, client, _tls, _endpoints, task) = upstream_to(&mut ca, addr).await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(upstream).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"hello");
    }
    assert_eq!(client.upstream_connections.load(Ordering::Relaxed), 3);
    assert_eq!(client.tunnels_dialed.load(Ordering::Relaxed), 0);
    assert_eq!(client.tunnel_streams.load(Ordering::Relaxed), 0);
    old.abort();
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_that_asks_for_anything_but_connect_is_refused_per_stream() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let mut ca = Ca::new();
    let app = echo_app().await;
    let server_metrics = Arc::new(Metrics::default());
    let srv = server(
        &mut ca,
        "web",
        intentions(vec![("test", "web", "allow")], false),
        server_metrics.clone(),
    );
    let (_tls, rx) = watch::channel(Some(srv));
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap();
    let task = tokio::spawn(serve_public(
        public,
        app.to_string(),
        rx,
        server_metrics,
        Arc::new(Tracker::default()),
    ));
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let config = client.tunnel_client_for("web", "dc1").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(crate::listeners::instance_name(&addr.to_string()), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(crate::tunnel::TUNNEL_ALPN)
    );
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let get = hyper::Request::get("http://web/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = send.send_request(get).await.unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(
        answer.headers()[crate::tunnel::REFUSAL_HEADER],
        "not_a_connect"
    );
    // The same tunnel still carries a CONNECT.
    let connect = hyper::Request::connect(addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = send.send_request(connect).await.unwrap();
    assert_eq!(answer.status(), 200);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_before_the_snapshot_changes_is_answered_per_stream() {
    let mut ca = Ca::new();
    let app = echo_app().await;
    let p = pair(&mut ca, app).await;
    assert_eq!(round_trip(p.upstream, b"first").await, b"first");
    // Only the intentions move (the proxy has not rebuilt its TLS snapshot yet): the open tunnel's next stream is
    // refused with the reason, and an HTTP client is told why.
    p.intentions.send_replace(
        intentions(vec![("test", "web", "deny")], false)
            .borrow()
            .clone(),
    );
    let answer = http_answer(p.upstream).await;
    assert!(answer.contains("refused_by_intention"), "{answer}");
    assert_eq!(p.client.tunnels_dialed.load(Ordering::Relaxed), 1);
    assert_eq!(p.server.refusals(Refusal::IntentionDeny), 1);
}
