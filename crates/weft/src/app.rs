//! The composition root: one [`RuntimeConfig`] and the bound listeners in, a running agent out.
//!
//! [`App::build`] starts the parts in the order they depend on each other: the server role (dev store, Raft member
//! or client replica), gossip, the leader loops, the agent and its node registration, the HTTP API state, the
//! server RPC listener and cluster forming, then the registrations kept in the data dir and the config files'.
//! [`App::run`] serves the HTTP API and the dashboard until told to stop. Tests build an `App` in-process on
//! port 0; `weft agent` builds one from its flags.

use crate::config::RuntimeConfig;
use crate::reload::{LogControl, Reloader};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use weft_agent::{Agent, AgentConfig, AgentError, Source};
use weft_http::ApiState;
use weft_server::{Server, ServerConfig};

/// The sockets an agent serves, bound before anything starts so a busy port is a clear error at once.
pub struct Listeners {
    pub http: TcpListener,
    /// Server RPC (Raft, forwarding, joins, the replica stream): servers outside dev mode only.
    pub rpc: Option<TcpListener>,
    /// DNS over UDP and TCP on one port, unless `ports.dns` is -1.
    pub dns: Option<(tokio::net::UdpSocket, TcpListener)>,
}

impl Listeners {
    /// Binds what `config` asks for.
    pub fn bind(config: &RuntimeConfig) -> Result<Listeners> {
        let Some(http_addr) = config.http_addr else {
            bail!("ports.http is -1: Weft's agent needs its HTTP API (sidecars and the CLI talk to it)");
        };
        // A deep accept backlog: a reconnect storm of watchers must not overflow mio's default of 128.
        let http = listen(http_addr, 4096)
            .with_context(|| format!("cannot listen for HTTP on {http_addr}"))?;
        let rpc = if config.server && !config.dev {
            let addr = rpc_bind(config);
            Some(
                listen(addr, 1024)
                    .with_context(|| format!("cannot listen for server RPC on {addr}"))?,
            )
        } else {
            None
        };
        let dns = match config.dns_addr {
            None => None,
            Some(addr) => Some(bind_dns(addr).with_context(|| {
                format!("cannot listen for DNS on {addr} (ports.dns = -1 disables DNS)")
            })?),
        };
        Ok(Listeners { http, rpc, dns })
    }
}

/// A UDP socket and a TCP listener on the same port (with port 0, the one UDP got; retried if TCP finds it taken).
fn bind_dns(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..8 {
        let udp = std::net::UdpSocket::bind(addr)?;
        let at = udp.local_addr()?;
        match listen(at, 1024) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                return Ok((tokio::net::UdpSocket::from_std(udp)?, tcp));
            }
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free DNS port")))
}

/// What DNS answers from: this agent's copy of the state, how old it is, and, with ACLs on, what the agent's
/// `dns` token (else its `default` token, else the anonymous token) may read, as Consul's DNS filters.
struct DnsView {
    server: Server,
    /// The token's identity, resolved again every [`DNS_TOKEN_REFRESH`]; `None` until resolved or when the token
    /// is unknown, and then DNS names nothing (fail closed).
    sight: Arc<std::sync::RwLock<Option<Arc<weft_server::Identity>>>>,
    /// That token's secret, sent with the reads DNS asks of the servers (other datacenters, query failover).
    secret: Arc<std::sync::RwLock<Option<String>>>,
}

/// How long DNS waits for a read it asks of the servers (another datacenter, a query failing over).
const DNS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often DNS re-resolves its token (a token or policy change shows within this).
const DNS_TOKEN_REFRESH: Duration = Duration::from_secs(2);

impl DnsView {
    fn new(
        server: Server,
        tokens: Arc<std::sync::RwLock<weft_http::agent_token::AgentTokens>>,
    ) -> (DnsView, Option<tokio::task::JoinHandle<()>>) {
        let sight = Arc::new(std::sync::RwLock::new(None));
        let secret_now = Arc::new(std::sync::RwLock::new(None));
        let task = server.acl_enabled().then(|| {
            let (server, sight, secret_now) = (server.clone(), sight.clone(), secret_now.clone());
            tokio::spawn(async move {
                loop {
                    let secret = {
                        let t = tokens.read().unwrap_or_else(|p| p.into_inner());
                        t.dns
                            .clone()
                            .or_else(|| t.default.clone())
                            .unwrap_or_else(|| weft_types::acl::ANONYMOUS_SECRET.to_string())
                    };
                    let identity = server.resolve_token(&secret).await.ok();
                    *sight.write().unwrap_or_else(|p| p.into_inner()) = identity;
                    *secret_now.write().unwrap_or_else(|p| p.into_inner()) = Some(secret);
                    tokio::time::sleep(DNS_TOKEN_REFRESH).await;
                }
            })
        });
        (
            DnsView {
                server,
                sight,
                secret: secret_now,
            },
            task,
        )
    }

    fn may_read(&self, kind: weft_acl::Named, name: &str) -> bool {
        if !self.server.acl_enabled() {
            return true;
        }
        self.sight
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|id| id.authorizer.named(kind, name, weft_acl::Need::Read))
    }
}

impl weft_dns::DnsState for DnsView {
    fn store(&self) -> std::sync::RwLockReadGuard<'_, weft_state::Store> {
        self.server.read()
    }

    fn staleness(&self) -> Option<Duration> {
        if self.server.is_leader() {
            return Some(Duration::ZERO);
        }
        self.server.last_contact_ms().map(Duration::from_millis)
    }

    fn may_see_service(&self, name: &str) -> bool {
        self.may_read(weft_acl::Named::Service, name)
    }

    fn may_see_node(&self, name: &str) -> bool {
        self.may_read(weft_acl::Named::Node, name)
    }

    /// Asked as a forwarded request: a client agent asks its servers (which pass it on to another datacenter);
    /// a server asks the other datacenter's servers, or its leader.
    fn fetch<'a>(
        &'a self,
        datacenter: Option<&'a str>,
        path: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = weft_dns::Fetched> + Send + 'a>> {
        Box::pin(async move {
            use weft_server::Mode;
            let server = &self.server;
            let (client, targets) = match (server.mode(), datacenter) {
                (Mode::Dev, _) => return weft_dns::Fetched::NotFound,
                (Mode::Client(replica), _) => (server.http().clone(), replica.servers()),
                (Mode::Raft(_), Some(dc)) => {
                    // A datacenter the WAN pool does not know does not exist (and gets no RPC client made).
                    let servers = server.servers_in(dc);
                    if servers.is_empty() {
                        return weft_dns::Fetched::NotFound;
                    }
                    (server.http_for(dc), servers)
                }
                (Mode::Raft(_), None) => {
                    (server.http().clone(), server.leader().into_iter().collect())
                }
            };
            let full = match datacenter {
                Some(dc) => format!(
                    "{}{path}?dc={}",
                    weft_http::FORWARD_PREFIX,
                    weft_types::url::query_value(dc)
                ),
                None => format!("{}{path}", weft_http::FORWARD_PREFIX),
            };
            // Asked by this agent itself: hop 1 from here on, and no token but DNS's own (below).
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                weft_http::forward::FORWARDED,
                axum::http::HeaderValue::from_static("1"),
            );
            let secret = self
                .secret
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(value) = secret.and_then(|s| axum::http::HeaderValue::from_str(&s).ok()) {
                headers.insert("x-consul-token", value);
            }
            for addr in targets {
                match weft_rpc::get_json(&client, &addr, &full, &headers, DNS_FETCH_TIMEOUT).await {
                    Ok(value) => return weft_dns::Fetched::Found(value),
                    // An unknown node or query, or a datacenter no server knows: the name does not exist.
                    Err(weft_rpc::RpcError::Status { status, body })
                        if status == 404 || body == "No path to datacenter" =>
                    {
                        return weft_dns::Fetched::NotFound
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "a DNS read from the servers failed")
                    }
                }
            }
            weft_dns::Fetched::Unavailable
        })
    }
}

fn rpc_bind(config: &RuntimeConfig) -> SocketAddr {
    SocketAddr::new(config.bind_addr, config.server_port)
}

/// A TCP listener with an explicit accept backlog.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A built agent, ready to serve.
pub struct App {
    config: Arc<RuntimeConfig>,
    agent: Agent,
    state: ApiState,
    http: TcpListener,
    /// Where DNS listens (UDP and TCP), when it does.
    dns_addr: Option<SocketAddr>,
    reloader: Arc<Reloader>,
    /// Background tasks that live as long as the app: the leader loops, the RPC listener, cluster forming.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl App {
    /// Starts every part of the agent in order; see the module comment.
    pub async fn build(
        config: RuntimeConfig,
        listeners: Listeners,
        logs: LogControl,
    ) -> Result<App> {
        let mut config = config;
        let node_id = node_id(&config)?;
        config.keyring = gossip_keyring(&config)?;
        let config = Arc::new(config);
        let server = start_server(&config, listeners.rpc.is_some(), &node_id).await?;
        if !config.dev {
            start_gossip(&config, &server).await?;
        }
        if let Some(wan) = &config.wan {
            start_wan(&config, wan, &server).await?;
        }
        let mut tasks = vec![server.spawn_leader_loops()];
        let agent = Agent::new(agent_config(&config, node_id), server);
        agent
            .start()
            .await
            .map_err(|e| anyhow::anyhow!("cannot register this node: {e}"))?;
        // User events from gossip: the agent keeps those whose filters select this node.
        if let Some(mut events) = agent.server().gossip().and_then(|g| g.take_events()) {
            let receiver = agent.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    receiver.receive_event(event);
                }
            }));
        }
        tasks.push(tokio::spawn(
            agent.clone().sync_coordinates(config.coordinate_sync),
        ));
        let log_stream = logs.stream();
        let reloader = Arc::new(Reloader::new(config.clone(), agent.clone(), logs));
        let mut state = api_state(
            &config,
            agent.clone(),
            reloader.clone(),
            listeners.rpc.is_some(),
        )?;
        state.logs = log_stream;
        // The RPC port and cluster forming start before any registration, since those writes wait for a leader.
        if let Some(listener) = listeners.rpc {
            tasks.extend(serve_rpc(&config, listener, state.clone()));
        }
        let dns_addr = match listeners.dns {
            Some((udp, tcp)) => {
                let at = udp.local_addr().ok();
                let (view, sight) = DnsView::new(agent.server().clone(), state.acl.tokens.clone());
                tasks.extend(sight);
                let dns = weft_dns::DnsServer::new(config.dns.clone(), Arc::new(view));
                tasks.extend(dns.spawn(Some(udp), Some(tcp)));
                at
            }
            None => None,
        };
        register_saved_and_configured(&config, &agent).await?;
        Ok(App {
            config,
            agent,
            state,
            http: listeners.http,
            dns_addr,
            reloader,
            tasks,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Where the HTTP API listens (the real port when 0 was asked for).
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// Where DNS listens, UDP and TCP (the real port when 0 was asked for).
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Serves the HTTP API and the dashboard until `stop` completes or `/v1/agent/leave` is called; leaves the
    /// cluster first when `leave_on_terminate` says so.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let shutdown = self.state.shutdown.clone();
        let http_connections = self.state.http_connections.clone();
        // The dashboard's routes first; everything else (`/`, `/v1/...`) is the API's.
        let api = weft_http::router(self.state.clone());
        let app = if self.config.ui_enabled {
            weft_ui::router(self.state).merge(api)
        } else {
            api
        };
        let browsers = Arc::new(weft_http::browser_guard::BrowserGuard {
            node_name: self.config.node_name.clone(),
            allowed_hosts: self.config.allowed_hosts.clone(),
            allowed_origins: self.config.allowed_origins.clone(),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let limits = weft_http::serve::Limits {
            header_read_timeout: self.config.http_header_read_timeout,
            ..weft_http::serve::Limits::default()
        };
        // Blocking queries may park for minutes: once told to stop, in-flight requests get 2 s.
        let stopped = async move {
            let _ = stop_rx.await;
        };
        let serve = tokio::spawn(weft_http::serve::serve(
            self.http,
            app,
            browsers,
            limits,
            http_connections,
            stopped,
            Duration::from_secs(2),
        ));
        tokio::select! {
            _ = stop => {
                tracing::info!("shutting down");
                if self.config.leave_on_terminate {
                    leave_gracefully(&self.agent).await;
                }
            }
            _ = shutdown.notified() => tracing::info!("left the cluster; shutting down"),
        }
        let _ = stop_tx.send(());
        let _ = serve.await;
        for task in self.tasks {
            task.abort();
        }
        Ok(())
    }
}

/// The node's services leave the catalog and its members see "left", not "failed"; bounded, since the servers
/// may be gone already.
async fn leave_gracefully(agent: &Agent) {
    match tokio::time::timeout(Duration::from_secs(3), agent.leave()).await {
        Ok(Ok(())) => tracing::info!("left the cluster"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the cluster gracefully"),
        Err(_) => tracing::warn!("gave up leaving the cluster gracefully after 3 s"),
    }
}

/// The configured node ID, else the one kept in the data dir (created on first start), else a new one (dev).
fn node_id(config: &RuntimeConfig) -> Result<String> {
    if let Some(dir) = &config.data_dir {
        crate::cluster_cmd::claim_data_dir(dir, &config.datacenter, config.server)?;
    }
    match (&config.node_id, &config.data_dir) {
        (Some(id), _) => Ok(id.clone()),
        (None, Some(dir)) => crate::cluster_cmd::persisted_node_id(dir),
        (None, None) => Ok(weft_types::ids::new_uuid()),
    }
}

fn server_config(config: &RuntimeConfig) -> Result<ServerConfig> {
    let rpc_addr = SocketAddr::new(config.advertise_addr, config.server_port).to_string();
    let mut server = ServerConfig::new(&config.datacenter, &config.node_name, &rpc_addr);
    server.min_leaf_ttl = config.min_leaf_ttl;
    server.bootstrap_expect = config.bootstrap_expect;
    server.autopilot = config.autopilot.clone();
    if let Some(ca) = &config.ca_config {
        server.ca_config = ca.clone();
    }
    server.rpc_auth = rpc_auth(config);
    server.acl = weft_server::AclConfig {
        enabled: config.acl.enabled,
        default_policy: config.acl.default_policy,
        down_policy: config.acl.down_policy,
        token_ttl: config.acl.token_ttl,
        initial_management: config.acl.initial_management.clone(),
    };
    server.ca_seal = match (&config.ca_seal_key, &config.data_dir) {
        (Some(key), _) => weft_server::SealKeySource::Operator(key.clone()),
        (None, Some(dir)) if config.server && !config.dev => {
            let path = dir.join(weft_server::SEAL_KEY_FILE);
            let key = weft_server::read_seal_key(&path)?;
            if key.is_some() {
                // Left readable by others (copied in by hand, or an earlier version): owner-only, as the data dir.
                weft_types::fsio::tighten(&path).with_context(|| {
                    format!("cannot make {} readable by its owner only", path.display())
                })?;
            }
            weft_server::SealKeySource::DataDir { path, key }
        }
        (None, _) => weft_server::SealKeySource::Memory,
    };
    server.rpc_tls = match &config.rpc_tls {
        None => None,
        Some(files) => Some(
            weft_server::RpcTls::load(
                &files.ca,
                &files.cert,
                &files.key,
                files.verify_incoming,
                &config.datacenter,
            )
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?,
        ),
    };
    Ok(server)
}

/// RPC authentication keyed from the gossip keys, when the cluster has them (see `weft_rpc::auth`): it follows the
/// keyring as `weft keyring` rotates it.
fn rpc_auth(config: &RuntimeConfig) -> Option<Arc<weft_rpc::RpcAuth>> {
    let keyring = config.keyring.clone()?;
    Some(Arc::new(weft_rpc::RpcAuth::from_keys(Box::new(
        GossipKeys(keyring),
    ))))
}

/// The gossip keyring as the RPC layer's source of keys.
struct GossipKeys(weft_gossip::Keyring);

impl weft_rpc::KeySource for GossipKeys {
    fn keys(&self) -> Vec<Vec<u8>> {
        self.0.raw_keys()
    }
    fn generation(&self) -> u64 {
        self.0.generation()
    }
}

/// The gossip keyring: the one kept in the data dir, which `weft keyring` keeps current, else the `encrypt` key
/// (which is kept there from now on). As in Consul, a keyring file wins over `encrypt`: after a rotation the
/// configured key may be one the cluster no longer accepts.
fn gossip_keyring(config: &RuntimeConfig) -> Result<Option<weft_gossip::Keyring>> {
    let Some(dir) = config.data_dir.as_ref().filter(|_| !config.dev) else {
        return Ok(config.keyring.clone());
    };
    let path = dir.join(weft_gossip::KEYRING_FILE);
    if let Some(parent) = path.parent() {
        weft_types::fsio::private_dir(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let saved = weft_gossip::Keyring::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keyring = match (saved, &config.keyring) {
        (Some(saved), configured) => {
            let configured = configured.as_ref().map(|k| k.list().0);
            if configured.is_some_and(|k| !saved.list().1.contains(&k)) {
                tracing::warn!(
                    file = %path.display(),
                    "the keyring file holds the gossip keys in use (rotated with `weft keyring`); the `encrypt` key is not among them and is ignored"
                );
            }
            saved
        }
        (None, Some(configured)) => configured.clone(),
        (None, None) => return Ok(None),
    };
    keyring
        .persist_to(&path)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The server role: an in-memory store in dev mode, a Raft member on servers, a replica on client agents.
async fn start_server(config: &RuntimeConfig, has_rpc: bool, node_id: &str) -> Result<Server> {
    let server_config = server_config(config)?;
    if config.dev {
        return Ok(Server::new(server_config));
    }
    if !(config.server && has_rpc) {
        return Ok(Server::client(server_config, Vec::new()));
    }
    let dir = config.data_dir.clone().unwrap_or_default().join("raft");
    let node = weft_server::RaftNode::start(
        weft_server::raft_id(node_id),
        &server_config.rpc_addr,
        &dir,
        Arc::new(std::sync::RwLock::new(weft_state::Store::new())),
        &weft_server::Timings::default(),
        weft_rpc::http_client(
            server_config.rpc_tls.as_ref(),
            server_config.rpc_auth.clone(),
        ),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Server::raft(server_config, node))
}

/// Joins the gossip pool through the `retry_join` addresses that resolve.
async fn start_gossip(config: &RuntimeConfig, server: &Server) -> Result<()> {
    let tags = weft_gossip::Tags {
        role: if config.server {
            weft_gossip::Role::Server
        } else {
            weft_gossip::Role::Client
        },
        datacenter: config.datacenter.clone(),
        rpc: config.server.then(|| server.config().rpc_addr.clone()),
        expect: config.bootstrap_expect,
        build: weft_types::VERSION.into(),
    };
    let mut gossip_config = weft_gossip::GossipConfig::new(
        &config.node_name,
        SocketAddr::new(config.bind_addr, config.serf_lan_port),
        config
            .serf_lan_advertise
            .unwrap_or(SocketAddr::new(config.advertise_addr, config.serf_lan_port)),
        tags,
    );
    gossip_config.keyring = config.keyring.clone();
    if let Some(t) = config.reconnect_timeout {
        gossip_config.reconnect_timeout = t;
    }
    let gossip = weft_gossip::Gossip::start(gossip_config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    join(&gossip, &config.retry_join, "retry_join").await?;
    server.set_gossip(gossip);
    Ok(())
}

/// Joins the WAN pool (servers that federate): members are named `<node>.<datacenter>`, as in Consul, and carry
/// this server's RPC address, where other datacenters send their requests for this one. The pool shares the LAN
/// pool's keyring, so federated datacenters must use the same gossip key.
async fn start_wan(
    config: &RuntimeConfig,
    wan: &crate::config::WanSettings,
    server: &Server,
) -> Result<()> {
    let tags = weft_gossip::Tags {
        role: weft_gossip::Role::Server,
        datacenter: config.datacenter.clone(),
        rpc: Some(server.config().rpc_addr.clone()),
        expect: config.bootstrap_expect,
        build: weft_types::VERSION.into(),
    };
    let mut gossip_config = weft_gossip::GossipConfig::new(
        &format!("{}.{}", config.node_name, config.datacenter),
        wan.bind,
        wan.advertise,
        tags,
    );
    gossip_config.keyring = config.keyring.clone();
    // Consul's WAN profile: slower probes over longer distances.
    gossip_config.probe_period = Duration::from_secs(1);
    let gossip = weft_gossip::Gossip::start(gossip_config)
        .await
        .map_err(|e| anyhow::anyhow!("WAN pool: {e}"))?;
    join(&gossip, &wan.join, "retry_join_wan").await?;
    server.set_wan(gossip);
    Ok(())
}

/// Starts joining a pool through the addresses (`setting` names them in warnings) that resolve.
async fn join(gossip: &weft_gossip::Gossip, addrs: &[String], setting: &str) -> Result<()> {
    let mut seeds = Vec::new();
    for addr in addrs {
        match weft_gossip::resolve(addr).await {
            Ok(found) => seeds.extend(found),
            Err(e) => {
                tracing::warn!(error = %e, setting, "a join address does not resolve; skipping it")
            }
        }
    }
    gossip.join(seeds).await.map_err(|e| anyhow::anyhow!("{e}"))
}

fn agent_config(config: &RuntimeConfig, node_id: String) -> AgentConfig {
    AgentConfig {
        node_name: config.node_name.clone(),
        node_id,
        datacenter: config.datacenter.clone(),
        advertise_addr: config.advertise_addr.to_string(),
        node_meta: config.node_meta.clone(),
        server: config.server,
        server_port: config.server_port,
        root_change_jitter: config.root_change_jitter,
        leaf_idle_expiry: config.leaf_idle_expiry,
        script_checks: config.script_checks,
        check_output_max_size: config.check_output_max_size,
        locality: config.locality.clone(),
        state_dir: config.data_dir.as_ref().map(|d| d.join("agent")),
    }
}

fn api_state(
    config: &RuntimeConfig,
    agent: Agent,
    reloader: Arc<Reloader>,
    serves_rpc: bool,
) -> anyhow::Result<ApiState> {
    let mut state = ApiState::new(agent);
    state.http_connections = weft_rpc::Connections::new(config.http_max_conns_per_client);
    if serves_rpc {
        state.rpc_connections = Some(weft_rpc::Connections::new(config.rpc_max_conns_per_client));
    }
    state.kv_max_value_size = config.kv_max_value_size;
    state.session_ttl_min = config.session_ttl_min;
    state.reload = Some(Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move {
            reloader
                .reload()
                .await
                .map_err(weft_http::ReloadFailure::from)
        })
    }));
    // Dev mode allows what no intention denies, as Consul's dev agent does; `default_intention_policy` overrides.
    state.default_policy = config.default_policy;
    let persist_dir = config
        .data_dir
        .clone()
        .filter(|_| config.acl.enable_token_persistence);
    let mut tokens = config.acl.tokens.clone();
    if let Some(dir) = &persist_dir {
        // Tokens set through the API outlive restarts and win over the configured ones, as in Consul.
        let persisted = weft_http::agent_token::AgentTokens::load(dir)
            .map_err(|e| anyhow::anyhow!("acl.enable_token_persistence: {e}"))?;
        tokens.overlay(&persisted);
    }
    state.agent.server().set_agent_token(tokens.for_agent());
    state.acl = weft_http::caller::AclApi {
        bootstrap_reset_file: config
            .data_dir
            .as_ref()
            .map(|d| d.join("acl-bootstrap-reset")),
        tokens: Arc::new(std::sync::RwLock::new(tokens)),
        token_min_ttl: config.acl.token_min_ttl,
        token_max_ttl: config.acl.token_max_ttl,
        enable_key_list_policy: config.acl.enable_key_list_policy,
        persist_dir,
    };
    state.self_info = Arc::new(weft_http::agent_self::SelfInfo {
        debug_config: config.debug_json(),
        serf_lan_port: config.serf_lan_port,
        bootstrap_expect: config.bootstrap_expect,
        encrypted: config.keyring.is_some(),
    });
    Ok(state)
}

/// Serves server RPC (Raft, forwarding, joins, the replica stream) and starts forming the cluster.
fn serve_rpc(
    config: &RuntimeConfig,
    listener: TcpListener,
    state: ApiState,
) -> Vec<tokio::task::JoinHandle<()>> {
    let server = state.agent.server().clone();
    // Forwarded requests: the API, and the dashboard's pages (client agents hold no KV and pass the KV pages on;
    // another datacenter's dashboard passes every page of this one).
    let forwardable =
        weft_ui::forwarded_router(state.clone()).merge(weft_http::forwarded_router(state.clone()));
    let guard = weft_http::rpc_guard::RpcGuard {
        auth: server.config().rpc_auth.clone(),
        roles: config.rpc_tls.as_ref().is_some_and(|t| t.verify_incoming),
    };
    let connections = state
        .rpc_connections
        .clone()
        .unwrap_or_else(|| weft_rpc::Connections::new(config.rpc_max_conns_per_client));
    let rpc_app = weft_http::rpc_router(state, forwardable, guard)
        .into_make_service_with_connect_info::<weft_rpc::RpcPeer>();
    let listener = weft_rpc::RpcListener::new(
        listener,
        server.config().rpc_tls.as_ref(),
        config.rpc_handshake_timeout,
        connections,
    );
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, rpc_app).await {
            tracing::error!(error = %e, "server RPC listener failed");
        }
    });
    let boot = weft_server::Bootstrap {
        expect: config.bootstrap_expect,
        retry_join: Vec::new(),
    };
    let forming = tokio::spawn(async move { server.form_cluster(boot).await });
    vec![serve, forming]
}

/// Registrations made through the API before a restart, then the config files' services and checks. In a cluster
/// the first writes may wait for an election; they are local first and anti-entropy completes them, so a slow
/// election does not stop the agent from starting.
async fn register_saved_and_configured(config: &RuntimeConfig, agent: &Agent) -> Result<()> {
    match agent.restore_saved().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            registrations = n,
            "restored API registrations from the data dir"
        ),
        Err(e) => bail!("{e}"),
    }
    let cluster = !config.dev;
    for svc in &config.config_services() {
        match agent.register_service(svc, true, Source::Config).await {
            Ok(()) => {}
            Err(e @ AgentError::NoLeader) if cluster => {
                tracing::warn!(service = %svc.name, error = %e, "registered locally; the catalog follows once a leader is elected")
            }
            Err(e) => bail!("service {:?}: {e}", svc.name),
        }
    }
    for check in &config.checks {
        match agent.register_check(check, Source::Config).await {
            Ok(()) => {}
            Err(e @ AgentError::NoLeader) if cluster => {
                tracing::warn!(check = %check.name, error = %e, "registered locally; the catalog follows once a leader is elected")
            }
            Err(e) => bail!("check {:?}: {e}", check.name),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{AgentFlags, ConfigBuilder};

    async fn call(method: reqwest::Method, url: String, body: &str) -> (u16, serde_json::Value) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let answer = reqwest::Client::new()
            .request(method, url)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The whole wiring in one process: config, listeners on port 0, build, serve, register, read, stop.
    #[tokio::test]
    async fn builds_serves_and_stops_in_process() {
        let flags = AgentFlags {
            dev: true,
            http_port: Some(0),
            node: Some("in-process".into()),
            hcl: vec!["service { name = \"from-config\" port = 7000 }".into()],
            ..AgentFlags::default()
        };
        let config = ConfigBuilder::from_flags(&flags)
            .build_and_validate()
            .unwrap();
        let listeners = Listeners::bind(&config).unwrap();
        assert!(listeners.rpc.is_none(), "dev mode serves no server RPC");
        let app = App::build(config, listeners, LogControl::default())
            .await
            .unwrap();
        let base = format!("http://{}", app.http_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));

        let (status, _) = call(
            reqwest::Method::PUT,
            format!("{base}/v1/agent/service/register"),
            r#"{"Name": "web", "Port": 80}"#,
        )
        .await;
        assert_eq!(status, 200);
        let (_, services) = call(
            reqwest::Method::GET,
            format!("{base}/v1/catalog/services"),
            "",
        )
        .await;
        assert!(services.get("web").is_some(), "{services}");
        assert!(services.get("from-config").is_some(), "{services}");
        let (_, nodes) = call(
            reqwest::Method::GET,
            format!("{base}/v1/catalog/service/web"),
            "",
        )
        .await;
        assert_eq!(nodes[0]["Node"], "in-process");
        let (_, me) = call(reqwest::Method::GET, format!("{base}/v1/agent/self"), "").await;
        assert_eq!(me["DebugConfig"]["NodeName"], "in-process");
        // Internal routes are not on the public listener.
        let (status, _) = call(
            reqwest::Method::POST,
            format!("{base}/v1/internal/apply"),
            "{}",
        )
        .await;
        assert_eq!(status, 404);

        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert!(
            reqwest::get(format!("{base}/v1/status/leader"))
                .await
                .is_err(),
            "stopped"
        );
    }
}
