//! `connect ingress`: Weft's own ingress gateway, plain HTTP (routed by Host) or TCP from outside, mutual TLS into
//! the mesh under intentions.

use crate::args::IngressArgs;
use crate::serve::{datacenter, drain_timeout, serve, Registration, Serving};
use crate::signals::Signals;
use crate::task_service::task_address;
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::time::Duration;
use weft_proxy::config::ProxyConfig;
use weft_proxy::control::AgentClient;

pub async fn run(a: IngressArgs) -> Result<i32> {
    crate::init_logging(&a.run.log_level)?;
    if a.http.is_empty() && a.tcp.is_empty() {
        bail!("an ingress gateway needs at least one -http or -tcp listener");
    }
    if !weft_ca::spiffe::valid_service_name(&a.service) {
        bail!("Invalid -service {:?}", a.service);
    }
    let signals = Signals::install();
    let http_addr = a.agent.addr();
    let agent = AgentClient::new(&http_addr, a.agent.token()?)?;
    // A gateway that registers itself is a deployment's component: it may start before its agent answers.
    let patience = if a.register {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    };
    let datacenter = datacenter(&agent, patience).await?;
    let mut config = ProxyConfig {
        service: a.service.clone(),
        public: None,
        upstreams: Vec::new(),
        ingress_http: Vec::new(),
    };
    let mut first = None;
    for h in &a.http {
        let (bind, services) = listener_flag(h)?;
        first.get_or_insert(bind);
        config.ingress_http.push(weft_proxy::config::IngressHttp {
            bind,
            services,
            datacenter: datacenter.clone(),
        });
    }
    for t in &a.tcp {
        let (bind, services) = listener_flag(t)?;
        let [service] = services.as_slice() else {
            bail!("a -tcp listener carries exactly one service: {t:?}")
        };
        first.get_or_insert(bind);
        config.upstreams.push(weft_proxy::config::Upstream {
            destination: service.clone(),
            datacenter: datacenter.clone(),
            bind,
        });
    }
    let drain = drain_timeout(&a.run.drain_timeout)?;
    let registration = match (a.register, first) {
        (true, Some(addr)) => {
            // A gateway listening on every interface is registered at the address its peers reach it at.
            let ip = match addr.ip() {
                ip if ip.is_unspecified() => task_address(&http_addr).await,
                ip => Some(ip),
            };
            Some(ingress_registration(
                &a.service,
                ip,
                addr.port(),
                &exposed(&config),
            ))
        }
        _ => None,
    };
    serve(
        config,
        Serving {
            agent,
            mode: "Ingress gateway",
            registration,
            drain,
            metrics_addr: a.run.metrics_addr.as_deref(),
            signals,
        },
    )
    .await
}

/// The services the gateway exposes, with the port each is exposed on.
fn exposed(config: &ProxyConfig) -> Vec<(String, u16)> {
    let http = config
        .ingress_http
        .iter()
        .flat_map(|l| l.services.iter().map(|s| (s.clone(), l.bind.port())));
    let tcp = config
        .upstreams
        .iter()
        .map(|u| (u.destination.clone(), u.bind.port()));
    http.chain(tcp).collect()
}

/// The gateway's registration: an `ingress-gateway` service with a TTL heartbeat check. The services it exposes
/// are its upstreams, so the catalog (and DNS's `<service>.ingress.consul`) knows which gateway serves what.
fn ingress_registration(
    service: &str,
    ip: Option<std::net::IpAddr>,
    port: u16,
    exposed: &[(String, u16)],
) -> Registration {
    let check = format!("{service}-ttl");
    let upstreams: Vec<_> = exposed
        .iter()
        .map(|(name, port)| json!({"DestinationName": name, "LocalBindPort": port}))
        .collect();
    let body = json!({
        "Kind": "ingress-gateway", "ID": service, "Name": service,
        "Address": ip.map(|ip| ip.to_string()).unwrap_or_default(), "Port": port,
        "Proxy": {"Upstreams": upstreams},
        "Check": {"CheckID": check, "Name": "ingress gateway heartbeat", "TTL": "30s", "Status": "passing"},
    });
    Registration {
        id: service.to_string(),
        check,
        body,
        registered: false,
        probe: None,
    }
}

/// Parses `ADDR=service[,service...]`.
fn listener_flag(value: &str) -> Result<(std::net::SocketAddr, Vec<String>)> {
    let (addr, services) = value
        .split_once('=')
        .ok_or_else(|| anyhow!("listener {value:?} should be ADDR=service[,service...]"))?;
    let addr = addr
        .parse()
        .map_err(|_| anyhow!("invalid listener address {addr:?} (expected host:port)"))?;
    let services: Vec<String> = services
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if services.is_empty() {
        bail!("listener {value:?} names no service");
    }
    for s in &services {
        if !weft_ca::spiffe::valid_service_name(s) {
            bail!("invalid service name {s:?} in listener {value:?}");
        }
    }
    Ok((addr, services))
}

#[cfg(test)]
mod tests {
    use super::listener_flag;

    #[test]
    fn listener_flags_name_an_address_and_services() {
        let (addr, services) =
            listener_flag("127.0.0.1:8081=greeter,name").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(addr.port(), 8081);
        assert_eq!(services, ["greeter", "name"]);
        assert!(listener_flag("127.0.0.1:8081").is_err());
        assert!(listener_flag("nowhere=greeter").is_err());
        assert!(listener_flag("127.0.0.1:1=").is_err());
        assert!(listener_flag("127.0.0.1:1=bad name").is_err());
    }
}
