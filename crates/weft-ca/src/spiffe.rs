//! SPIFFE identities: `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>` for services, and the trust domain
//! `<cluster-id>.consul` that the CA signs for.

use std::fmt;

/// A service identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceId {
    pub trust_domain: String,
    pub namespace: String,
    pub datacenter: String,
    pub service: String,
}

impl ServiceId {
    pub fn new(trust_domain: &str, datacenter: &str, service: &str) -> ServiceId {
        ServiceId {
            trust_domain: trust_domain.to_ascii_lowercase(),
            namespace: "default".into(),
            datacenter: datacenter.into(),
            service: service.into(),
        }
    }

    /// Parses a service SPIFFE URI; anything else (agents, servers, gateways, other schemes) is `None`.
    pub fn parse(uri: &str) -> Option<ServiceId> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (host, path) = rest.split_once('/')?;
        let parts: Vec<&str> = path.split('/').collect();
        let parts = match parts.as_slice() {
            ["ap", _partition, rest @ ..] => rest.to_vec(),
            other => other.to_vec(),
        };
        match parts.as_slice() {
            ["ns", ns, "dc", dc, "svc", svc]
                if !host.is_empty() && [ns, dc, svc].iter().all(|p| !p.is_empty()) =>
            {
                Some(ServiceId {
                    trust_domain: host.to_ascii_lowercase(),
                    namespace: (*ns).to_string(),
                    datacenter: (*dc).to_string(),
                    service: (*svc).to_string(),
                })
            }
            _ => None,
        }
    }

    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/dc/{}/svc/{}",
            self.trust_domain, self.namespace, self.datacenter, self.service
        )
    }
}

/// The trust domain for a cluster ID.
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{}.consul", cluster_id.to_ascii_lowercase())
}

/// Service names usable in an identity: DNS-label characters, as Consul requires for Connect.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let id = ServiceId::new("ABC.consul", "dc1", "web");
        assert_eq!(id.uri(), "spiffe://abc.consul/ns/default/dc/dc1/svc/web");
        assert_eq!(ServiceId::parse(&id.uri()).unwrap(), id);
        assert!(ServiceId::parse("spiffe://abc.consul/agent/client/dc/dc1/id/n1").is_none());
        assert!(ServiceId::parse("https://abc.consul/ns/default/dc/dc1/svc/web").is_none());
        assert!(ServiceId::parse("spiffe://abc.consul/ns/default/dc/dc1/svc/").is_none());
        assert_eq!(
            ServiceId::parse("spiffe://x.consul/ap/p1/ns/default/dc/dc1/svc/a")
                .unwrap()
                .service,
            "a"
        );
    }
}
