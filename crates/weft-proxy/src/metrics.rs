//! Counters with stable reason codes: every refused connection is counted and logged under one of these.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoCertificate,
    UntrustedChain,
    Expired,
    WrongTrustDomain,
    NotAService,
    IntentionDeny,
    Handshake,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::NoCertificate,
        Refusal::UntrustedChain,
        Refusal::Expired,
        Refusal::WrongTrustDomain,
        Refusal::NotAService,
        Refusal::IntentionDeny,
        Refusal::Handshake,
    ];

    /// The stable code used in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_client_certificate",
            Refusal::UntrustedChain => "untrusted_chain",
            Refusal::Expired => "certificate_expired",
            Refusal::WrongTrustDomain => "wrong_trust_domain",
            Refusal::NotAService => "not_a_service_identity",
            Refusal::IntentionDeny => "intention_deny",
            Refusal::Handshake => "handshake_failed",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    refusals: [AtomicU64; 7],
    pub inbound_accepted: AtomicU64,
    /// Of those, the ones that resumed a TLS session (no certificate signatures or chain checks).
    pub inbound_resumed: AtomicU64,
    pub upstream_connections: AtomicU64,
    /// Of those, the ones that resumed a TLS session.
    pub upstream_resumed: AtomicU64,
    pub upstream_dial_failures: AtomicU64,
    /// Tunnels dialed to upstream instances, and application connections carried as streams of a tunnel.
    pub tunnels_dialed: AtomicU64,
    pub tunnel_streams: AtomicU64,
    /// Of the accepted inbound connections, the ones that came as streams of a tunnel.
    pub inbound_tunnel_streams: AtomicU64,
    /// Answers from the local agent that failed or did not decode (the proxy kept its last good state).
    pub control_failures: AtomicU64,
}

impl Metrics {
    pub fn refused(&self, reason: Refusal) {
        if let Some(slot) = Refusal::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.refusals.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn refusals(&self, reason: Refusal) -> u64 {
        Refusal::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.refusals.get(i))
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Every counter in Prometheus' text exposition format, labelled with the proxy's service.
    pub fn prometheus(&self, service: &str) -> String {
        use std::fmt::Write;
        let service = service
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let mut out = String::new();
        out.push_str("# HELP weft_proxy_refusals_total Connections refused at the public listener, by reason.\n");
        out.push_str("# TYPE weft_proxy_refusals_total counter\n");
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "weft_proxy_refusals_total{{service=\"{service}\",reason=\"{}\"}} {}",
                r.code(),
                self.refusals(r)
            );
        }
        for (name, help, value) in [
            (
                "weft_proxy_inbound_accepted_total",
                "Connections accepted at the public listener (identity verified, intentions allow).",
                &self.inbound_accepted,
            ),
            (
                "weft_proxy_inbound_resumed_total",
                "Accepted connections that resumed a TLS session (the intention check still ran).",
                &self.inbound_resumed,
            ),
            (
                "weft_proxy_upstream_connections_total",
                "Connections opened to upstream instances.",
                &self.upstream_connections,
            ),
            (
                "weft_proxy_upstream_resumed_total",
                "Connections to upstream instances that resumed a TLS session.",
                &self.upstream_resumed,
            ),
            (
                "weft_proxy_upstream_dial_failures_total",
                "Failed dials to upstream instances (each retried on another instance).",
                &self.upstream_dial_failures,
            ),
            (
                "weft_proxy_tunnels_dialed_total",
                "Pooled mTLS HTTP/2 tunnels dialed to upstream instances.",
                &self.tunnels_dialed,
            ),
            (
                "weft_proxy_tunnel_streams_total",
                "Upstream connections carried as streams of a pooled tunnel (no TLS handshake of their own).",
                &self.tunnel_streams,
            ),
            (
                "weft_proxy_inbound_tunnel_streams_total",
                "Accepted inbound connections that came as streams of a tunnel (each one checked against the intentions).",
                &self.inbound_tunnel_streams,
            ),
            (
                "weft_proxy_control_failures_total",
                "Agent answers (roots, leaf, endpoints, intentions) that failed or did not decode; the last good state was kept.",
                &self.control_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(
                out,
                "{name}{{service=\"{service}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }

    /// One line with every counter, for logs at shutdown.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Refusal::ALL
            .iter()
            .map(|r| format!("{}={}", r.code(), self.refusals(*r)))
            .collect();
        parts.push(format!(
            "inbound_accepted={}",
            self.inbound_accepted.load(Ordering::Relaxed)
        ));
        parts.push(format!(
            "upstream_connections={}",
            self.upstream_connections.load(Ordering::Relaxed)
        ));
        parts.push(format!(
            "tunnel_streams={} tunnels_dialed={} inbound_tunnel_streams={}",
            self.tunnel_streams.load(Ordering::Relaxed),
            self.tunnels_dialed.load(Ordering::Relaxed),
            self.inbound_tunnel_streams.load(Ordering::Relaxed)
        ));
        parts.push(format!(
            "upstream_dial_failures={}",
            self.upstream_dial_failures.load(Ordering::Relaxed)
        ));
        parts.push(format!(
            "control_failures={}",
            self.control_failures.load(Ordering::Relaxed)
        ));
        parts.join(" ")
    }
}
