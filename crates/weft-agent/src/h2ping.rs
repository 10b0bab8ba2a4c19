//! H2PING checks (Consul's): open an HTTP/2 connection to the target, over TLS with ALPN `h2` unless
//! `H2PingUseTLS` is false, and send one PING; passing when the PONG comes back within the timeout.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use weft_types::CheckStatus;

/// The check's time limit when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection and one PING; the status and the check's output.
pub async fn ping(
    target: &str,
    tls: bool,
    skip_verify: bool,
    timeout: Duration,
) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, ping_once(target, tls, skip_verify)).await {
        Ok(Ok(())) => (
            CheckStatus::Passing,
            format!("HTTP2 ping was successful on {target}"),
        ),
        Ok(Err(why)) => (
            CheckStatus::Critical,
            format!("HTTP2 ping to {target}: {why}"),
        ),
        Err(_) => (
            CheckStatus::Critical,
            format!(
                "HTTP2 ping to {target}: no PONG within {}",
                weft_types::duration::format_duration(timeout)
            ),
        ),
    }
}

async fn ping_once(target: &str, tls: bool, skip_verify: bool) -> Result<(), String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    if !tls {
        return ping_over(tcp).await;
    }
    let host = weft_types::addr::host_of(target).to_string();
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| format!("not a server name: {e}"))?;
    let mut config = if skip_verify {
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new()))
            .with_no_client_auth()
    } else {
        use rustls_platform_verifier::ConfigVerifierExt;
        rustls::ClientConfig::with_platform_verifier().map_err(|e| e.to_string())?
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    ping_over(stream).await
}

async fn ping_over<T>(io: T) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (_requests, mut connection) = h2::client::handshake(io).await.map_err(|e| e.to_string())?;
    let mut pings = connection
        .ping_pong()
        .ok_or_else(|| "the connection gives no PING handle".to_string())?;
    // The connection only makes progress while polled.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let pong = pings.ping(h2::Ping::opaque()).await;
    driver.abort();
    pong.map(|_| ()).map_err(|e| e.to_string())
}

/// `TLSSkipVerify`: any certificate is accepted (the operator asked), but handshake signatures are still checked,
/// so the connection is at least with the holder of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    fn new() -> AnyCertificate {
        AnyCertificate(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
