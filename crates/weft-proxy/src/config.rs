//! What one proxy does: its identity, its public listener (if any) and its upstreams. Built from flags or from a
//! sidecar registration read from the agent (`-sidecar-for`).

use crate::control::{AgentClient, ControlError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use weft_types::addr::join_host_port;
use weft_types::NodeService;

#[derive(Debug, Clone, PartialEq)]
pub struct PublicListener {
    pub bind: SocketAddr,
    /// The local application, `host:port`.
    pub local_service: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub destination: String,
    pub datacenter: String,
    pub bind: SocketAddr,
}

/// An ingress gateway's HTTP listener: requests routed by `Host` to these services.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressHttp {
    pub bind: SocketAddr,
    pub services: Vec<String>,
    pub datacenter: String,
    /// A service's hosts besides `<service>` and `<service>.ingress.*` (`*.example.com` matches any subdomain).
    pub hosts: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// The identity: the service whose certificate the proxy presents.
    pub service: String,
    pub public: Option<PublicListener>,
    /// Plain TCP local listeners, each carried to one service (an ingress TCP listener is one of these too).
    pub upstreams: Vec<Upstream>,
    pub ingress_http: Vec<IngressHttp>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// Parses `-upstream name:port`, `name:host:port` (Consul's forms).
pub fn parse_upstream(value: &str, datacenter: &str) -> Result<Upstream, ConfigError> {
    let bad = || ConfigError::Invalid(format!("Upstream value should be name:addr, got {value:?}"));
    let (name, addr) = value.split_once(':').ok_or_else(bad)?;
    let name = name.strip_suffix(".service").unwrap_or(name);
    if name.is_empty() || name.ends_with(".query") {
        return Err(if name.ends_with(".query") {
            ConfigError::Invalid(format!(
                "prepared-query upstreams are not supported: {value:?}"
            ))
        } else {
            bad()
        });
    }
    let bind: SocketAddr = if addr.contains(':') {
        addr.parse().map_err(|_| bad())?
    } else {
        let port: u16 = addr.parse().map_err(|_| bad())?;
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    Ok(Upstream {
        destination: name.to_string(),
        datacenter: datacenter.to_string(),
        bind,
    })
}

/// The configuration of the sidecar registered for service instance `service_id` on the local agent.
pub async fn from_sidecar(
    agent: &AgentClient,
    service_id: &str,
    datacenter: &str,
) -> Result<ProxyConfig, ConfigError> {
    let services: BTreeMap<String, NodeService> =
        agent.get("/v1/agent/services").await?.decode()?;
    let matches: Vec<&NodeService> = services
        .values()
        .filter(|s| s.is_connect_proxy())
        .filter(|s| {
            s.proxy
                .destination_service_id
                .eq_ignore_ascii_case(service_id)
        })
        .collect();
    let proxy = match matches.as_slice() {
        [] => return Err(ConfigError::Invalid(format!("No sidecar proxy registered for {service_id}"))),
        [one] => *one,
        _ => {
            return Err(ConfigError::Invalid(format!(
                "More than one sidecar proxy registered for {service_id}. Start proxy with -proxy-id instead."
            )))
        }
    };
    from_registration(proxy, datacenter)
}

/// `host`, or `default` when it is empty.
fn or_default<'a>(host: &'a str, default: &'a str) -> &'a str {
    if host.is_empty() {
        default
    } else {
        host
    }
}

/// The configuration of a connect-proxy registration (`/v1/agent/service/:id`).
pub fn from_registration(
    proxy: &NodeService,
    datacenter: &str,
) -> Result<ProxyConfig, ConfigError> {
    let p = &proxy.proxy;
    if !proxy.is_connect_proxy() || p.destination_service_name.is_empty() {
        return Err(ConfigError::Invalid(
            "service is not a valid connect proxy".into(),
        ));
    }
    let public = match proxy.port {
        0 => None,
        port => {
            let host = or_default(&proxy.address, "0.0.0.0");
            let bind = join_host_port(host, port)
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("invalid proxy address {host:?}")))?;
            if p.local_service_port == 0 {
                return Err(ConfigError::Invalid(
                    "Proxy.LocalServicePort is not set".into(),
                ));
            }
            Some(PublicListener {
                bind,
                local_service: join_host_port(
                    or_default(&p.local_service_address, "127.0.0.1"),
                    p.local_service_port,
                ),
            })
        }
    };
    let mut upstreams = Vec::new();
    for u in &p.upstreams {
        if u.destination_type == "prepared_query" {
            return Err(ConfigError::Invalid(
                "prepared-query upstreams are not supported".into(),
            ));
        }
        if u.local_bind_port == 0 {
            tracing::warn!(upstream = %u.destination_name, "skipping an upstream without LocalBindPort");
            continue;
        }
        let host = or_default(&u.local_bind_address, "127.0.0.1");
        let bind = join_host_port(host, u.local_bind_port)
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("invalid LocalBindAddress {host:?}")))?;
        upstreams.push(Upstream {
            destination: u.destination_name.clone(),
            datacenter: or_default(&u.datacenter, datacenter).to_string(),
            bind,
        });
    }
    upstreams.sort_by(|a, b| a.destination.cmp(&b.destination));
    Ok(ProxyConfig {
        service: p.destination_service_name.clone(),
        public,
        upstreams,
        ingress_http: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_flags() {
        let u = parse_upstream("greeter:8080", "dc1").unwrap();
        assert_eq!(
            (u.destination.as_str(), u.bind.to_string()),
            ("greeter", "127.0.0.1:8080".to_string())
        );
        let u = parse_upstream("db:127.0.0.10:8282", "dc1").unwrap();
        assert_eq!(u.bind.to_string(), "127.0.0.10:8282");
        for bad in ["greeter", ":80", "x:notaport", "q.query:80"] {
            assert!(parse_upstream(bad, "dc1").is_err(), "{bad}");
        }
    }

    #[test]
    fn sidecar_registration() {
        let reg = json!({"Kind":"connect-proxy","ID":"web-sidecar-proxy","Port":21000,"Address":"",
            "Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web","LocalServiceAddress":"127.0.0.1",
            "LocalServicePort":9090,"Upstreams":[{"DestinationName":"db","LocalBindPort":9191}]}});
        let reg: NodeService = serde_json::from_value(reg).unwrap();
        let c = from_registration(&reg, "dc1").unwrap();
        assert_eq!(c.service, "web");
        let public = c.public.unwrap();
        assert_eq!(public.bind.to_string(), "0.0.0.0:21000");
        assert_eq!(public.local_service, "127.0.0.1:9090");
        assert_eq!(c.upstreams[0].bind.to_string(), "127.0.0.1:9191");
    }
}
