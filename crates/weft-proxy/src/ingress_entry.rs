//! The gateway's configuration from its `ingress-gateway` config entry, as Consul's gateways take theirs: each
//! listener of the entry becomes a listener on the gateway's address, a `tcp` one carried to its one service and an
//! `http` one routing by `Host` (each service's `Hosts`, else `<service>.ingress.*`).
//!
//! What Weft's gateway cannot do yet is refused with a reason rather than served differently: the `*` service (every
//! http service, discovered as it appears) and TLS towards the outside (`TLS.Enabled`).

use crate::config::{IngressHttp, ProxyConfig, Upstream};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Entry {
    kind: String,
    listeners: Vec<Listener>,
    #[serde(rename = "TLS")]
    tls: Option<Tls>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Tls {
    enabled: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Listener {
    port: u16,
    protocol: String,
    services: Vec<Service>,
    #[serde(rename = "TLS")]
    tls: Option<Tls>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Service {
    name: String,
    hosts: Vec<String>,
    #[serde(rename = "TLS")]
    tls: Option<Tls>,
}

/// The configuration of gateway `service` listening on `ip`, from its config entry (the JSON `GET /v1/config/
/// ingress-gateway/<service>` answers).
pub fn config_from_entry(
    service: &str,
    entry: &[u8],
    ip: IpAddr,
    datacenter: &str,
) -> Result<ProxyConfig, String> {
    let entry: Entry =
        serde_json::from_slice(entry).map_err(|e| format!("not an ingress-gateway entry: {e}"))?;
    if entry.kind != "ingress-gateway" {
        return Err(format!(
            "not an ingress-gateway entry (Kind {:?})",
            entry.kind
        ));
    }
    let tls_on = |t: &Option<Tls>| t.as_ref().is_some_and(|t| t.enabled);
    if tls_on(&entry.tls) {
        return Err("TLS towards clients (TLS.Enabled) is not supported by Weft's gateway yet; terminate TLS in front of it".into());
    }
    if entry.listeners.is_empty() {
        return Err("the entry has no listeners".into());
    }
    let mut config = ProxyConfig {
        service: service.to_string(),
        public: None,
        upstreams: Vec::new(),
        ingress_http: Vec::new(),
    };
    for (i, l) in entry.listeners.iter().enumerate() {
        if tls_on(&l.tls) || l.services.iter().any(|s| tls_on(&s.tls)) {
            return Err(format!(
                "Listeners[{i}]: TLS towards clients is not supported by Weft's gateway yet"
            ));
        }
        if l.port == 0 {
            return Err(format!("Listeners[{i}]: no port"));
        }
        if l.services.iter().any(|s| s.name == "*") {
            return Err(format!(
                "Listeners[{i}]: the wildcard service \"*\" is not supported by Weft's gateway yet; name each service"
            ));
        }
        let bind = SocketAddr::new(ip, l.port);
        match l.protocol.as_str() {
            "" | "tcp" => {
                let [s] = l.services.as_slice() else {
                    return Err(format!(
                        "Listeners[{i}]: a tcp listener carries exactly one service"
                    ));
                };
                config.upstreams.push(Upstream {
                    destination: s.name.clone(),
                    datacenter: datacenter.to_string(),
                    bind,
                });
            }
            "http" | "http2" | "grpc" => {
                if l.services.is_empty() {
                    return Err(format!("Listeners[{i}]: no services"));
                }
                let hosts: BTreeMap<String, Vec<String>> = l
                    .services
                    .iter()
                    .filter(|s| !s.hosts.is_empty())
                    .map(|s| (s.name.clone(), s.hosts.clone()))
                    .collect();
                config.ingress_http.push(IngressHttp {
                    bind,
                    services: l.services.iter().map(|s| s.name.clone()).collect(),
                    datacenter: datacenter.to_string(),
                    hosts,
                });
            }
            other => return Err(format!("Listeners[{i}]: unknown protocol {other:?}")),
        }
    }
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from(entry: serde_json::Value) -> Result<ProxyConfig, String> {
        config_from_entry(
            "ingress",
            entry.to_string().as_bytes(),
            "127.0.0.1".parse().unwrap(),
            "dc1",
        )
    }

    #[test]
    fn every_listener_becomes_a_listener_of_the_gateway() {
        let config = from(json!({"Kind": "ingress-gateway", "Name": "ingress", "CreateIndex": 5, "Listeners": [
            {"Port": 8443, "Protocol": "tcp", "Services": [{"Name": "db"}]},
            {"Port": 8080, "Protocol": "http", "Services": [
                {"Name": "web", "Hosts": ["web.example.com", "*.example.org"]}, {"Name": "api"}]},
        ]}))
        .unwrap();
        assert_eq!(config.upstreams.len(), 1);
        assert_eq!(config.upstreams[0].destination, "db");
        assert_eq!(config.upstreams[0].bind.to_string(), "127.0.0.1:8443");
        let http = &config.ingress_http[0];
        assert_eq!(http.bind.port(), 8080);
        assert_eq!(http.services, ["web", "api"]);
        assert_eq!(http.hosts["web"], ["web.example.com", "*.example.org"]);
        assert!(!http.hosts.contains_key("api"));
    }

    #[test]
    fn what_the_gateway_cannot_do_is_refused_with_a_reason() {
        for (entry, why) in [
            (
                json!({"Kind": "ingress-gateway", "TLS": {"Enabled": true},
                "Listeners": [{"Port": 1, "Services": [{"Name": "a"}]}]}),
                "TLS",
            ),
            (
                json!({"Kind": "ingress-gateway", "Listeners": [
                {"Port": 1, "Protocol": "http", "Services": [{"Name": "*"}]}]}),
                "wildcard",
            ),
            (
                json!({"Kind": "ingress-gateway", "Listeners": []}),
                "no listeners",
            ),
            (
                json!({"Kind": "service-defaults"}),
                "not an ingress-gateway",
            ),
            (
                json!({"Kind": "ingress-gateway", "Listeners": [
                {"Port": 1, "Services": [{"Name": "a"}, {"Name": "b"}]}]}),
                "exactly one",
            ),
        ] {
            let err = from(entry.clone()).unwrap_err();
            assert!(err.contains(why), "{entry}: {err}");
        }
    }
}
