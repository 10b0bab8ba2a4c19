//! Handshakes between real rustls endpoints over loopback, with certificates from the real CA: who gets in, who
//! is refused and with which reason, and rotation through a cross-signed root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::control::{Intentions, Leaf, Roots};
use crate::metrics::{Metrics, Refusal};
use crate::tls::MeshTls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weft_ca::leaf::{new_request, sign, SigningContext};
use weft_ca::root::{cross_sign, generate_root};
use weft_ca::{CaConfig, ServiceId, StoredRoot};
use weft_types::Intention;

const CLUSTER: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn td() -> String {
    weft_ca::spiffe::trust_domain(CLUSTER)
}

pub(crate) struct Ca {
    root: StoredRoot,
    serial: u64,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        Ca {
            root: generate_root(&CaConfig::default(), CLUSTER, 1, now()).unwrap(),
            serial: 10,
        }
    }

    fn leaf_at(&mut self, service: &str, at: u64, ttl: Duration) -> Leaf {
        self.serial += 1;
        let id = ServiceId::new(&td(), "dc1", service);
        let (key, csr) = new_request(&id).unwrap();
        let ctx = SigningContext {
            root: &self.root,
            trust_domain: &td(),
            datacenter: "dc1",
            serial: self.serial,
            now_unix: at,
            ttl,
        };
        let (issued, _) = sign(&csr, &ctx).unwrap();
        Leaf {
            chain: CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            key: PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            serial: issued.serial_number,
        }
    }

    pub(crate) fn leaf(&mut self, service: &str) -> Leaf {
        self.leaf_at(service, now(), Duration::from_secs(3600))
    }

    pub(crate) fn roots(&self) -> Roots {
        Roots {
            trust_domain: td(),
            certs: CertificateDer::pem_slice_iter(self.root.root.root_cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
        }
    }
}

pub(crate) fn intentions(
    list: Vec<(&str, &str, &str)>,
    default_allow: bool,
) -> watch::Receiver<Option<Arc<Intentions>>> {
    intentions_value(list, default_allow).1
}

pub(crate) type IntentionsWatch = Option<Arc<Intentions>>;

pub(crate) fn intentions_value(
    list: Vec<(&str, &str, &str)>,
    default_allow: bool,
) -> (
    watch::Sender<IntentionsWatch>,
    watch::Receiver<IntentionsWatch>,
) {
    let list = list
        .into_iter()
        .map(|(s, d, a)| {
            let mut i = Intention {
                source_name: s.into(),
                destination_name: d.into(),
                action: a.into(),
                ..Intention::default()
            };
            i.normalize().unwrap();
            i
        })
        .collect();
    let default_policy = if default_allow {
        weft_types::DefaultPolicy::Allow
    } else {
        weft_types::DefaultPolicy::Deny
    };
    watch::channel(Some(Arc::new(Intentions {
        list,
        default_policy,
    })))
}

/// Runs one TLS server accept on loopback; returns its address and the handshake outcome.
async fn serve_once(
    tls: Arc<MeshTls>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone().unwrap());
        let mut s = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        s.write_all(b"hello").await.map_err(|e| e.to_string())?;
        s.shutdown().await.map_err(|e| e.to_string())?;
        Ok(())
    });
    (addr, handle)
}

/// Dials as `client` expecting to reach `service`; returns what the client could read.
async fn dial(
    client: &MeshTls,
    addr: std::net::SocketAddr,
    service: &str,
) -> Result<Vec<u8>, String> {
    let config = client.client_for(service, "dc1").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("mesh.weft.invalid").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

pub(crate) fn server(
    ca: &mut Ca,
    service: &str,
    rx: watch::Receiver<Option<Arc<Intentions>>>,
    metrics: Arc<Metrics>,
) -> Arc<MeshTls> {
    Arc::new(
        MeshTls::build(
            Arc::new(ca.roots()),
            Arc::new(ca.leaf(service)),
            service,
            Some(rx),
            metrics,
        )
        .unwrap(),
    )
}

pub(crate) fn client_with(roots: Roots, leaf: Leaf, service: &str) -> MeshTls {
    MeshTls::build(
        Arc::new(roots),
        Arc::new(leaf),
        service,
        None,
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

#[tokio::test]
async fn allowed_client_gets_through() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(
        &mut ca,
        "web",
        intentions(vec![("test", "web", "allow")], false),
        metrics.clone(),
    );
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let (addr, h) = serve_once(srv).await;
    assert_eq!(dial(&client, addr, "web").await.unwrap(), b"hello");
    h.await.unwrap().unwrap();
}

#[tokio::test]
async fn deny_intention_refuses_with_access_denied() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(
        &mut ca,
        "web",
        intentions(vec![("test", "web", "deny")], true),
        metrics.clone(),
    );
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let (addr, h) = serve_once(srv).await;
    let err = dial(&client, addr, "web").await.unwrap_err();
    assert!(err.contains("AccessDenied"), "{err}");
    assert!(h.await.unwrap().is_err());
    assert_eq!(metrics.refusals(Refusal::IntentionDeny), 1);
}

#[tokio::test]
async fn default_policy_applies_when_nothing_matches() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(&mut ca, "web", intentions(vec![], false), metrics.clone());
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let (addr, _h) = serve_once(srv).await;
    assert!(dial(&client, addr, "web").await.is_err());
    assert_eq!(metrics.refusals(Refusal::IntentionDeny), 1);
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let mut ca = Ca::new();
    let mut other = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(&mut ca, "web", intentions(vec![], true), metrics.clone());
    // The client trusts our roots (so it accepts the server) but presents a leaf from another CA.
    let client = client_with(ca.roots(), other.leaf("test"), "test");
    let (addr, h) = serve_once(srv).await;
    assert!(dial(&client, addr, "web").await.is_err());
    assert!(h.await.unwrap().is_err());
    assert_eq!(metrics.refusals(Refusal::UntrustedChain), 1);
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(&mut ca, "web", intentions(vec![], true), metrics.clone());
    let stale = ca.leaf_at("test", now() - 7200, Duration::from_secs(600));
    let client = client_with(ca.roots(), stale, "test");
    let (addr, _h) = serve_once(srv).await;
    assert!(dial(&client, addr, "web").await.is_err());
    assert_eq!(metrics.refusals(Refusal::Expired), 1);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let srv = server(&mut ca, "web", intentions(vec![], true), metrics.clone());
    let (addr, h) = serve_once(srv).await;
    // A plain TLS client that trusts the root but has no client certificate.
    let mut roots = rustls::RootCertStore::empty();
    for c in ca.roots().certs {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let result = async {
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("x.invalid").unwrap(), tcp)
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    }
    .await;
    assert!(result.is_err());
    let server_err = h.await.unwrap().unwrap_err();
    assert!(server_err.contains("no certificates"), "{server_err}");
    let _ = roots;
}

#[tokio::test]
async fn upstream_must_name_the_expected_service() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    // The server is "db", but the client dials expecting "web".
    let srv = server(&mut ca, "db", intentions(vec![], true), metrics);
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let (addr, _h) = serve_once(srv).await;
    let err = dial(&client, addr, "web").await.unwrap_err();
    assert!(err.contains("peer certificate mismatch"), "{err}");
}

#[tokio::test]
async fn rotation_keeps_old_and_new_interoperating() {
    let mut old = Ca::new();
    let mut new_root = generate_root(&CaConfig::default(), CLUSTER, 2, now()).unwrap();
    let cross = cross_sign(&old.root, &new_root, 3, now()).unwrap();
    new_root.root.intermediate_certs = Some(vec![cross]);
    let mut new = Ca {
        root: new_root,
        serial: 100,
    };
    // A server that only knows the old root accepts a client whose leaf comes from the new root.
    let metrics = Arc::new(Metrics::default());
    let srv = server(&mut old, "web", intentions(vec![], true), metrics);
    let client = client_with(old.roots(), new.leaf("test"), "test");
    let (addr, h) = serve_once(srv).await;
    assert_eq!(dial(&client, addr, "web").await.unwrap(), b"hello");
    h.await.unwrap().unwrap();
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crate::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn metrics_endpoint_serves_counters_in_prometheus_format() {
    let metrics = Arc::new(Metrics::default());
    metrics.refused(Refusal::IntentionDeny);
    metrics.refused(Refusal::IntentionDeny);
    metrics.refused(Refusal::NoCertificate);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(crate::metrics_endpoint::serve(
        listener,
        metrics.clone(),
        "web".into(),
    ));
    let get = |path: &'static str| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw
    };
    let page = get("/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    for line in [
        "# TYPE weft_proxy_refusals_total counter",
        "weft_proxy_refusals_total{service=\"web\",reason=\"intention_deny\"} 2",
        "weft_proxy_refusals_total{service=\"web\",reason=\"no_client_certificate\"} 1",
        "weft_proxy_refusals_total{service=\"web\",reason=\"untrusted_chain\"} 0",
        "weft_proxy_inbound_accepted_total{service=\"web\"} 0",
    ] {
        assert!(
            page.lines().any(|l| l == line),
            "missing {line:?} in:\n{page}"
        );
    }
    // A later refusal shows in the next scrape.
    metrics.refused(Refusal::Expired);
    assert!(get("/metrics")
        .await
        .contains("reason=\"certificate_expired\"} 1"));
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    server.abort();
}

#[tokio::test]
async fn a_resumed_connection_is_still_checked_against_the_intentions() {
    let mut ca = Ca::new();
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = intentions_value(vec![("test", "web", "allow")], false);
    let srv = server(&mut ca, "web", rx, metrics.clone());
    let client = client_with(ca.roots(), ca.leaf("test"), "test");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The public listener's steps: handshake, then the policy on the peer's certificate, resumed or not.
    let accepting = srv.clone();
    let kinds = tokio::spawn(async move {
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(accepting.server.clone().unwrap());
            let mut s = acceptor.accept(tcp).await.unwrap();
            let (_, conn) = s.get_ref();
            kinds.push(conn.handshake_kind());
            let leaf = conn.peer_certificates().unwrap()[0].clone();
            if accepting.policy.as_ref().unwrap().decide(&leaf).is_ok() {
                s.write_all(b"hello").await.unwrap();
            }
            let _ = s.shutdown().await;
        }
        kinds
    });
    let name = ServerName::try_from("i-web-1.mesh.weft.invalid").unwrap();
    let once = |name: ServerName<'static>| {
        let config = client.client_for("web", "dc1").unwrap();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut s = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            buf
        }
    };
    assert_eq!(once(name.clone()).await, b"hello");
    assert_eq!(once(name.clone()).await, b"hello");
    // The intention turns to deny; the ticket is still good, and the resumed connection is refused all the same.
    tx.send_replace(
        intentions(vec![("test", "web", "deny")], false)
            .borrow()
            .clone(),
    );
    assert_eq!(once(name).await, b"");
    let kinds = kinds.await.unwrap();
    assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full));
    assert_eq!(kinds[1], Some(rustls::HandshakeKind::Resumed), "{kinds:?}");
    assert_eq!(kinds[2], Some(rustls::HandshakeKind::Resumed), "{kinds:?}");
    assert_eq!(metrics.refusals(Refusal::IntentionDeny), 1);
}

#[test]
fn each_instance_has_its_own_tls_name() {
    let a = crate::listeners::instance_name("127.0.0.1:21000");
    let b = crate::listeners::instance_name("127.0.0.1:21001");
    assert_ne!(a, b);
    assert!(
        format!("{a:?}").contains("i-127-0-0-1-21000.mesh.weft.invalid"),
        "{a:?}"
    );
    let v6 = crate::listeners::instance_name("[::1]:21000");
    assert!(format!("{v6:?}").contains("mesh.weft.invalid"), "{v6:?}");
}
