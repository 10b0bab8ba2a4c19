//! TLS for server RPC (port 8300): Raft, forwarded requests and the replica stream all ride on HTTP/1.1, inside TLS
//! when the agent has a CA, a certificate and a key (Consul's `tls` settings). Servers present certificates for
//! `server.<datacenter>.weft`, which every RPC client checks; with `verify_incoming` a server also demands a client
//! certificate from the same CA, so nothing without the cluster's certificates can speak Raft or write.

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The server name every server certificate carries, checked by RPC clients.
pub fn server_name(datacenter: &str) -> String {
    format!("server.{datacenter}.weft")
}

/// Both halves of RPC TLS, built once from the configured files.
#[derive(Clone)]
pub struct RpcTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RpcTls({:?})", self.server_name)
    }
}

impl RpcTls {
    /// The same certificates, checking that the servers reached are `datacenter`'s: what a server uses towards
    /// another datacenter's servers (WAN federation; every federated datacenter shares the CA).
    pub fn for_datacenter(&self, datacenter: &str) -> Result<RpcTls, TlsError> {
        let server_name = ServerName::try_from(server_name(datacenter))
            .map_err(|e| TlsError::Setup(format!("datacenter {datacenter:?}: {e}")))?;
        Ok(RpcTls {
            server_name,
            ..self.clone()
        })
    }
}

/// Why the RPC TLS files could not be used; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no valid PEM certificate: {reason}")]
    BadPem { path: String, reason: String },
    #[error("{0} holds no certificate")]
    NoCertificate(String),
    #[error("{path} is not a usable CA certificate: {reason}")]
    BadCa { path: String, reason: String },
    #[error("cannot read the private key {path}: {reason}")]
    BadKey { path: String, reason: String },
    #[error("{cert} and {key} do not match: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// Where a PEM document comes from: a file (Consul's `ca_file`, `cert_file`, `key_file`), or the text itself (Weft's
/// `ca_pem`, `cert_pem`, `key_pem`, for platforms such as ECS that hand secrets to a container as environment, not
/// files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    /// The PEM text and the setting it came from (for messages; the text is never printed).
    Inline {
        setting: String,
        text: String,
    },
}

impl Pem {
    /// The file's path, or the setting's name.
    pub fn name(&self) -> String {
        match self {
            Pem::File(path) => path.display().to_string(),
            Pem::Inline { setting, .. } => setting.clone(),
        }
    }
}

fn read_certs(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let name = || pem.name();
    let certs: Vec<_> = match pem {
        Pem::File(path) => CertificateDer::pem_file_iter(path)
            .map_err(|e| TlsError::Read {
                path: name(),
                reason: e.to_string(),
            })?
            .collect::<Result<_, _>>(),
        Pem::Inline { text, .. } => CertificateDer::pem_slice_iter(text.as_bytes())
            .map(|c| c.map(|c| c.into_owned()))
            .collect::<Result<_, _>>(),
    }
    .map_err(|e| TlsError::BadPem {
        path: name(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(name()));
    }
    Ok(certs)
}

fn read_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    match pem {
        Pem::File(path) => PrivateKeyDer::from_pem_file(path),
        Pem::Inline { text, .. } => {
            PrivateKeyDer::from_pem_slice(text.as_bytes()).map(|k| k.clone_key())
        }
    }
    .map_err(|e| TlsError::BadKey {
        path: pem.name(),
        reason: e.to_string(),
    })
}

impl RpcTls {
    /// Loads the CA, this agent's certificate and key. `verify_incoming` makes servers demand client certificates.
    pub fn load(
        ca_file: &Pem,
        cert_file: &Pem,
        key_file: &Pem,
        verify_incoming: bool,
        datacenter: &str,
    ) -> Result<RpcTls, TlsError> {
        let setup = |e: &dyn std::fmt::Display| TlsError::Setup(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(ca_file)? {
            roots.add(ca).map_err(|e| TlsError::BadCa {
                path: ca_file.name(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let chain = read_certs(cert_file)?;
        let key = read_key(key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&e))?;
        let server = if verify_incoming {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()
            .map_err(|e| setup(&format!("client verification: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        }
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| TlsError::Mismatch {
            cert: cert_file.name(),
            key: key_file.name(),
            reason: e.to_string(),
        })?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| setup(&format!("{}: {e}", cert_file.name())))?;
        let server_name = ServerName::try_from(server_name(datacenter))
            .map_err(|e| setup(&format!("bad datacenter name for TLS: {e}")))?;
        Ok(RpcTls {
            server: Arc::new(server),
            client: Arc::new(client),
            server_name,
        })
    }
}

/// A TCP stream, plain or inside TLS (client or server side).
pub enum RpcStream {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for RpcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            RpcStream::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            RpcStream::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RpcStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RpcStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            RpcStream::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            RpcStream::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => Pin::new(s).poll_flush(cx),
            RpcStream::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            RpcStream::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RpcStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            RpcStream::Client(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            RpcStream::Server(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What the RPC HTTP client reads and writes.
pub struct RpcIo(TokioIo<RpcStream>);

impl Read for RpcIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for RpcIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl Connection for RpcIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Connects over TCP, then TLS when configured: URLs stay `http://host:port`, the transport decides.
#[derive(Clone)]
pub struct RpcConnector {
    http: HttpConnector,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl RpcConnector {
    pub fn new(http: HttpConnector, tls: Option<&RpcTls>) -> RpcConnector {
        RpcConnector {
            http,
            tls: tls.map(|t| {
                (
                    tokio_rustls::TlsConnector::from(t.client.clone()),
                    t.server_name.clone(),
                )
            }),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for RpcConnector {
    type Response = RpcIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<RpcIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = tower_service::Service::<Uri>::call(&mut self.http, uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let stream = match tls {
                None => RpcStream::Plain(tcp),
                Some((connector, name)) => {
                    RpcStream::Client(Box::new(connector.connect(name, tcp).await?))
                }
            };
            Ok(RpcIo(TokioIo::new(stream)))
        })
    }
}
