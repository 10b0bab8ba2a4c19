//! Mutual TLS with SPIFFE identities. Peers are verified against the cluster's current roots; identity comes from
//! the certificate's URI SAN, never from addresses. The server side decides intentions during a full handshake, so
//! a refused client gets a definite `access_denied` alert, and again after every handshake, since a resumed one
//! (TLS 1.3 tickets, which save the signatures and chain checks of a full handshake) skips certificate
//! verification. A [`MeshTls`] snapshot is rebuilt whenever roots, the leaf or the intentions change, each with
//! a fresh ticket key and fresh client session caches, so no ticket outlives the leaf, a root rotation or an
//! intention change; new handshakes use the newest snapshot while established connections carry on untouched.

use crate::control::{Intentions, Leaf, Roots};
use crate::metrics::{Metrics, Refusal};
use crate::tunnel::{TunnelPool, TUNNEL_ALPN};
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

/// Who may reach `service`: a service identity of our trust domain that the intentions allow.
#[derive(Debug)]
pub struct InboundPolicy {
    trust_domain: String,
    service: String,
    intentions: watch::Receiver<Option<Arc<Intentions>>>,
    metrics: Arc<Metrics>,
}

impl InboundPolicy {
    /// Decides for the client whose (already chain-checked) certificate is `end_entity`; refusals are counted and
    /// logged with their reason.
    pub fn decide(&self, end_entity: &CertificateDer<'_>) -> Result<ServiceId, Refusal> {
        let client = self.identify(end_entity)?;
        self.allow(&client)?;
        Ok(client)
    }

    /// The service identity of our trust domain that `end_entity` names, before any intention (refusals counted).
    pub fn identify(&self, end_entity: &CertificateDer<'_>) -> Result<ServiceId, Refusal> {
        let uris = cert_uris(end_entity);
        let Some(client) = uris.iter().find_map(|u| ServiceId::parse(u)) else {
            self.metrics.refused(Refusal::NotAService);
            tracing::info!(
                reason = Refusal::NotAService.code(),
                ?uris,
                "refused a client without a service identity"
            );
            return Err(Refusal::NotAService);
        };
        if client.trust_domain != self.trust_domain {
            self.metrics.refused(Refusal::WrongTrustDomain);
            tracing::info!(reason = Refusal::WrongTrustDomain.code(), client = %client, "refused a client from another trust domain");
            return Err(Refusal::WrongTrustDomain);
        }
        Ok(client)
    }

    /// The intentions' decision for a client already identified by [`InboundPolicy::decide`] (a tunnel's peer:
    /// its certificate is read once per tunnel, the intentions once per stream).
    pub fn allow(&self, client: &ServiceId) -> Result<(), Refusal> {
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
            return Err(Refusal::IntentionDeny);
        }
        Ok(())
    }
}

/// Checks callers of the public listener during a full handshake: chain to the current roots, then the
/// [`InboundPolicy`].
#[derive(Debug)]
struct IntentionVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    policy: Arc<InboundPolicy>,
    metrics: Arc<Metrics>,
    /// False for tunnel clients: their identity is checked here, the intentions per stream (a refused stream is
    /// answered with the reason, where a refused handshake can reach the client as a reset).
    intentions: bool,
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
        let decided = if self.intentions {
            self.policy.decide(end_entity)
        } else {
            self.policy.identify(end_entity)
        };
        decided
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| {
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
            })
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
    /// The same, for clients that ask for a tunnel (ALPN `weft-tunnel/1`).
    pub tunnel_server: Option<Arc<ServerConfig>>,
    /// Who the public listener lets in, decided again after every handshake (resumed ones skip the verifier).
    pub policy: Option<Arc<InboundPolicy>>,
    /// The chain check alone (no intentions), to re-admit the peers of open tunnels against new roots.
    chain_verifier: Option<Arc<dyn ClientCertVerifier>>,
    clients: Mutex<HashMap<(String, bool), Arc<ClientConfig>>>,
    provider: Arc<CryptoProvider>,
    /// Tunnels to upstream instances made with this snapshot's identity.
    pub tunnels: TunnelPool,
}

/// Resumable sessions a client keeps per target service (one per instance it dialed, the most recent ones).
const SESSIONS_PER_TARGET: usize = 256;

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
        let policy = intentions.map(|intentions| {
            Arc::new(InboundPolicy {
                trust_domain: roots.trust_domain.clone(),
                service: service.to_string(),
                intentions,
                metrics: metrics.clone(),
            })
        });
        let mut chain_verifier = None;
        let server = match &policy {
            None => None,
            Some(policy) => {
                let inner = WebPkiClientVerifier::builder_with_provider(
                    root_store.clone(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError(e.to_string()))?;
                chain_verifier = Some(inner.clone());
                let config = |intentions: bool| -> Result<Arc<ServerConfig>, TlsError> {
                    let verifier = IntentionVerifier {
                        inner: inner.clone(),
                        policy: policy.clone(),
                        metrics: metrics.clone(),
                        intentions,
                    };
                    let mut config = ServerConfig::builder_with_provider(provider.clone())
                        .with_protocol_versions(&[&rustls::version::TLS13])
                        .map_err(|e| TlsError(e.to_string()))?
                        .with_client_cert_verifier(Arc::new(verifier))
                        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
                        .map_err(|e| TlsError(e.to_string()))?;
                    // Stateless resumption: one ticket per full handshake, under a key of this snapshot only. The
                    // intention check runs after every handshake (see `listeners::serve_public`), resumed or not.
                    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                    config.ticketer = rustls::crypto::ring::Ticketer::new()
                        .map_err(|e| TlsError(format!("session tickets: {e}")))?;
                    config.send_tls13_tickets = 1;
                    if !intentions {
                        config.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
                    }
                    Ok(Arc::new(config))
                };
                Some((config(true)?, config(false)?))
            }
        };
        let (server, tunnel_server) = match server {
            Some((plain, tunnel)) => (Some(plain), Some(tunnel)),
            None => (None, None),
        };
        Ok(MeshTls {
            roots,
            leaf,
            root_store,
            server,
            tunnel_server,
            policy,
            chain_verifier,
            clients: Mutex::new(HashMap::new()),
            provider,
            tunnels: TunnelPool::default(),
        })
    }

    /// Whether the client that presented `chain` (end entity first) may reach this service now: its chain against
    /// the current roots, then the intentions. For peers of open tunnels when a new snapshot arrives.
    pub fn admit(&self, chain: &[CertificateDer<'static>]) -> Result<ServiceId, Refusal> {
        let (Some(verifier), Some(policy), Some((leaf, intermediates))) =
            (&self.chain_verifier, &self.policy, chain.split_first())
        else {
            return Err(Refusal::NoCertificate);
        };
        if let Err(e) = verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            let reason = classify(&e);
            policy.metrics.refused(reason);
            tracing::info!(reason = reason.code(), error = %e, "a tunnel's peer no longer passes the chain check");
            return Err(reason);
        }
        policy.decide(leaf)
    }

    /// The client configuration for dialing instances of `service` in `datacenter` (cached per target).
    pub fn client_for(
        &self,
        service: &str,
        datacenter: &str,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        self.client_config(service, datacenter, false)
    }

    /// The same, asking for a tunnel (ALPN `weft-tunnel/1`); an instance that does not offer it answers without.
    pub fn tunnel_client_for(
        &self,
        service: &str,
        datacenter: &str,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        self.client_config(service, datacenter, true)
    }

    /// The identity URI instances of `service` in `datacenter` must present.
    pub fn expected_identity(&self, service: &str, datacenter: &str) -> String {
        ServiceId::new(&self.roots.trust_domain, datacenter, service).uri()
    }

    fn client_config(
        &self,
        service: &str,
        datacenter: &str,
        tunnel: bool,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let expected = self.expected_identity(service, datacenter);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&(expected.clone(), tunnel)) {
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
        // Sessions per instance (the dialer names each by its address), kept with this snapshot only.
        config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_PER_TARGET);
        if tunnel {
            config.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
        }
        let config = Arc::new(config);
        clients.insert((expected, tunnel), config.clone());
        Ok(config)
    }
}
