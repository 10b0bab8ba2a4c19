//! One HTTP/1.1 request to a server's RPC port over TLS, presenting a chosen certificate: how the security tests
//! ask "what may this certificate do here".

use anyhow::Result;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Who is calling: the CA to trust, and the certificate and key to present.
pub struct Identity<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Sends `method path` with `body` to `rpc` (checked to be `server_name`) and answers the status code.
pub async fn status(
    who: &Identity<'_>,
    rpc: &str,
    server_name: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<u16> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(who.ca)? {
        roots.add(cert?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(who.cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(who.key)?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    let tcp = tokio::net::TcpStream::connect(rpc).await?;
    let name = ServerName::try_from(server_name.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: weft\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut head)).await??;
    Ok(std::str::from_utf8(&head[9..12])?.parse()?)
}
