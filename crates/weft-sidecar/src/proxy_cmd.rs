//! `connect proxy`: configured from flags (`-service`, `-listen`, `-upstream`), from the agent's sidecar
//! registration (`-sidecar-for`, `-proxy-id`), or from a task's service file (`-register-service`).

use crate::args::ProxyArgs;
use crate::serve::{datacenter, deregister, drain_timeout, register, serve, Registration, Serving};
use crate::signals::Signals;
use crate::task_service::TaskService;
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::time::Duration;
use weft_proxy::config::{self, ProxyConfig, PublicListener};
use weft_proxy::control::AgentClient;

pub async fn run(a: ProxyArgs) -> Result<i32> {
    crate::init_logging(&a.run.log_level)?;
    let drain = drain_timeout(&a.run.drain_timeout)?;
    // First: as a container's PID 1 the proxy has no default SIGTERM action, and a stop during start-up must still
    // end it (and remove what it registered).
    let mut signals = Signals::install();
    // Under ECS a task's sidecar finds its task in the task metadata, and its agent on the container instance.
    let ecs = match (&a.register_service, crate::ecs::metadata_uri()) {
        (Some(_), Some(uri)) => Some(crate::ecs::discover_task(&uri, signals.wait()).await?),
        _ => None,
    };
    let http_addr = match (&ecs, a.agent.given_addr()) {
        (_, Some(addr)) => addr,
        (Some(_), None) => crate::ecs::discover_agent(signals.wait()).await?,
        (None, None) => a.agent.addr(),
    };
    if let Some(task) = &ecs {
        println!(
            "==> ECS task {} at {} ({}), agent at {http_addr}",
            task.id,
            task.ip,
            if task.zone.is_empty() {
                &task.region
            } else {
                &task.zone
            }
        );
    }
    let agent = AgentClient::new(&http_addr, a.agent.token()?)?;
    // A task's sidecar may start before its host's agent answers (or outlive it, while it restarts): wait for it,
    // saying so, rather than give up and have the platform restart the whole task.
    let datacenter = if a.register_service.is_some() {
        let what = format!("the agent at {http_addr}");
        crate::retry::retry(&what, signals.wait(), || datacenter(&agent, Duration::ZERO)).await?
    } else {
        datacenter(&agent, Duration::ZERO).await?
    };
    let metrics_addr = a.run.metrics_addr.as_deref();

    if let Some(file) = &a.register_service {
        if a.service.is_some() || a.sidecar_for.is_some() || a.proxy_id.is_some() || a.register {
            bail!("-register-service cannot be combined with -service, -sidecar-for, -proxy-id or -register");
        }
        let task = TaskService::from_definition(file, &http_addr, ecs.as_ref()).await?;
        register(&agent, &task.body)
            .await
            .map_err(|e| anyhow!("Error registering service {:?}: {e}", task.id))?;
        let config = match config::from_sidecar(&agent, &task.id, &datacenter).await {
            Ok(c) => c,
            Err(e) => {
                deregister(&agent, &task.id).await;
                return Err(e.into());
            }
        };
        let probe = config.public.as_ref().map(|p| p.local_service.clone());
        let id = task.id.clone();
        let registration = Registration {
            id: task.id,
            check: task.check,
            body: task.body,
            registered: true,
            probe,
        };
        let served = serve(
            config,
            Serving {
                agent: agent.clone(),
                mode: "Registered service",
                registration: Some(registration),
                drain,
                metrics_addr,
                signals,
                reload: None,
            },
        )
        .await;
        if served.is_err() {
            deregister(&agent, &id).await;
        }
        return served;
    }

    let (config, mode) = if let Some(id) = &a.proxy_id {
        let reg = agent
            .get(&format!(
                "/v1/agent/service/{}",
                weft_types::url::segment(id)
            ))
            .await
            .map_err(|e| anyhow!("Error reading proxy registration {id:?}: {e}"))?;
        let reg: weft_types::NodeService = reg.decode()?;
        if !reg.is_connect_proxy() {
            bail!("service {id:?} is not a valid connect proxy");
        }
        (config::from_registration(&reg, &datacenter)?, "Agent")
    } else if let Some(id) = &a.sidecar_for {
        (
            config::from_sidecar(&agent, id, &datacenter).await?,
            "Agent",
        )
    } else {
        (from_flags(&a, &datacenter)?, "Flags")
    };
    if a.register && (a.sidecar_for.is_some() || a.proxy_id.is_some() || config.public.is_none()) {
        bail!("-register needs -service and -listen");
    }

    let registration = if a.register {
        Some(proxy_registration(&config, a.register_id.as_deref())?)
    } else {
        None
    };
    serve(
        config,
        Serving {
            agent,
            mode,
            registration,
            drain,
            metrics_addr,
            signals,
            reload: None,
        },
    )
    .await
}

/// `-service`, `-listen`/`-service-addr` and `-upstream`.
fn from_flags(a: &ProxyArgs, datacenter: &str) -> Result<ProxyConfig> {
    let Some(service) = a.service.clone().filter(|s| !s.is_empty()) else {
        bail!("One of -service, -sidecar-for or -proxy-id must be specified");
    };
    if !weft_ca::spiffe::valid_service_name(&service) {
        bail!("Invalid -service {service:?}: use letters, digits, '-', '_' and '.'");
    }
    let public = match &a.listen {
        None => None,
        Some(listen) => {
            let Some(local) = &a.service_addr else {
                bail!("-service-addr must be specified with -listen so the proxy can forward inbound traffic");
            };
            let bind = listen
                .parse()
                .map_err(|_| anyhow!("Invalid -listen {listen:?}: expected host:port"))?;
            Some(PublicListener {
                bind,
                local_service: local.clone(),
            })
        }
    };
    let mut upstreams = Vec::new();
    for u in &a.upstreams {
        upstreams.push(config::parse_upstream(u, datacenter)?);
    }
    upstreams.sort_by(|x, y| x.destination.cmp(&y.destination));
    Ok(ProxyConfig {
        service,
        public,
        upstreams,
        ingress_http: Vec::new(),
    })
}

/// `-register`: a `<svc>-proxy` connect-proxy registration with a TTL heartbeat check.
fn proxy_registration(config: &ProxyConfig, suffix: Option<&str>) -> Result<Registration> {
    let Some(public) = &config.public else {
        bail!("-register needs -listen")
    };
    let id = match suffix {
        Some(s) if !s.is_empty() => format!("{}-proxy-{s}", config.service),
        _ => format!("{}-proxy", config.service),
    };
    let check = format!("{id}-ttl");
    let local = weft_types::addr::host_of(&public.local_service);
    let body = json!({
        "Kind": "connect-proxy", "ID": id, "Name": format!("{}-proxy", config.service),
        "Address": public.bind.ip().to_string(), "Port": public.bind.port(),
        "Proxy": {"DestinationServiceName": config.service, "LocalServiceAddress": local},
        "Check": {"CheckID": check, "Name": "proxy heartbeat", "TTL": "30s", "Status": "passing"},
    });
    Ok(Registration {
        id,
        check,
        body,
        registered: false,
        probe: None,
    })
}
