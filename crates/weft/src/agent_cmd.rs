//! `weft agent`: the composition root. Builds the runtime config from flags and files, then the server, the agent
//! and the HTTP API in order, and serves until SIGINT/SIGTERM or `/v1/agent/leave`.

use crate::config::FileConfig;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use weft_agent::{Agent, AgentConfig, Source};
use weft_http::ApiState;
use weft_server::{Server, ServerConfig};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Run a single-node, in-memory server and agent for development.
    #[arg(long)]
    pub dev: bool,
    /// Run as a server: a Raft member holding the cluster's state in -data-dir.
    #[arg(long)]
    pub server: bool,
    /// How many servers must meet before the cluster starts (set the same on every server).
    #[arg(long = "bootstrap-expect")]
    pub bootstrap_expect: Option<u32>,
    /// An agent's gossip address to join (host or host:port, port 8301 by default); repeatable.
    #[arg(long = "retry-join", alias = "join")]
    pub retry_join: Vec<String>,
    /// The gossip (serf LAN) port (default 8301).
    #[arg(long = "serf-lan-port")]
    pub serf_lan_port: Option<u16>,
    /// Encrypts gossip with this key (base64 of 16 or 32 bytes; `weft keygen` makes one).
    #[arg(long)]
    pub encrypt: Option<String>,
    /// The server RPC port (default 8300).
    #[arg(long = "server-port")]
    pub server_port: Option<u16>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long = "node-id")]
    pub node_id: Option<String>,
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Address for cluster communication (default 127.0.0.1 in dev mode).
    #[arg(long)]
    pub bind: Option<String>,
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address the HTTP API listens on (default 127.0.0.1).
    #[arg(long)]
    pub client: Option<String>,
    /// HTTP API port (default 8500; 0 picks a free one).
    #[arg(long = "http-port")]
    pub http_port: Option<u16>,
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
    /// A JSON config file (repeatable; later files win).
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// A directory of JSON config files, read alphabetically (repeatable).
    #[arg(long = "config-dir")]
    pub config_dir: Vec<PathBuf>,
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Accepted for Consul compatibility: the UI is always served.
    #[arg(long)]
    pub ui: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}

/// The log filter for a Consul log level name.
pub fn log_filter(level: &str) -> Result<&'static str> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" | "" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        other => bail!("Invalid log level: {other:?} (use trace, debug, info, warn or err)"),
    })
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let files = FileConfig::load(&args.config_file, &args.config_dir)?;
    let level = args
        .log_level
        .clone()
        .or(files.log_level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = log_filter(&level)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{filter},hyper=warn,reqwest=warn,openraft=warn"
        )))
        .with_writer(std::io::stderr)
        .try_init();

    let is_server = args.dev || args.server || files.server == Some(true);
    let data_dir = args.data_dir.clone().or(files.data_dir.clone());
    if !args.dev && data_dir.as_deref().is_none_or(str::is_empty) {
        bail!("data_dir cannot be empty: pass -data-dir DIR (or -dev for an in-memory agent)");
    }
    let bootstrap_expect = args.bootstrap_expect.or(files.bootstrap_expect);
    if bootstrap_expect.is_some() && !is_server {
        bail!("bootstrap_expect can only be set on servers (add -server)");
    }
    if bootstrap_expect == Some(0) {
        bail!("bootstrap_expect must be at least 1");
    }
    if args.dev && (bootstrap_expect.is_some() || !args.retry_join.is_empty()) {
        bail!("-dev runs a single in-memory server: it takes neither -bootstrap-expect nor -retry-join");
    }
    if !args.dev && !is_server && args.retry_join.is_empty() && files.retry_join.is_empty() {
        bail!("a client agent needs at least one server to join: pass -retry-join ADDR");
    }
    let bind = args
        .bind
        .clone()
        .or(files.bind_addr.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let client = args
        .client
        .clone()
        .or(files.client_addr.clone())
        .unwrap_or_else(|| "127.0.0.1".into());
    let advertise = args
        .advertise
        .clone()
        .or(files.advertise_addr.clone())
        .unwrap_or_else(|| bind.clone());
    let http_port = args.http_port.or(files.http_port).unwrap_or(8500);
    let datacenter = args
        .datacenter
        .clone()
        .or(files.datacenter.clone())
        .unwrap_or_else(|| "dc1".into());
    if datacenter.is_empty()
        || !datacenter
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("datacenter must be alpha-numeric with underscores and hyphens only: {datacenter:?}");
    }
    let node_name = args
        .node
        .clone()
        .or(files.node_name.clone())
        .unwrap_or_else(hostname);
    if node_name.is_empty() {
        bail!("node name cannot be empty");
    }
    let node_id = match args.node_id.clone().or(files.node_id.clone()) {
        Some(id) => id,
        None => match (&data_dir, args.dev) {
            (Some(dir), false) => crate::cluster_cmd::persisted_node_id(std::path::Path::new(dir))?,
            _ => weft_types::ids::new_uuid(),
        },
    };
    if let (Some(dir), false) = (&data_dir, args.dev) {
        crate::cluster_cmd::claim_data_dir(std::path::Path::new(dir), &datacenter, is_server)?;
    }
    if !weft_types::ids::is_uuid(&node_id) {
        bail!("node ID must be a UUID: {node_id:?}");
    }
    let http_addr: SocketAddr = format!("{client}:{http_port}")
        .parse()
        .or_else(|_| format!("[{client}]:{http_port}").parse())
        .with_context(|| format!("invalid client address {client:?}"))?;

    let server_port = args.server_port.or(files.server_port).unwrap_or(8300);
    let mut server_config = ServerConfig::new(
        &datacenter,
        &node_name,
        &format!("{advertise}:{server_port}"),
    );
    // Dev mode accepts leaf TTLs of a few seconds, so renewal can be watched (and tested) for real; a cluster keeps
    // Consul's 1 h minimum.
    if args.dev {
        server_config.min_leaf_ttl = std::time::Duration::from_secs(2);
    }
    server_config.bootstrap_expect = bootstrap_expect.unwrap_or(0);
    if let Some(after) = files.dead_server_after {
        server_config.dead_server_after = after;
    }
    server_config.rpc_tls = match (
        &files.tls.ca_file,
        &files.tls.cert_file,
        &files.tls.key_file,
    ) {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) if !args.dev => Some(
            weft_server::RpcTls::from_files(
                std::path::Path::new(ca),
                std::path::Path::new(cert),
                std::path::Path::new(key),
                files.tls.verify_incoming.unwrap_or(true),
                &datacenter,
            )
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?,
        ),
        (Some(_), Some(_), Some(_)) => None,
        _ => bail!(
            "tls: ca_file, cert_file and key_file go together (server RPC TLS needs all three)"
        ),
    };
    if let Some(ca) = &files.ca_config {
        let wire = weft_ca::CaConfigWire {
            config: ca.clone(),
            ..Default::default()
        };
        server_config.ca_config = weft_ca::CaConfig::from_wire(
            &wire,
            &weft_ca::CaConfig::default(),
            server_config.min_leaf_ttl,
        )
        .map_err(|e| anyhow::anyhow!("connect.ca_config: {e}"))?;
    }
    let retry_join: Vec<String> = args
        .retry_join
        .iter()
        .chain(files.retry_join.iter())
        .map(|a| crate::cluster_cmd::with_default_port(a, 8301))
        .collect();
    let serf_port = args.serf_lan_port.or(files.serf_lan_port).unwrap_or(8301);
    let keyring = match args.encrypt.clone().or(files.encrypt.clone()) {
        Some(k) => Some(
            weft_gossip::Keyring::from_base64(&k).map_err(|e| anyhow::anyhow!("-encrypt: {e}"))?,
        ),
        None => None,
    };
    let rpc_bind: SocketAddr = crate::cluster_cmd::socket_addr(&bind, server_port)
        .with_context(|| format!("invalid bind address {bind:?}"))?;
    let mut rpc_listener = None;
    let server = if args.dev {
        Server::new(server_config)
    } else if is_server {
        let dir = std::path::Path::new(data_dir.as_deref().unwrap_or_default()).join("raft");
        // Bind before starting Raft, so a busy port is a clear error rather than an unreachable member.
        rpc_listener = Some(
            listen(rpc_bind, 1024)
                .with_context(|| format!("cannot listen for server RPC on {rpc_bind}"))?,
        );
        let node = weft_server::RaftNode::start(
            weft_server::raft_id(&node_id),
            &server_config.rpc_addr,
            &dir,
            Arc::new(std::sync::RwLock::new(weft_state::Store::new())),
            &weft_server::Timings::default(),
            server_config.rpc_tls.as_ref(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Server::raft(server_config, node)
    } else {
        Server::client(server_config, Vec::new())
    };
    if !args.dev {
        let gossip_bind = crate::cluster_cmd::socket_addr(&bind, serf_port)?;
        let gossip_advertise = crate::cluster_cmd::socket_addr(&advertise, serf_port)
            .with_context(|| format!("invalid advertise address {advertise:?}"))?;
        let tags = weft_gossip::Tags {
            role: if is_server {
                weft_gossip::Role::Server
            } else {
                weft_gossip::Role::Client
            },
            datacenter: datacenter.clone(),
            rpc: is_server.then(|| server.config().rpc_addr.clone()),
            expect: bootstrap_expect.unwrap_or(0),
            build: weft_types::VERSION.into(),
        };
        let mut gossip_config =
            weft_gossip::GossipConfig::new(&node_name, gossip_bind, gossip_advertise, tags);
        gossip_config.keyring = keyring;
        if let Some(t) = files.reconnect_timeout {
            gossip_config.reconnect_timeout = t;
        }
        let gossip = weft_gossip::Gossip::start(gossip_config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut seeds = Vec::new();
        for addr in &retry_join {
            match weft_http::resolve_gossip_addr(addr).await {
                Ok(found) => seeds.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "a -retry-join address does not resolve; skipping it")
                }
            }
        }
        gossip
            .join(seeds)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        server.set_gossip(gossip);
    }
    let _leader_loops = server.spawn_leader_loops();
    let agent = Agent::new(
        AgentConfig {
            node_name: node_name.clone(),
            node_id,
            datacenter: datacenter.clone(),
            advertise_addr: advertise.clone(),
            node_meta: Default::default(),
            server: is_server,
            server_port,
            root_change_jitter: files
                .root_change_jitter
                .unwrap_or(std::time::Duration::from_secs(30)),
            state_dir: (!args.dev)
                .then(|| {
                    data_dir
                        .as_deref()
                        .map(|d| std::path::Path::new(d).join("agent"))
                })
                .flatten(),
        },
        server,
    );
    agent
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("cannot register this node: {e}"))?;
    let mut state = ApiState::new(agent.clone());
    if let Some(max) = files.kv_max_value_size {
        state.kv_max_value_size = max;
    }
    if let Some(min) = files.session_ttl_min {
        state.session_ttl_min = min;
    }
    let (config_files, config_dirs) = (args.config_file.clone(), args.config_dir.clone());
    state.reload = Some(Arc::new(move || {
        FileConfig::load(&config_files, &config_dirs)
            .map(|c| (c.services, c.checks))
            .map_err(|e| format!("{e:#}"))
    }));
    // Dev mode allows what no intention denies, as Consul's dev agent does; `acl.default_policy` overrides.
    state.intention_default_allow = files.acl_default_policy.as_deref() != Some("deny");
    // The RPC port serves the same API (for forwarded requests) with the same settings; it and cluster forming
    // start before any registration, since those writes wait for a leader.
    if let Some(listener) = rpc_listener {
        // The KV pages too: client agents hold no KV and pass their dashboard's KV pages to a server.
        let rpc_app = weft_ui::kv_router(state.clone()).merge(weft_http::rpc_router(state.clone()));
        let listener = weft_http::rpc_listener::RpcListener::new(
            listener,
            agent.server().config().rpc_tls.as_ref(),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, rpc_app).await {
                tracing::error!(error = %e, "server RPC listener failed");
            }
        });
        let boot = weft_server::Bootstrap {
            expect: bootstrap_expect.unwrap_or(0),
            retry_join: Vec::new(),
        };
        let forming = agent.server().clone();
        tokio::spawn(async move { forming.form_cluster(boot).await });
    }
    match agent.restore_saved().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            registrations = n,
            "restored API registrations from the data dir"
        ),
        Err(e) => bail!("{e}"),
    }
    // Config-file registrations: in a cluster the first writes may wait for an election; they are local first and
    // anti-entropy completes them, so a slow election does not stop the agent from starting.
    let cluster = !args.dev;
    for svc in &files.services {
        match agent.register_service(svc, true, Source::Config).await {
            Ok(()) => {}
            Err(e) if cluster && e.to_string().contains("leader") => {
                tracing::warn!(service = %svc.name, error = %e, "registered locally; the catalog follows once a leader is elected")
            }
            Err(e) => bail!("service {:?}: {e}", svc.name),
        }
    }
    for check in &files.checks {
        match agent.register_check(check, Source::Config).await {
            Ok(()) => {}
            Err(e) if cluster && e.to_string().contains("leader") => {
                tracing::warn!(check = %check.name, error = %e, "registered locally; the catalog follows once a leader is elected")
            }
            Err(e) => bail!("check {:?}: {e}", check.name),
        }
    }

    let shutdown = state.shutdown.clone();
    let leaving = agent.clone();

    // A deep accept backlog: a reconnect storm of watchers must not overflow mio's default of 128 and stall
    // for a SYN retry.
    let listener = listen(http_addr, 4096)
        .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
    let local = listener.local_addr()?;
    let mut signals = weft_sidecar::signals::Signals::install();
    println!("==> Weft agent running!");
    println!("             Version: '{}'", weft_types::VERSION);
    println!("           Node name: '{node_name}'");
    println!("          Datacenter: '{datacenter}'");
    let role = if args.dev {
        "true (Bootstrap: true, dev mode)".to_string()
    } else if is_server {
        format!(
            "true (Bootstrap expect: {}, RPC: {rpc_bind})",
            bootstrap_expect.unwrap_or(0)
        )
    } else {
        format!("false (servers: {})", retry_join.join(", "))
    };
    println!("              Server: {role}");
    println!("         Client Addr: [{client}] (HTTP: {})", local.port());
    println!("        Cluster Addr: {advertise}");
    println!("            HTTP API: http://{local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    // The dashboard's routes first; everything else (`/`, `/v1/...`) is the API's.
    let app = weft_ui::router(state.clone()).merge(weft_http::router(state));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let leave_on_terminate = files.leave_on_terminate.unwrap_or(!args.dev && !is_server);
    tokio::select! {
        _ = signals.wait() => {
            tracing::info!("caught signal; shutting down");
            if leave_on_terminate {
                // The node's services leave the catalog and its members see "left", not "failed"; bounded, since
                // the servers may be gone already.
                match tokio::time::timeout(std::time::Duration::from_secs(3), leaving.leave()).await {
                    Ok(Ok(())) => tracing::info!("left the cluster"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the cluster gracefully"),
                    Err(_) => tracing::warn!("gave up leaving the cluster gracefully after 3 s"),
                }
            }
        }
        _ = shutdown.notified() => tracing::info!("left the cluster; shutting down"),
    }
    let _ = stop_tx.send(());
    // Blocking queries may park for minutes: give in-flight requests a moment, then stop regardless.
    if let Ok(Ok(Err(e))) = tokio::time::timeout(std::time::Duration::from_secs(2), serve).await {
        return Err(e).context("HTTP server failed");
    }
    println!("==> Weft agent stopped");
    Ok(())
}

/// A TCP listener with an explicit accept backlog.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
