//! Why a connection to an upstream could not be carried: compared as values, logged in words a person can act on,
//! and answered to HTTP clients with a stable code (`X-Weft-Refusal`).

use crate::listeners::rustls_error;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The destination's sidecar refused our certificate: an intention denies this source.
    #[error("refused by intention")]
    RefusedByIntention,
    /// The destination refused the TLS handshake for another reason (the alert it sent).
    #[error("peer refused the TLS handshake ({0})")]
    HandshakeRefused(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// No TLS configuration could be made for the destination's identity.
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    Io(String),
    #[error("timed out")]
    TimedOut,
    #[error("no healthy instances found")]
    NoHealthyInstances,
    #[error("every instance failed to answer")]
    EveryInstanceFailed,
}

impl UpstreamError {
    /// The stable code sent in `X-Weft-Refusal`.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::RefusedByIntention => "refused_by_intention",
            UpstreamError::HandshakeRefused(_) => "handshake_refused",
            UpstreamError::Tls(_) => "tls_error",
            UpstreamError::Identity(_) => "no_identity",
            UpstreamError::Io(_) => "io_error",
            UpstreamError::TimedOut => "timed_out",
            UpstreamError::NoHealthyInstances => "no_healthy_instances_found",
            UpstreamError::EveryInstanceFailed => "every_instance_failed_to_answer",
        }
    }

    /// Classifies an I/O error of the upstream side (the TLS layer's errors arrive wrapped in I/O errors).
    pub fn from_io(e: &std::io::Error) -> UpstreamError {
        match rustls_error(e) {
            Some(tls) => UpstreamError::from_tls(tls),
            None => UpstreamError::Io(e.to_string()),
        }
    }

    /// Classifies a TLS error: an `access_denied` alert is the destination's intention check refusing us.
    pub fn from_tls(e: &rustls::Error) -> UpstreamError {
        match e {
            rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied) => {
                UpstreamError::RefusedByIntention
            }
            rustls::Error::AlertReceived(a) => UpstreamError::HandshakeRefused(format!("{a:?}")),
            other => UpstreamError::Tls(other.to_string()),
        }
    }

    /// A 503 for an HTTP client, naming the upstream and the reason.
    pub fn http_answer(&self, upstream: &str) -> String {
        let body = format!("{upstream}: {self}\n");
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nX-Weft-Refusal: {}\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.code(),
            body.len()
        )
    }
}
