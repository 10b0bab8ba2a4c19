//! `weft connect proxy` and `weft connect ca get-config|set-config`.

use crate::client::{Api, HttpArgs};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use weft_proxy::config::{self, ProxyConfig, PublicListener};
use weft_proxy::control::AgentClient;
use weft_proxy::Proxy;

use super::task_service::{probe, task_address, TaskService};

#[derive(Subcommand, Debug)]
pub enum ConnectCmd {
    /// Runs a sidecar proxy: mutual TLS in and out, under intentions.
    Proxy(ProxyArgs),
    /// Runs an ingress gateway: plain HTTP/TCP from outside, mutual TLS into the mesh under intentions.
    Ingress(IngressArgs),
    /// Reads and changes the CA configuration.
    #[command(subcommand)]
    Ca(CaCmd),
}

#[derive(Args, Debug)]
pub struct IngressArgs {
    #[command(flatten)]
    pub http_args: HttpArgs,
    /// The gateway's identity (intentions name it as the source).
    #[arg(long, default_value = "ingress")]
    pub service: String,
    /// An HTTP listener routing by Host: `ADDR=service[,service...]` (repeatable).
    #[arg(long = "http")]
    pub http: Vec<String>,
    /// A TCP listener for one service: `ADDR=service` (repeatable).
    #[arg(long = "tcp")]
    pub tcp: Vec<String>,
    /// Register the gateway with the local agent (Kind ingress-gateway).
    #[arg(long)]
    pub register: bool,
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    #[arg(long = "drain-timeout", default_value = "10s")]
    pub drain_timeout: String,
    /// Serve Prometheus metrics (refusals by reason, connections) at http://ADDR/metrics.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Prints the CA configuration.
    GetConfig(CaGetArgs),
    /// Applies a CA configuration from a JSON file (a new key rotates the root).
    SetConfig(CaSetArgs),
}

#[derive(Args, Debug)]
pub struct CaGetArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct CaSetArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long = "config-file")]
    pub config_file: String,
    #[arg(long = "force-without-cross-signing")]
    pub force_without_cross_signing: bool,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The identity: the service this proxy represents.
    #[arg(long)]
    pub service: Option<String>,
    /// An upstream, `name:port` or `name:host:port` (repeatable).
    #[arg(long = "upstream")]
    pub upstreams: Vec<String>,
    /// Public mutual-TLS listener, `host:port` (needs -service-addr).
    #[arg(long)]
    pub listen: Option<String>,
    /// The local application for inbound traffic, `host:port`.
    #[arg(long = "service-addr")]
    pub service_addr: Option<String>,
    /// Register this proxy with the local agent (with -service and -listen).
    #[arg(long)]
    pub register: bool,
    #[arg(long = "register-id")]
    pub register_id: Option<String>,
    /// Run as the sidecar registered for this service instance ID.
    #[arg(long = "sidecar-for", env = "CONNECT_SIDECAR_FOR")]
    pub sidecar_for: Option<String>,
    /// Run as this connect-proxy registration.
    #[arg(long = "proxy-id", env = "CONNECT_PROXY_ID")]
    pub proxy_id: Option<String>,
    /// Register the application defined in FILE (a service definition with `connect.sidecar_service`) and run as its
    /// sidecar: the task's address fills an empty `address`, the proxy reports whether it can reach the
    /// application, and both registrations are removed when the proxy stops.
    #[arg(long = "register-service", value_name = "FILE")]
    pub register_service: Option<std::path::PathBuf>,
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// How long open connections may finish after SIGTERM.
    #[arg(long = "drain-timeout", default_value = "10s")]
    pub drain_timeout: String,
    /// Serve Prometheus metrics (refusals by reason, connections) at http://ADDR/metrics.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

pub async fn run(cmd: ConnectCmd) -> Result<i32> {
    match cmd {
        ConnectCmd::Proxy(a) => proxy(a).await,
        ConnectCmd::Ingress(a) => ingress(a).await,
        ConnectCmd::Ca(CaCmd::GetConfig(a)) => {
            let api = Api::new(&a.http)?;
            let v = api.get_json("/v1/connect/ca/configuration").await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        ConnectCmd::Ca(CaCmd::SetConfig(a)) => {
            let api = Api::new(&a.http)?;
            let text = std::fs::read_to_string(&a.config_file)
                .with_context(|| format!("Error reading config file {:?}", a.config_file))?;
            let mut v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", a.config_file))?;
            if a.force_without_cross_signing {
                v["ForceWithoutCrossSigning"] = json!(true);
            }
            api.ok(
                Method::PUT,
                "/v1/connect/ca/configuration",
                Some(serde_json::to_vec(&v)?),
            )
            .await
            .map_err(|e| anyhow!("Error setting CA configuration: {e}"))?;
            println!("Configuration updated!");
            Ok(0)
        }
    }
}

fn http_addr(args: &HttpArgs) -> String {
    args.http_addr
        .clone()
        .or_else(|| {
            std::env::var("WEFT_HTTP_ADDR")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::env::var("CONSUL_HTTP_ADDR")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "127.0.0.1:8500".into())
}

async fn proxy(a: ProxyArgs) -> Result<i32> {
    let filter = crate::agent_cmd::log_filter(&a.log_level)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{filter},hyper=warn,reqwest=warn"
        )))
        .with_writer(std::io::stderr)
        .try_init();
    let drain = weft_types::duration::parse_duration(&a.drain_timeout)
        .map_err(|e| anyhow!("-drain-timeout: {e}"))?;
    // First: as a container's PID 1 the proxy has no default SIGTERM action, and a stop during start-up must still
    // end it (and remove what it registered).
    let signals = crate::signals::Signals::install();
    let http_addr = http_addr(&a.http);
    let agent = AgentClient::new(&http_addr, a.http.token.clone())?;
    // A task's sidecar may start before its host's agent answers: give the agent a minute.
    let patience = if a.register_service.is_some() {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    };
    let me = agent_self(&agent, patience).await?;
    let datacenter = me["Config"]["Datacenter"]
        .as_str()
        .unwrap_or("dc1")
        .to_string();

    if let Some(file) = &a.register_service {
        if a.service.is_some() || a.sidecar_for.is_some() || a.proxy_id.is_some() || a.register {
            bail!("-register-service cannot be combined with -service, -sidecar-for, -proxy-id or -register");
        }
        let task = TaskService::from_file(file, &http_addr).await?;
        agent
            .request(
                Method::PUT,
                "/v1/agent/service/register",
                Some(task.body.to_string()),
            )
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
            body: None,
            probe,
        };
        let served = serve(
            agent.clone(),
            config,
            "Registered service",
            Some(registration),
            drain,
            a.metrics_addr.as_deref(),
            signals,
        )
        .await;
        if served.is_err() {
            deregister(&agent, &id).await;
        }
        return served;
    }

    let (config, mode) = if let Some(id) = &a.proxy_id {
        let reg = agent
            .get(&format!("/v1/agent/service/{}", crate::client::encode(id)))
            .await
            .map_err(|e| anyhow!("Error reading proxy registration {id:?}: {e}"))?;
        if reg.body["Kind"] != "connect-proxy" {
            bail!("service {id:?} is not a valid connect proxy");
        }
        (config::from_registration(&reg.body, &datacenter)?, "Agent")
    } else if let Some(id) = &a.sidecar_for {
        (
            config::from_sidecar(&agent, id, &datacenter).await?,
            "Agent",
        )
    } else {
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
            upstreams.push(config::parse_upstream(u, &datacenter)?);
        }
        upstreams.sort_by(|x, y| x.destination.cmp(&y.destination));
        (
            ProxyConfig {
                service,
                public,
                upstreams,
                ingress_http: Vec::new(),
            },
            "Flags",
        )
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
        agent,
        config,
        mode,
        registration,
        drain,
        a.metrics_addr.as_deref(),
        signals,
    )
    .await
}

/// A registration the proxy keeps alive while it serves and removes when it stops.
#[derive(Clone)]
struct Registration {
    /// The service to deregister on shutdown.
    id: String,
    /// Its TTL check, passed by the heartbeat.
    check: String,
    /// The body to register once the proxy listens (`None`: registered already).
    body: Option<serde_json::Value>,
    /// An application address the heartbeat dials first: the check passes only when it answers.
    probe: Option<String>,
}

/// How often the proxy reports an application it probes (its check's TTL is a few times longer).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Reads `/v1/agent/self`, retrying for up to `patience` while the agent does not answer.
async fn agent_self(agent: &AgentClient, patience: Duration) -> Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match agent.get("/v1/agent/self").await {
            Ok(answer) => return Ok(answer.body),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("Error talking to the local agent: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Starts the proxy, registers it if asked, heartbeats, and on SIGINT/SIGTERM deregisters and drains.
async fn serve(
    agent: AgentClient,
    config: ProxyConfig,
    mode: &str,
    registration: Option<Registration>,
    drain: Duration,
    metrics_addr: Option<&str>,
    mut signals: crate::signals::Signals,
) -> Result<i32> {
    // Bound first: a bad or busy metrics address is an error at start, not a silent gap in monitoring.
    let metrics_listener = match metrics_addr {
        None => None,
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on -metrics-addr {addr:?}"))?,
        ),
    };
    println!("==> Weft Connect proxy starting...");
    println!("    Configuration mode: {mode}");
    println!("               Service: {}", config.service);
    for u in &config.upstreams {
        println!("              Upstream: {} => {}", u.destination, u.bind);
    }
    for h in &config.ingress_http {
        println!(
            "          HTTP ingress: {} => {}",
            h.bind,
            h.services.join(",")
        );
    }
    match &config.public {
        Some(p) => println!("       Public listener: {} => {}", p.bind, p.local_service),
        None => println!("       Public listener: Disabled"),
    }
    let proxy = Proxy::start(config.clone(), agent.clone()).await?;
    if let Some(addr) = proxy.public_addr {
        println!("  Public listener addr: {addr}");
    }
    for (name, addr) in &proxy.upstream_addrs {
        println!("    Upstream listening: {name} {addr}");
    }
    if let Some(listener) = metrics_listener {
        if let Ok(addr) = listener.local_addr() {
            println!("               Metrics: http://{addr}/metrics");
        }
        tokio::spawn(weft_proxy::metrics_endpoint::serve(
            listener,
            proxy.metrics.clone(),
            config.service.clone(),
        ));
    }
    if let Some(body) = registration.as_ref().and_then(|r| r.body.as_ref()) {
        agent
            .request(
                Method::PUT,
                "/v1/agent/service/register",
                Some(body.to_string()),
            )
            .await
            .map_err(|e| anyhow!("Error registering the proxy: {e}"))?;
    }
    if proxy.ready(Duration::from_secs(30)).await {
        println!("==> Proxy loaded config and ready to serve");
    } else {
        eprintln!(
            "==> Proxy has no certificate yet; it will serve as soon as the agent provides one"
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let heartbeat = registration.clone().map(|r| {
        let agent = agent.clone();
        tokio::spawn(async move {
            let every = if r.probe.is_some() {
                PROBE_EVERY
            } else {
                Duration::from_secs(10)
            };
            let mut tick = tokio::time::interval(every);
            let check = crate::client::encode(&r.check);
            loop {
                tick.tick().await;
                let path = match &r.probe {
                    None => format!("/v1/agent/check/pass/{check}"),
                    Some(addr) => match probe(addr).await {
                        Ok(()) => format!("/v1/agent/check/pass/{check}"),
                        Err(why) => format!(
                            "/v1/agent/check/fail/{check}?note={}",
                            crate::client::encode(&format!("dial {addr}: {why}"))
                        ),
                    },
                };
                if let Err(e) = agent.request(Method::PUT, &path, None).await {
                    tracing::warn!(error = %e, "proxy heartbeat failed");
                }
            }
        })
    });
    signals.wait().await;
    println!("==> Draining: no new connections; open ones may finish");
    if let Some(h) = heartbeat {
        h.abort();
    }
    if let Some(r) = registration {
        deregister(&agent, &r.id).await;
    }
    let left = proxy.drain(drain).await;
    if left > 0 {
        eprintln!("==> Closed {left} connection(s) still open after the drain timeout");
    }
    Ok(0)
}

/// Removes a registration this proxy made (three tries: the agent may be restarting).
async fn deregister(agent: &AgentClient, id: &str) {
    let path = format!("/v1/agent/service/deregister/{}", crate::client::encode(id));
    for _ in 0..3 {
        if agent.request(Method::PUT, &path, None).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
    let local = public
        .local_service
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("127.0.0.1");
    let body = json!({
        "Kind": "connect-proxy", "ID": id, "Name": format!("{}-proxy", config.service),
        "Address": public.bind.ip().to_string(), "Port": public.bind.port(),
        "Proxy": {"DestinationServiceName": config.service, "LocalServiceAddress": local},
        "Check": {"CheckID": check, "Name": "proxy heartbeat", "TTL": "30s", "Status": "passing"},
    });
    Ok(Registration {
        id,
        check,
        body: Some(body),
        probe: None,
    })
}

/// `weft connect ingress`'s registration: an `ingress-gateway` service with a TTL heartbeat check.
fn ingress_registration(service: &str, ip: Option<std::net::IpAddr>, port: u16) -> Registration {
    let check = format!("{service}-ttl");
    let body = json!({
        "Kind": "ingress-gateway", "ID": service, "Name": service,
        "Address": ip.map(|ip| ip.to_string()).unwrap_or_default(), "Port": port,
        "Check": {"CheckID": check, "Name": "ingress gateway heartbeat", "TTL": "30s", "Status": "passing"},
    });
    Registration {
        id: service.to_string(),
        check,
        body: Some(body),
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

async fn ingress(a: IngressArgs) -> Result<i32> {
    let filter = crate::agent_cmd::log_filter(&a.log_level)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{filter},hyper=warn,reqwest=warn"
        )))
        .with_writer(std::io::stderr)
        .try_init();
    if a.http.is_empty() && a.tcp.is_empty() {
        bail!("an ingress gateway needs at least one -http or -tcp listener");
    }
    if !weft_ca::spiffe::valid_service_name(&a.service) {
        bail!("Invalid -service {:?}", a.service);
    }
    let signals = crate::signals::Signals::install();
    let agent = AgentClient::new(&http_addr(&a.http_args), a.http_args.token.clone())?;
    // A gateway that registers itself is a deployment's component: it may start before its agent answers.
    let patience = if a.register {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    };
    let me = agent_self(&agent, patience).await?;
    let datacenter = me["Config"]["Datacenter"]
        .as_str()
        .unwrap_or("dc1")
        .to_string();
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
    let drain = weft_types::duration::parse_duration(&a.drain_timeout)
        .map_err(|e| anyhow!("-drain-timeout: {e}"))?;
    let registration = match (a.register, first) {
        (true, Some(addr)) => {
            // A gateway listening on every interface is registered at the address its peers reach it at.
            let ip = match addr.ip() {
                ip if ip.is_unspecified() => task_address(&http_addr(&a.http_args)).await,
                ip => Some(ip),
            };
            Some(ingress_registration(&a.service, ip, addr.port()))
        }
        _ => None,
    };
    serve(
        agent,
        config,
        "Ingress gateway",
        registration,
        drain,
        a.metrics_addr.as_deref(),
        signals,
    )
    .await
}
