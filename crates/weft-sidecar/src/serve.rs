//! What the proxy and the gateway share once configured: listening, registering, heartbeats, and the drain on
//! SIGINT/SIGTERM.

use crate::signals::Signals;
use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;
use weft_proxy::config::ProxyConfig;
use weft_proxy::control::{AgentClient, ControlError, Method};
use weft_proxy::Proxy;
use weft_types::agent_self::AgentSelf;

/// A registration the proxy keeps alive while it serves and removes when it stops.
#[derive(Clone)]
pub struct Registration {
    /// The service to deregister on shutdown.
    pub id: String,
    /// Its TTL check, passed by the heartbeat.
    pub check: String,
    /// The registration body: sent once the proxy listens (unless `registered`), and again whenever the agent has
    /// forgotten it (an agent that restarted without its data dir).
    pub body: serde_json::Value,
    /// Registered before the proxy started (a task's service, which the proxy reads its configuration from).
    pub registered: bool,
    /// An application address the heartbeat dials first: the check passes only when it answers.
    pub probe: Option<String>,
}

/// How often the proxy reports an application it probes (its check's TTL is a few times longer).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The agent's datacenter, from `/v1/agent/self`; retries for up to `patience` while the agent does not answer.
/// A sidecar's token usually holds only its service's identity, which does not grant `agent:read`: then the
/// first of `/v1/catalog/datacenters` (open to every token, the agent's own first, as Consul sorts it).
pub async fn datacenter(agent: &AgentClient, patience: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let answer = match agent.get("/v1/agent/self").await {
            Ok(answer) => answer.decode::<AgentSelf>().map(|me| me.config.datacenter),
            Err(ControlError::Status { status: 403, .. }) => agent
                .get("/v1/catalog/datacenters")
                .await
                .and_then(|a| a.decode::<Vec<String>>())
                .map(|dcs| dcs.into_iter().next().unwrap_or_default()),
            Err(e) => Err(e),
        };
        match answer {
            Ok(dc) if dc.is_empty() => {
                bail!("the local agent did not say which datacenter it is in")
            }
            Ok(dc) => return Ok(dc),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("Error talking to the local agent: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Parses `-drain-timeout`.
pub fn drain_timeout(text: &str) -> Result<Duration> {
    weft_types::duration::parse_duration(text).map_err(|e| anyhow!("-drain-timeout: {e}"))
}

/// Everything `serve` needs besides the configuration.
pub struct Serving<'a> {
    pub agent: AgentClient,
    /// How the configuration was obtained, for the banner.
    pub mode: &'a str,
    pub registration: Option<Registration>,
    pub drain: Duration,
    pub metrics_addr: Option<&'a str>,
    pub signals: Signals,
    /// New configurations (with their registrations) while serving: an ingress gateway's config entry changing.
    pub reload: Option<Reload>,
}

/// Configurations to switch to while serving, each with the registration that describes it.
pub type Reload = tokio::sync::watch::Receiver<(ProxyConfig, Option<Registration>)>;

/// Starts the proxy, registers it if asked, heartbeats, and on SIGINT/SIGTERM deregisters and drains.
pub async fn serve(config: ProxyConfig, s: Serving<'_>) -> Result<i32> {
    let Serving {
        agent,
        mode,
        registration,
        drain,
        metrics_addr,
        mut signals,
        mut reload,
    } = s;
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
    let mut proxy = start(&config, &agent, None).await?;
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
    if let Some(r) = registration.as_ref().filter(|r| !r.registered) {
        register(&agent, &r.body)
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

    let mut registration = registration;
    let mut beating = registration
        .clone()
        .map(|r| tokio::spawn(heartbeat(agent.clone(), r)));
    let mut config = config;
    loop {
        tokio::select! {
            _ = signals.wait() => break,
            Some((new, new_registration)) = next_reload(&mut reload) => {
                if new == config {
                    continue;
                }
                println!("==> The configuration changed; reloading");
                proxy = switch(proxy, &config, &new, &agent, drain).await?;
                config = new;
                let changed = registration.as_ref().map(|r| &r.body) != new_registration.as_ref().map(|r| &r.body);
                if changed {
                    if let Some(h) = beating.take() {
                        h.abort();
                    }
                    if let Some(r) = &new_registration {
                        if let Err(e) = register(&agent, &r.body).await {
                            eprintln!("==> Registering the new configuration failed: {e}");
                        }
                    }
                    registration = new_registration;
                    beating = registration.clone().map(|r| tokio::spawn(heartbeat(agent.clone(), r)));
                }
                println!("==> Proxy reloaded");
                let _ = std::io::stdout().flush();
            }
        }
    }
    println!("==> Draining: no new connections; open ones may finish");
    if let Some(h) = beating {
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

/// Prints what `config` listens on and starts a proxy for it.
async fn start(
    config: &ProxyConfig,
    agent: &AgentClient,
    metrics: Option<std::sync::Arc<weft_proxy::metrics::Metrics>>,
) -> Result<Proxy> {
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
    let proxy = match metrics {
        Some(m) => Proxy::start_counting(config.clone(), agent.clone(), m).await?,
        None => Proxy::start(config.clone(), agent.clone()).await?,
    };
    if let Some(addr) = proxy.public_addr {
        println!("  Public listener addr: {addr}");
    }
    for (name, addr) in &proxy.upstream_addrs {
        println!("    Upstream listening: {name} {addr}");
    }
    Ok(proxy)
}

/// The next configuration to switch to; never, without reloads.
async fn next_reload(reload: &mut Option<Reload>) -> Option<(ProxyConfig, Option<Registration>)> {
    match reload {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Moves from `old` to a proxy for `new`: the old listeners close first (the new ones may take their ports), and
/// connections already open finish on the old proxy, for up to `drain`. When the new configuration cannot be served
/// (a port in use), the old one is started again.
async fn switch(
    mut old: Proxy,
    old_config: &ProxyConfig,
    new: &ProxyConfig,
    agent: &AgentClient,
    drain: Duration,
) -> Result<Proxy> {
    old.close_listeners().await;
    let metrics = old.metrics.clone();
    tokio::spawn(old.drain(drain));
    match start(new, agent, Some(metrics.clone())).await {
        Ok(p) => Ok(p),
        Err(e) => {
            eprintln!("==> Cannot serve the new configuration ({e}); serving the previous one");
            start(old_config, agent, Some(metrics))
                .await
                .context("cannot serve the previous configuration again")
        }
    }
}

/// Keeps a registration's TTL check passing (or failing, while a probed application does not answer).
async fn heartbeat(agent: AgentClient, r: Registration) {
    let every = if r.probe.is_some() {
        PROBE_EVERY
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(every);
    let check = weft_types::url::segment(&r.check);
    loop {
        tick.tick().await;
        let path = match &r.probe {
            None => format!("/v1/agent/check/pass/{check}"),
            Some(addr) => match crate::task_service::probe(addr).await {
                Ok(()) => format!("/v1/agent/check/pass/{check}"),
                Err(why) => format!(
                    "/v1/agent/check/fail/{check}?note={}",
                    weft_types::url::query_value(&format!("dial {addr}: {why}"))
                ),
            },
        };
        match agent.request(Method::PUT, &path, None).await {
            Ok(_) => {}
            // The agent answers but no longer knows the check: it restarted without its state. Register again
            // (the next beat reports the check).
            Err(ControlError::Status { status: 404, .. }) => {
                eprintln!(
                    "==> The agent lost the registration of {:?}; registering it again",
                    r.id
                );
                if let Err(e) = register(&agent, &r.body).await {
                    tracing::warn!(error = %e, "registering again failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "proxy heartbeat failed"),
        }
    }
}

/// `PUT /v1/agent/service/register`.
pub async fn register(agent: &AgentClient, body: &serde_json::Value) -> Result<(), ControlError> {
    agent
        .request(
            Method::PUT,
            "/v1/agent/service/register",
            Some(body.to_string()),
        )
        .await
        .map(|_| ())
}

/// Removes a registration this proxy made (three tries: the agent may be restarting).
pub async fn deregister(agent: &AgentClient, id: &str) {
    let path = format!(
        "/v1/agent/service/deregister/{}",
        weft_types::url::segment(id)
    );
    for _ in 0..3 {
        if agent.request(Method::PUT, &path, None).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
