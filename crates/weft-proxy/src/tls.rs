//! Mutual TLS with SPIFFE identities. Peers are verified against the cluster's current roots; identity comes from
//! the certificate's URI SAN, never from addresses. The server side also decides intentions during the handshake,
//! so a refused client gets a definite `access_denied` alert. A [`MeshTls`] snapshot is rebuilt whenever roots or
//! the leaf change, and new handshakes use the newest one while established connections carry on untouched.

use crate::control::{Intentions, Leaf, Roots};
use crate::metrics::{Metrics, Refusal};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use weft_ca::ServiceId;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SPIFFE URIs in a certificate's SAN.
pub fn cert_uris(cert: &CertificateDer<'_>) -> Vec<String> {
    weft_ca::leaf::cert_uris(cert.as_ref())
}

fn classify(e: &rustls::Error) -> Refusal {
    match e {
        rustls::Error::NoCertificatesPresented => Refusal::NoCertificate,
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => Refusal::Expired,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => Refusal::Expired,
        _ => Refusal::UntrustedChain,
    }
}

/// Checks callers of the public listener: chain to the current roots, a service identity in our trust domain, and
/// an intention that allows it to reach `service`.
#[derive(Debug)]
struct IntentionVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    service: String,
    intentions: watch::Receiver<Option<Arc<Intentions>>>,
    metrics: Arc<Metrics>,
}

impl ClientCertVerifier for IntentionVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            let reason = classify(&e);
            self.metrics.refused(reason);
            tracing::info!(reason = reason.code(), error = %e, "refused a client certificate");
            return Err(e);
        }
        let uris = cert_uris(end_entity);
        let Some(client) = uris.iter().find_map(|u| ServiceId::parse(u)) else {
            self.metrics.refused(Refusal::NotAService);
            tracing::info!(
                reason = Refusal::NotAService.code(),
                ?uris,
                "refused a client without a service identity"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        };
        if client.trust_domain != self.trust_domain {
            self.metrics.refused(Refusal::WrongTrustDomain);
            tracing::info!(reason = Refusal::WrongTrustDomain.code(), client = %client, "refused a client from another trust domain");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let intentions = self.intentions.borrow().clone();
        let (list, default) = match &intentions {
            Some(i) => (i.list.as_slice(), i.default_policy),
            // Before the first intentions answer arrives, refuse: fail closed.
            None => (&[][..], weft_types::DefaultPolicy::Deny),
        };
        let decision =
            weft_types::intention::authorize(list, &client.service, &self.service, default);
        if !decision.allowed {
            self.metrics.refused(Refusal::IntentionDeny);
            tracing::info!(
                reason = Refusal::IntentionDeny.code(),
                source = %client.service,
                destination = %self.service,
                why = %decision.reason,
                "refused a connection"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks an upstream's certificate: chain to our roots, and a URI naming exactly the service we meant to reach
/// in our trust domain (webpki cannot match URI names, so the name check is ours).
#[derive(Debug)]
struct UpstreamVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let uris = cert_uris(end_entity);
        if uris.iter().any(|u| u.eq_ignore_ascii_case(&self.expected)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "peer certificate mismatch: got {uris:?}, want {}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Everything needed for handshakes at one moment: rebuilt when roots or the leaf change.
pub struct MeshTls {
    pub roots: Arc<Roots>,
    pub leaf: Arc<Leaf>,
    root_store: Arc<RootCertStore>,
    /// The public listener's configuration (None for a proxy without one).
    pub server: Option<Arc<ServerConfig>>,
    clients: Mutex<HashMap<String, Arc<ClientConfig>>>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug, thiserror::Error)]
#[error("TLS setup failed: {0}")]
pub struct TlsError(String);

impl MeshTls {
    pub fn build(
        roots: Arc<Roots>,
        leaf: Arc<Leaf>,
        service: &str,
        intentions: Option<watch::Receiver<Option<Arc<Intentions>>>>,
        metrics: Arc<Metrics>,
    ) -> Result<MeshTls, TlsError> {
        let provider = provider();
        let mut store = RootCertStore::empty();
        for cert in &roots.certs {
            store
                .add(cert.clone())
                .map_err(|e| TlsError(format!("root certificate: {e}")))?;
        }
        let root_store = Arc::new(store);
        let server = match intentions {
            None => None,
            Some(intentions) => {
                let inner = WebPkiClientVerifier::builder_with_provider(
                    root_store.clone(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError(e.to_string()))?;
                let verifier = IntentionVerifier {
                    inner,
                    trust_domain: roots.trust_domain.clone(),
                    service: service.to_string(),
                    intentions,
                    metrics,
                };
                let mut config = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| TlsError(e.to_string()))?
                    .with_client_cert_verifier(Arc::new(verifier))
                    .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
                    .map_err(|e| TlsError(e.to_string()))?;
                // No session resumption: a resumed handshake skips certificate verification, and with it the
                // intention check, so a revoked permission would outlive its intention.
                config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
                Some(Arc::new(config))
            }
        };
        Ok(MeshTls {
            roots,
            leaf,
            root_store,
            server,
            clients: Mutex::new(HashMap::new()),
            provider,
        })
    }

    /// The client configuration for dialing instances of `service` in `datacenter` (cached per target).
    pub fn client_for(
        &self,
        service: &str,
        datacenter: &str,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let expected = ServiceId::new(&self.roots.trust_domain, datacenter, service).uri();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&expected) {
            return Ok(c.clone());
        }
        let verifier = UpstreamVerifier {
            roots: self.root_store.clone(),
            expected: expected.clone(),
            provider: self.provider.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.leaf.chain.clone(), self.leaf.key.clone_key())
            .map_err(|e| TlsError(e.to_string()))?;
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        clients.insert(expected, config.clone());
        Ok(config)
    }
}
