//! `connect ingress`: Weft's own ingress gateway, plain HTTP (routed by Host) or TCP from outside, mutual TLS into
//! the mesh under intentions. Its listeners come from `-http`/`-tcp`, or, as Consul's gateways take theirs, from the
//! `ingress-gateway` config entry named after the gateway, followed as it changes.

use crate::args::IngressArgs;
use crate::serve::{datacenter, drain_timeout, serve, Registration, Serving};
use crate::signals::Signals;
use crate::task_service::task_address;
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::time::Duration;
use weft_proxy::config::ProxyConfig;
use weft_proxy::control::{AgentClient, ControlError};

pub async fn run(a: IngressArgs) -> Result<i32> {
    crate::init_logging(&a.run.log_level)?;
    if !weft_ca::spiffe::valid_service_name(&a.service) {
        bail!("Invalid -service {:?}", a.service);
    }
    let from_entry = a.http.is_empty() && a.tcp.is_empty();
    let address: std::net::IpAddr = match (&a.address, from_entry) {
        (Some(_), false) => {
            bail!("-address places the config entry's listeners; -http and -tcp name their own addresses")
        }
        (Some(ip), true) => ip
            .parse()
            .map_err(|_| anyhow!("-address must be an IP address, not {ip:?}"))?,
        (None, _) => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let mut signals = Signals::install();
    let http_addr = a.agent.addr();
    let agent = AgentClient::new(&http_addr, a.agent.token()?)?;
    // A gateway that registers itself is a deployment's component: it may start before its agent answers.
    let patience = if a.register {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    };
    let datacenter = datacenter(&agent, patience).await?;
    let drain = drain_timeout(&a.run.drain_timeout)?;
    if from_entry {
        let Some((config, index)) =
            first_entry(&agent, &a.service, address, &datacenter, &mut signals).await?
        else {
            return Ok(0);
        };
        let first_registration = match a.register {
            true => Some(registration_for(&a.service, &config, address, &http_addr).await),
            false => None,
        };
        let (tx, rx) = tokio::sync::watch::channel((config.clone(), first_registration.clone()));
        tokio::spawn(follow_entry(
            agent.clone(),
            EntryWatch {
                service: a.service.clone(),
                address,
                datacenter,
                register: a.register,
                http_addr: http_addr.clone(),
            },
            index,
            tx,
        ));
        return serve(
            config,
            Serving {
                agent,
                mode: "ingress-gateway config entry",
                registration: first_registration,
                drain,
                metrics_addr: a.run.metrics_addr.as_deref(),
                signals,
                reload: Some(rx),
            },
        )
        .await;
    }
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
            hosts: Default::default(),
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
            reload: None,
        },
    )
    .await
}

/// Where the gateway's config entry is read, and what its configuration needs besides the entry.
struct EntryWatch {
    service: String,
    address: std::net::IpAddr,
    datacenter: String,
    register: bool,
    http_addr: String,
}

fn entry_path(service: &str) -> String {
    format!(
        "/v1/config/ingress-gateway/{}",
        weft_types::url::segment(service)
    )
}

/// Waits for the gateway's config entry (polling while there is none, and while it cannot be served) and answers
/// its first configuration and index; `None` when a signal ends the wait.
async fn first_entry(
    agent: &AgentClient,
    service: &str,
    address: std::net::IpAddr,
    datacenter: &str,
    signals: &mut Signals,
) -> Result<Option<(ProxyConfig, u64)>> {
    let path = entry_path(service);
    let mut said = String::new();
    let mut index = 0;
    loop {
        let wait = async {
            let answer = agent
                .get_blocking(&path, index, Duration::from_secs(30))
                .await;
            let why = match answer {
                Ok(answer) => {
                    match weft_proxy::ingress_entry::config_from_entry(
                        service,
                        &answer.body,
                        address,
                        datacenter,
                    ) {
                        Ok(config) => return Ok((config, answer.index)),
                        Err(e) => {
                            index = answer.index;
                            format!("==> The ingress-gateway config entry {service:?} cannot be served: {e}; waiting for a change")
                        }
                    }
                }
                Err(ControlError::Status { status: 404, .. }) => {
                    index = 0;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    format!("==> Waiting for the ingress-gateway config entry {service:?} (PUT /v1/config)")
                }
                Err(e) => {
                    index = 0;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    format!("==> Cannot read the ingress-gateway config entry {service:?}: {e}; retrying")
                }
            };
            Err(why)
        };
        tokio::select! {
            _ = signals.wait() => return Ok(None),
            got = wait => match got {
                Ok(first) => return Ok(Some(first)),
                Err(why) => {
                    if why != said {
                        eprintln!("{why}");
                        said = why;
                    }
                }
            },
        }
    }
}

/// Follows the gateway's config entry from `index`, sending each configuration it yields; an entry that cannot
/// be served, or that is deleted, is reported and the gateway keeps serving what it has.
async fn follow_entry(
    agent: AgentClient,
    w: EntryWatch,
    mut index: u64,
    tx: tokio::sync::watch::Sender<(ProxyConfig, Option<Registration>)>,
) {
    let path = entry_path(&w.service);
    loop {
        if tx.is_closed() {
            return;
        }
        match agent
            .get_blocking(&path, index, Duration::from_secs(60))
            .await
        {
            Ok(answer) if answer.index == index => {}
            Ok(answer) => {
                index = answer.index;
                match weft_proxy::ingress_entry::config_from_entry(
                    &w.service,
                    &answer.body,
                    w.address,
                    &w.datacenter,
                ) {
                    Ok(config) => {
                        let registration = match w.register {
                            true => {
                                Some(registration_for(&w.service, &config, w.address, &w.http_addr).await)
                            }
                            false => None,
                        };
                        tx.send_replace((config, registration));
                    }
                    Err(e) => eprintln!(
                        "==> The ingress-gateway config entry {:?} cannot be served: {e}; keeping the current listeners",
                        w.service
                    ),
                }
            }
            Err(ControlError::Status { status: 404, .. }) => {
                if index != 0 {
                    eprintln!(
                        "==> The ingress-gateway config entry {:?} was deleted; keeping the current listeners",
                        w.service
                    );
                }
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the ingress-gateway config entry failed; retrying");
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The registration of a gateway configured from its entry: at `address` (or, listening on every interface, the
/// address its peers reach this host at), on its first listener's port.
async fn registration_for(
    service: &str,
    config: &ProxyConfig,
    address: std::net::IpAddr,
    http_addr: &str,
) -> Registration {
    let ip = if address.is_unspecified() {
        task_address(http_addr).await
    } else {
        Some(address)
    };
    let port = config
        .upstreams
        .iter()
        .map(|u| u.bind.port())
        .chain(config.ingress_http.iter().map(|h| h.bind.port()))
        .min()
        .unwrap_or(0);
    ingress_registration(service, ip, port, &exposed(config))
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
