//! The validated, immutable settings an agent runs with: every default filled in, every value checked, every
//! problem reported at once. Built only by [`ConfigBuilder`](super::ConfigBuilder); shared as `Arc<RuntimeConfig>`.

use super::file::{Config, GoDuration, TlsSection};
use super::flags::AgentFlags;
use super::sources::Decoded;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use weft_types::{CheckDefinition, DefaultPolicy, ServiceDefinition};

/// TLS on server RPC (`tls.defaults` / `tls.internal_rpc`, or the older top-level keys): each PEM from its file or
/// inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcTlsFiles {
    pub ca: weft_server::Pem,
    pub cert: weft_server::Pem,
    pub key: weft_server::Pem,
    pub verify_incoming: bool,
}

/// The agent's settings after defaults and checks.
#[derive(Clone)]
pub struct RuntimeConfig {
    pub dev: bool,
    pub server: bool,
    pub bootstrap_expect: u32,
    pub datacenter: String,
    pub node_name: String,
    /// Set in the config; otherwise the one kept in the data dir (or a new one in dev mode).
    pub node_id: Option<String>,
    pub node_meta: BTreeMap<String, String>,
    pub data_dir: Option<PathBuf>,
    /// Consul's level name as configured (`info`, `DEBUG`, ...).
    pub log_level: String,
    /// The same level as a tracing filter directive.
    pub log_filter: &'static str,
    pub bind_addr: IpAddr,
    pub advertise_addr: IpAddr,
    pub client_addr: IpAddr,
    /// Where the HTTP API listens; `None` when `ports.http` is -1.
    pub http_addr: Option<SocketAddr>,
    /// Where DNS listens (UDP and TCP); `None` when `ports.dns` is -1.
    pub dns_addr: Option<SocketAddr>,
    /// `dns_config`, `domain`, `alt_domain`, `recursors`.
    pub dns: weft_dns::DnsConfig,
    pub server_port: u16,
    pub serf_lan_port: u16,
    /// `advertise_addrs.serf_lan`: the gossip address other agents are told, when not `advertise_addr` and the
    /// serf_lan port.
    pub serf_lan_advertise: Option<SocketAddr>,
    /// Gossip addresses to join, with the default port filled in.
    pub retry_join: Vec<String>,
    /// WAN federation with other datacenters' servers, when this server takes part in it.
    pub wan: Option<WanSettings>,
    pub keyring: Option<weft_gossip::Keyring>,
    pub rpc_tls: Option<RpcTlsFiles>,
    pub leave_on_terminate: bool,
    pub reconnect_timeout: Option<Duration>,

    /// Autopilot's settings until an operator writes others (`autopilot { ... }`).
    pub autopilot: weft_types::autopilot::AutopilotConfig,
    pub kv_max_value_size: usize,
    /// Connections one client address may hold to the HTTP API (`limits.http_max_conns_per_client`, 200).
    pub http_max_conns_per_client: usize,
    /// How long request headers may take, and idle keep-alive connections last (`limits.http_header_read_timeout`).
    pub http_header_read_timeout: Duration,
    /// Connections one client address may hold to server RPC (`limits.rpc_max_conns_per_client`, 100; 0: no limit).
    pub rpc_max_conns_per_client: usize,
    /// How long a new RPC connection may take to complete its TLS handshake, or to send its first byte
    /// (`limits.rpc_handshake_timeout`, 5 s).
    pub rpc_handshake_timeout: Duration,
    pub session_ttl_min: Duration,
    /// `sync_coordinate_interval_min` and `sync_coordinate_rate_target`.
    pub coordinate_sync: weft_agent::coordinates::CoordinateSync,
    pub services: Vec<ServiceDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub ca_config: Option<weft_ca::CaConfig>,
    /// The shortest leaf TTL accepted: Consul's 1 h, or a few seconds in dev mode so renewal can be watched.
    pub min_leaf_ttl: Duration,
    pub root_change_jitter: Duration,
    /// How long a leaf certificate nobody asks for is kept and renewed (`connect.leaf_cache_idle_expiry`).
    pub leaf_idle_expiry: Duration,
    /// `enable_script_checks` / `enable_local_script_checks`.
    pub script_checks: weft_agent::ScriptChecks,
    /// `check_output_max_size`: the most output any check keeps (4096 bytes unless set).
    pub check_output_max_size: usize,
    /// `locality { region zone }`: where this node runs.
    pub locality: Option<weft_types::service::Locality>,
    /// The operator's key sealing the CA's private keys at rest (`connect.ca_seal_key_file`), read at start.
    pub ca_seal_key: Option<weft_ca::seal::SealKey>,
    /// What connections no intention covers get (`default_intention_policy`).
    pub default_policy: DefaultPolicy,
    /// The `acl { }` block.
    pub acl: AclSettings,
    pub ui_enabled: bool,
    /// Extra names the HTTP API answers browsers for (`http_config.allowed_hosts`).
    pub allowed_hosts: Vec<String>,
    /// Extra origins whose pages may write (`http_config.allowed_origins`).
    pub allowed_origins: Vec<String>,
    /// Keys that were set but that Weft does not act on yet (logged as warnings at start).
    pub ignored: Vec<String>,
    /// The command line this config was built from: reload reads the same sources again.
    pub sources: AgentFlags,
    /// The gossip key as written, compared on reload (it needs a restart).
    pub(crate) encrypt: Option<String>,
}

/// A server's place in the WAN pool (Consul's serf WAN): the servers of every federated datacenter gossip there,
/// so that each knows the others' RPC addresses and distances. Weft runs it only when asked (`ports.serf_wan` or
/// `retry_join_wan`): a server that federates with nobody opens no WAN port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanSettings {
    pub bind: SocketAddr,
    /// What other datacenters' servers are told (`advertise_addrs.serf_wan`, else `advertise_addr` and the port).
    pub advertise: SocketAddr,
    /// WAN gossip addresses to join, with the default port filled in.
    pub join: Vec<String>,
}

/// The `acl { }` block as the agent applies it.
#[derive(Debug, Clone)]
pub struct AclSettings {
    pub enabled: bool,
    pub default_policy: DefaultPolicy,
    pub down_policy: weft_server::DownPolicy,
    pub token_ttl: Duration,
    pub enable_key_list_policy: bool,
    pub token_min_ttl: Duration,
    pub token_max_ttl: Duration,
    pub initial_management: Option<String>,
    /// The agent's own tokens (`acl.tokens.default`, `agent_recovery`, ...).
    pub tokens: weft_http::agent_token::AgentTokens,
    /// Tokens set through `/v1/agent/token` are kept in the data dir (`acl.enable_token_persistence`).
    pub enable_token_persistence: bool,
}

const DEFAULT_KV_MAX: usize = 512 * 1024;

impl RuntimeConfig {
    /// The services of the config files, each with the token its catalog writes need: its own `token`, else
    /// `acl.tokens.config_file_service_registration`, else the default token (Consul's order).
    pub fn config_services(&self) -> Vec<ServiceDefinition> {
        let fallback = self
            .acl
            .tokens
            .config_file_service_registration
            .as_ref()
            .or(self.acl.tokens.default.as_ref());
        self.services
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let (true, Some(t)) = (s.token.is_empty(), fallback) {
                    s.token.clone_from(t);
                }
                s
            })
            .collect()
    }

    /// The settings in Consul's `DebugConfig` names, secrets replaced by `"hidden"` (`/v1/agent/self`).
    pub fn debug_json(&self) -> Value {
        let hidden = |set: bool| if set { "hidden" } else { "" };
        serde_json::json!({
            "DevMode": self.dev,
            "ServerMode": self.server,
            "BootstrapExpect": self.bootstrap_expect,
            "Datacenter": self.datacenter,
            "PrimaryDatacenter": self.datacenter,
            "NodeName": self.node_name,
            "NodeID": self.node_id.clone().unwrap_or_default(),
            "NodeMeta": self.node_meta,
            "DataDir": self.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            "LogLevel": self.log_level,
            "BindAddr": self.bind_addr.to_string(),
            "AdvertiseAddrLAN": self.advertise_addr.to_string(),
            "ClientAddrs": [self.client_addr.to_string()],
            "HTTPAddrs": self.http_addr.map(|a| vec![format!("tcp://{a}")]).unwrap_or_default(),
            "HTTPPort": self.http_addr.map_or(-1, |a| i32::from(a.port())),
            "DNSPort": self.dns_addr.map_or(-1, |a| i32::from(a.port())),
            "DNSDomain": self.dns.domain,
            "DNSRecursors": self.dns.recursors.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "ServerPort": self.server_port,
            "SerfPortLAN": self.serf_lan_port,
            "RetryJoinLAN": self.retry_join,
            "SerfPortWAN": self.wan.as_ref().map_or(-1, |w| i32::from(w.bind.port())),
            "RetryJoinWAN": self.wan.as_ref().map(|w| w.join.clone()).unwrap_or_default(),
            "EncryptKey": hidden(self.encrypt.is_some()),
            "TLS": {"InternalRPC": self.rpc_tls.as_ref().map(|t| serde_json::json!({
                "CAFile": t.ca.name(),
                "CertFile": t.cert.name(),
                "KeyFile": "hidden",
                "VerifyIncoming": t.verify_incoming,
            }))},
            "LeaveOnTerm": self.leave_on_terminate,
            "ReconnectTimeoutLAN": self.reconnect_timeout.map(weft_types::duration::format_duration),
            "KVMaxValueSize": self.kv_max_value_size,
            "SessionTTLMin": weft_types::duration::format_duration(self.session_ttl_min),
            "ACLsEnabled": false,
            "ACLResolverSettings": {"ACLDefaultPolicy": self.default_policy.as_str()},
            "ConnectEnabled": true,
            "ConnectCAConfig": self.ca_config.as_ref().map(|_| "set").unwrap_or(""),
            "UIConfig": {"Enabled": self.ui_enabled},
            "Services": self.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "Checks": self.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        })
    }
}

/// Builds a [`RuntimeConfig`] from merged settings; `Err` holds every problem found.
pub(super) fn validate(
    sources: &AgentFlags,
    merged: &Map<String, Value>,
    c: Config,
    defs: Decoded,
) -> Result<RuntimeConfig, Vec<String>> {
    let mut check = Checker {
        c: &c,
        dev: sources.dev,
        errors: Vec::new(),
    };
    let role = check.role();
    let (datacenter, node_name, log_level, log_filter) = check.identity();
    let net = check.network();
    let wan = check.wan(&role, &net);
    let (keyring, rpc_tls, default_policy, acl) = check.security();
    let (ca_config, min_leaf_ttl, root_change_jitter) = check.connect();
    let ca_seal_key = check.ca_seal_key();
    let dns = check.dns(&datacenter, &node_name);
    let coordinate_sync = check.coordinate_sync();
    let check_output_max_size = check.check_output_max_size();
    let limits = limits(&c);
    check.rpc_is_protected(&role, &net, rpc_tls.is_some(), keyring.is_some());
    // Consul only warns; a script check registered through the API runs any program on this host, so without ACLs
    // anyone who reaches the API could. Fail closed.
    if c.enable_script_checks == Some(true) && !acl.enabled {
        check.err(
            "enable_script_checks lets API callers run programs on this host, so it needs ACLs (acl.enabled = true); \
             enable_local_script_checks allows script checks from config files only",
        );
    }
    if !check.errors.is_empty() {
        return Err(check.errors);
    }
    let dev = sources.dev;
    Ok(RuntimeConfig {
        dev,
        server: role.server,
        bootstrap_expect: role.bootstrap_expect,
        datacenter,
        node_name,
        node_id: c.node_id.clone(),
        node_meta: c.node_meta.clone().unwrap_or_default(),
        data_dir: role.data_dir,
        log_level,
        log_filter,
        bind_addr: net.bind_addr,
        advertise_addr: net.advertise_addr,
        client_addr: net.client_addr,
        http_addr: net.http_addr,
        dns_addr: net.dns_addr,
        dns,
        server_port: net.server_port,
        serf_lan_port: net.serf_lan_port,
        serf_lan_advertise: net.serf_lan_advertise,
        retry_join: role.retry_join,
        wan,
        keyring,
        rpc_tls,
        leave_on_terminate: c.leave_on_terminate.unwrap_or(!dev && !role.server),
        reconnect_timeout: c.reconnect_timeout.map(|d| d.0),
        autopilot: {
            let a = c.autopilot.clone().unwrap_or_default();
            let defaults = weft_types::autopilot::AutopilotConfig::default();
            weft_types::autopilot::AutopilotConfig {
                cleanup_dead_servers: a
                    .cleanup_dead_servers
                    .unwrap_or(defaults.cleanup_dead_servers),
                last_contact_threshold: a
                    .last_contact_threshold
                    .map(|d| d.0)
                    .or(defaults.last_contact_threshold),
                max_trailing_logs: a.max_trailing_logs.unwrap_or(defaults.max_trailing_logs),
                min_quorum: a.min_quorum.unwrap_or(defaults.min_quorum),
                server_stabilization_time: a
                    .server_stabilization_time
                    .map(|d| d.0)
                    .or(defaults.server_stabilization_time),
                ..defaults
            }
        },
        kv_max_value_size: limits.kv_max_value_size,
        session_ttl_min: c.session_ttl_min.map_or(Duration::from_secs(10), |d| d.0),
        coordinate_sync,
        http_max_conns_per_client: limits.http_max_conns_per_client,
        http_header_read_timeout: limits.http_header_read_timeout,
        rpc_max_conns_per_client: limits.rpc_max_conns_per_client,
        rpc_handshake_timeout: limits.rpc_handshake_timeout,
        services: defs.services,
        checks: defs.checks,
        ca_config,
        min_leaf_ttl,
        root_change_jitter,
        leaf_idle_expiry: c
            .connect
            .as_ref()
            .and_then(|x| x.leaf_cache_idle_expiry)
            .map_or(weft_agent::DEFAULT_LEAF_IDLE_EXPIRY, |d| d.0),
        locality: c.locality.as_ref().and_then(|l| {
            let region = l.region.clone().unwrap_or_default();
            let zone = l.zone.clone().unwrap_or_default();
            (!region.is_empty() || !zone.is_empty())
                .then_some(weft_types::service::Locality { region, zone })
        }),
        script_checks: weft_agent::ScriptChecks {
            from_api: c.enable_script_checks == Some(true),
            from_config: c.enable_script_checks == Some(true)
                || c.enable_local_script_checks == Some(true),
        },
        check_output_max_size,
        ca_seal_key,
        default_policy,
        acl,
        ui_enabled: c
            .ui_config
            .as_ref()
            .and_then(|u| u.enabled)
            .or(c.ui)
            .unwrap_or(true),
        allowed_hosts: c
            .http_config
            .as_ref()
            .and_then(|h| h.allowed_hosts.clone())
            .unwrap_or_default(),
        allowed_origins: c
            .http_config
            .as_ref()
            .and_then(|h| h.allowed_origins.clone())
            .unwrap_or_default(),
        ignored: ignored_keys(merged),
        sources: sources.clone(),
        encrypt: c.encrypt.clone(),
    })
}

/// What one client or request may cost (`limits`).
struct Limits {
    kv_max_value_size: usize,
    http_max_conns_per_client: usize,
    http_header_read_timeout: Duration,
    rpc_max_conns_per_client: usize,
    rpc_handshake_timeout: Duration,
}

fn limits(c: &Config) -> Limits {
    let l = c.limits.clone().unwrap_or_default();
    Limits {
        kv_max_value_size: l
            .kv_max_value_size
            .or(c.kv_max_value_size)
            .map_or(DEFAULT_KV_MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        http_max_conns_per_client: l
            .http_max_conns_per_client
            .map_or(200, |n| usize::try_from(n.max(1)).unwrap_or(usize::MAX)),
        http_header_read_timeout: l
            .http_header_read_timeout
            .map_or(Duration::from_secs(30), |d| {
                d.0.max(Duration::from_millis(100))
            }),
        rpc_max_conns_per_client: l
            .rpc_max_conns_per_client
            .map_or(100, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        rpc_handshake_timeout: l.rpc_handshake_timeout.map_or(Duration::from_secs(5), |d| {
            d.0.max(Duration::from_millis(100))
        }),
    }
}

/// Checks one merged config, section by section, collecting every problem.
struct Checker<'a> {
    c: &'a Config,
    dev: bool,
    errors: Vec<String>,
}

/// Whether this agent is a server and how it finds the others.
struct Role {
    server: bool,
    bootstrap_expect: u32,
    retry_join: Vec<String>,
    data_dir: Option<PathBuf>,
}

/// Where this agent listens and what it announces.
struct Network {
    bind_addr: IpAddr,
    advertise_addr: IpAddr,
    client_addr: IpAddr,
    http_addr: Option<SocketAddr>,
    dns_addr: Option<SocketAddr>,
    server_port: u16,
    serf_lan_port: u16,
    serf_lan_advertise: Option<SocketAddr>,
}

impl Checker<'_> {
    fn err(&mut self, e: impl Into<String>) {
        self.errors.push(e.into());
    }

    fn role(&mut self) -> Role {
        let (c, dev) = (self.c, self.dev);
        let server = dev || c.server.unwrap_or(false);
        let bootstrap_expect = c.bootstrap_expect.unwrap_or(0);
        if c.bootstrap_expect.is_some() && !server {
            self.err("bootstrap_expect can only be set on servers (add -server)");
        }
        if c.bootstrap_expect == Some(0) {
            self.err("bootstrap_expect must be at least 1");
        }
        if c.bootstrap == Some(true) && bootstrap_expect > 0 {
            self.err("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive");
        }
        let mut retry_join: Vec<String> = c.retry_join.clone().unwrap_or_default();
        retry_join.extend(c.start_join.clone().unwrap_or_default());
        if dev && (bootstrap_expect > 0 || !retry_join.is_empty()) {
            self.err("-dev runs a single in-memory server: it takes neither bootstrap_expect nor retry_join");
        }
        if !dev && !server && retry_join.is_empty() {
            self.err("a client agent needs at least one server to join: pass -retry-join ADDR");
        }
        let data_dir = c
            .data_dir
            .clone()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if !dev && data_dir.is_none() {
            self.err(
                "data_dir cannot be empty: pass -data-dir DIR (or -dev for an in-memory agent)",
            );
        }
        Role {
            server,
            bootstrap_expect,
            retry_join: retry_join
                .iter()
                .map(|a| weft_types::addr::with_default_port(a, weft_gossip::DEFAULT_PORT))
                .collect(),
            data_dir: if dev { None } else { data_dir },
        }
    }

    /// Datacenter, node name, and log level (with its filter).
    fn identity(&mut self) -> (String, String, String, &'static str) {
        let c = self.c;
        let datacenter = c.datacenter.clone().unwrap_or_else(|| "dc1".into());
        if !is_dc_name(&datacenter) {
            self.err(format!(
                "datacenter must be alpha-numeric with underscores and hyphens only: {datacenter:?}"
            ));
        }
        let node_name = c.node_name.clone().unwrap_or_else(hostname);
        if node_name.is_empty() {
            self.err("node name cannot be empty");
        }
        if let Some(id) = c
            .node_id
            .as_ref()
            .filter(|id| !weft_types::ids::is_uuid(id))
        {
            self.err(format!("node ID must be a UUID: {id:?}"));
        }
        let log_level = c.log_level.clone().unwrap_or_else(|| "info".into());
        let log_filter = log_filter(&log_level).unwrap_or_else(|e| {
            self.err(e);
            "info"
        });
        (datacenter, node_name, log_level, log_filter)
    }

    fn ip(&mut self, key: &str, value: &Option<String>, default: IpAddr) -> IpAddr {
        match value {
            None => default,
            Some(text) => match super::sockaddr::template(text) {
                Some(Ok(ip)) => ip,
                Some(Err(e)) => {
                    self.err(format!("{key}: {e}"));
                    default
                }
                None => text.parse().unwrap_or_else(|_| {
                    self.err(format!("{key}: {text:?} is not an IP address"));
                    default
                }),
            },
        }
    }

    /// A port setting: its default when unset, `None` when -1 disables an interface that may be disabled.
    fn port(
        &mut self,
        key: &str,
        value: Option<i32>,
        default: u16,
        may_disable: bool,
    ) -> Option<u16> {
        match value {
            None => Some(default),
            Some(-1) if may_disable => None,
            Some(p) => u16::try_from(p).ok().or_else(|| {
                let or = if may_disable {
                    ", or -1 to disable"
                } else {
                    ""
                };
                self.err(format!("{key}: {p} is not a port (0-65535{or})"));
                None
            }),
        }
    }

    fn network(&mut self) -> Network {
        let c = self.c;
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let bind_addr = self.ip("bind_addr", &c.bind_addr, loopback);
        // Consul's rule for an agent bound to every interface: advertise the host's private address.
        let advertise_addr = match (&c.advertise_addr, bind_addr.is_unspecified()) {
            (None, true) => super::sockaddr::private_ip().unwrap_or_else(|e| {
                self.err(format!(
                    "bind_addr {bind_addr} needs an advertise_addr, and none could be found: {e}"
                ));
                bind_addr
            }),
            _ => self.ip("advertise_addr", &c.advertise_addr, bind_addr),
        };
        let client_addr = self.ip("client_addr", &c.client_addr, loopback);
        let ports = c.ports.clone().unwrap_or_default();
        let addresses = c.addresses.clone().unwrap_or_default();
        let http_ip = self.ip("addresses.http", &addresses.http, client_addr);
        let dns_ip = self.ip("addresses.dns", &addresses.dns, client_addr);
        let http_addr = self.port("ports.http", ports.http, 8500, true);
        let dns_addr = self.port("ports.dns", ports.dns, 8600, true);
        let server_port = self.port("ports.server", ports.server, 8300, false);
        let serf_lan_port = self.port("ports.serf_lan", ports.serf_lan, 8301, false);
        // Interfaces Weft does not serve yet: asking for them is refused rather than silently left without them (an
        // operator who enables HTTPS must not get plain HTTP believing it is encrypted).
        for (key, value) in [
            ("ports.https", ports.https),
            ("ports.grpc", ports.grpc),
            ("ports.grpc_tls", ports.grpc_tls),
        ] {
            if value.is_some_and(|p| p >= 0) {
                self.err(format!(
                    "{key}: this interface is not available in this Weft version (set it to -1 or leave it out)"
                ));
            }
        }
        let advertise_addrs = c.advertise_addrs.clone().unwrap_or_default();
        let serf_lan_advertise = match advertise_addrs.serf_lan.as_deref() {
            None => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.err(format!(
                        "advertise_addrs.serf_lan: {text:?} is not an ip:port address"
                    ));
                    None
                }
            },
        };
        if advertise_addrs.rpc.is_some() {
            self.err("advertise_addrs.rpc: only advertise_addrs.serf_lan and serf_wan are available in this Weft version");
        }
        Network {
            serf_lan_advertise,
            bind_addr,
            advertise_addr,
            client_addr,
            http_addr: http_addr.map(|p| SocketAddr::new(http_ip, p)),
            dns_addr: dns_addr.map(|p| SocketAddr::new(dns_ip, p)),
            server_port: server_port.unwrap_or(8300),
            serf_lan_port: serf_lan_port.unwrap_or(8301),
        }
    }

    /// WAN federation: on servers outside dev mode, when `ports.serf_wan` or `retry_join_wan` asks for it.
    fn wan(&mut self, role: &Role, net: &Network) -> Option<WanSettings> {
        let c = self.c;
        let mut join: Vec<String> = c.retry_join_wan.clone().unwrap_or_default();
        join.extend(c.start_join_wan.clone().unwrap_or_default());
        let port = c.ports.as_ref().and_then(|p| p.serf_wan);
        let advertised = c.advertise_addrs.as_ref().and_then(|a| a.serf_wan.clone());
        if port == Some(-1) {
            if !join.is_empty() {
                self.err(
                    "retry_join_wan: ports.serf_wan is -1, so this server has no WAN pool to join",
                );
            }
            return None;
        }
        if port.is_none() && join.is_empty() {
            if advertised.is_some() {
                self.err(
                    "advertise_addrs.serf_wan: set ports.serf_wan or retry_join_wan to federate",
                );
            }
            return None;
        }
        if !role.server || self.dev {
            self.err(if self.dev {
                "-dev runs a single in-memory server without WAN federation: leave out ports.serf_wan and retry_join_wan"
            } else {
                "ports.serf_wan / retry_join_wan: only servers join the WAN pool (client agents reach other \
                 datacenters through their servers)"
            });
            return None;
        }
        let port = self.port(
            "ports.serf_wan",
            port,
            weft_server::wan::DEFAULT_PORT,
            false,
        )?;
        let advertise = match advertised {
            None => SocketAddr::new(net.advertise_addr, port),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.err(format!(
                        "advertise_addrs.serf_wan: {text:?} is not an ip:port address"
                    ));
                    return None;
                }
            },
        };
        Some(WanSettings {
            bind: SocketAddr::new(net.bind_addr, port),
            advertise,
            join: join
                .iter()
                .map(|a| weft_types::addr::with_default_port(a, weft_server::wan::DEFAULT_PORT))
                .collect(),
        })
    }

    /// The gossip key, TLS for server RPC, the intention default and the ACL settings.
    fn security(
        &mut self,
    ) -> (
        Option<weft_gossip::Keyring>,
        Option<RpcTlsFiles>,
        DefaultPolicy,
        AclSettings,
    ) {
        let c = self.c;
        let keyring = c.encrypt.as_deref().and_then(|k| {
            weft_gossip::Keyring::from_base64(k)
                .map_err(|e| self.err(format!("encrypt: {e}")))
                .ok()
        });
        let rpc_tls = self.rpc_tls();
        let acl = self.acl();
        let policy = match (
            c.default_intention_policy.as_deref(),
            c.acl.as_ref().and_then(|a| a.default_policy.as_ref()),
        ) {
            (None, None) => DefaultPolicy::Allow,
            // Consul let the ACL default decide connections too, and turning ACLs on to deny then cut traffic.
            // Weft keeps them apart; a config that sets only the ACL default must say what it means for
            // connections rather than have the meaning change under it.
            (None, Some(_)) => {
                self.err("acl.default_policy no longer decides connections no intention covers: set default_intention_policy = \"allow\" or \"deny\" as well");
                DefaultPolicy::Deny
            }
            (Some(text), _) => DefaultPolicy::parse(text).unwrap_or_else(|| {
                self.err(format!(
                    "default_intention_policy must be \"allow\" or \"deny\", got {text:?}"
                ));
                DefaultPolicy::Deny
            }),
        };
        let multiplier = c
            .performance
            .as_ref()
            .and_then(|p| p.raft_multiplier)
            .unwrap_or(5);
        if !(1..=10).contains(&multiplier) {
            self.err(format!(
                "performance.raft_multiplier cannot be {multiplier}. Must be between 1 and 10"
            ));
        }
        (keyring, rpc_tls, policy, acl)
    }

    fn acl(&mut self) -> AclSettings {
        let acl = self.c.acl.clone().unwrap_or_default();
        let default_policy = match acl.default_policy.as_deref() {
            None | Some("allow") => DefaultPolicy::Allow,
            Some("deny") => DefaultPolicy::Deny,
            Some(other) => {
                self.err(format!(
                    "acl.default_policy must be \"allow\" or \"deny\", got {other:?}"
                ));
                DefaultPolicy::Deny
            }
        };
        let down_policy = match acl.down_policy.as_deref() {
            None => weft_server::DownPolicy::ExtendCache,
            Some(text) => weft_server::DownPolicy::parse(text).unwrap_or_else(|| {
                self.err(format!("acl.down_policy must be \"allow\", \"deny\", \"extend-cache\" or \"async-cache\", got {text:?}"));
                weft_server::DownPolicy::Deny
            }),
        };
        let tokens = acl.tokens.clone().unwrap_or_default();
        let enabled = acl.enabled.unwrap_or(false);
        if let Some(t) = &tokens.initial_management {
            if !weft_types::ids::is_uuid(t) {
                self.err("acl.tokens.initial_management must be a UUID (weft generates one with `uuidgen` or `cat /proc/sys/kernel/random/uuid`)");
            }
        }
        let min = acl
            .token_min_expiration_ttl
            .map_or(Duration::from_secs(60), |d| d.0);
        let max = acl
            .token_max_expiration_ttl
            .map_or(Duration::from_secs(24 * 3600), |d| d.0);
        if min > max {
            self.err("acl.token_min_expiration_ttl must not exceed acl.token_max_expiration_ttl");
        }
        AclSettings {
            enabled,
            default_policy,
            down_policy,
            token_ttl: acl.token_ttl.map_or(Duration::from_secs(30), |d| d.0),
            enable_key_list_policy: acl.enable_key_list_policy.unwrap_or(false),
            token_min_ttl: min,
            token_max_ttl: max,
            tokens: weft_http::agent_token::AgentTokens {
                default: tokens.default.filter(|t| !t.is_empty()),
                agent: tokens.agent.filter(|t| !t.is_empty()),
                agent_recovery: tokens.agent_recovery.filter(|t| !t.is_empty()),
                replication: tokens.replication.filter(|t| !t.is_empty()),
                config_file_service_registration: tokens
                    .config_file_service_registration
                    .filter(|t| !t.is_empty()),
                dns: None,
            },
            initial_management: tokens.initial_management,
            enable_token_persistence: acl.enable_token_persistence.unwrap_or(false),
        }
    }

    /// `check_output_max_size`: positive (Consul's rule), and at most the 1 MiB any check may keep in Weft.
    fn check_output_max_size(&mut self) -> usize {
        match self.c.check_output_max_size {
            None => 4096,
            Some(n) if n < 1 => {
                self.err(format!("check_output_max_size must be positive, not {n}"));
                4096
            }
            Some(n) if n > 1024 * 1024 => {
                self.err(format!(
                    "check_output_max_size: at most 1048576 (1 MiB) of a check's output is kept, not {n}"
                ));
                4096
            }
            Some(n) => n as usize,
        }
    }

    /// A server's RPC port on an address others can reach must prove who calls it: TLS, or the gossip key's HMAC.
    fn rpc_is_protected(&mut self, role: &Role, net: &Network, tls: bool, key: bool) {
        let exposed = role.server && !self.dev && !net.bind_addr.is_loopback();
        // A keyring file (kept by `weft keyring`) counts as a gossip key, as it does when the agent starts.
        let key = key
            || self.c.data_dir.as_ref().is_some_and(|d| {
                std::path::Path::new(d)
                    .join(weft_gossip::KEYRING_FILE)
                    .exists()
            });
        if exposed && !tls && !key && self.c.allow_unauthenticated_rpc != Some(true) {
            self.err(format!(
                "server RPC would listen on {} with neither TLS nor a gossip key, so anyone who reaches it could write \
                 to the cluster: set `encrypt` (weft keygen) or `tls`, or `allow_unauthenticated_rpc = true` on an \
                 isolated network",
                net.bind_addr
            ));
        }
    }

    /// TLS for server RPC: all three files or none.
    fn rpc_tls(&mut self) -> Option<RpcTlsFiles> {
        let c = self.c;
        let tls = c.tls.clone().unwrap_or_default();
        let sections = [
            tls.defaults.unwrap_or_default(),
            tls.internal_rpc.unwrap_or_default(),
        ];
        let pick = |legacy: &Option<String>, get: fn(&TlsSection) -> &Option<String>| {
            sections
                .iter()
                .rev()
                .find_map(|s| get(s).clone())
                .or_else(|| legacy.clone())
        };
        let pem = |file: Option<String>, key: &str, get: fn(&TlsSection) -> &Option<String>| {
            let inline = sections.iter().rev().find_map(|s| get(s).clone());
            match (file, inline) {
                (Some(_), Some(_)) => Err(format!(
                    "tls: {key}_file and {key}_pem both name the {key}: set one"
                )),
                (Some(f), None) => Ok(Some(weft_server::Pem::File(f.into()))),
                (None, Some(text)) => Ok(Some(weft_server::Pem::Inline {
                    setting: format!("tls {key}_pem"),
                    text,
                })),
                (None, None) => Ok(None),
            }
        };
        let found = [
            pem(pick(&c.ca_file, |s| &s.ca_file), "ca", |s| &s.ca_pem),
            pem(pick(&c.cert_file, |s| &s.cert_file), "cert", |s| {
                &s.cert_pem
            }),
            pem(pick(&c.key_file, |s| &s.key_file), "key", |s| &s.key_pem),
        ];
        let mut parts = Vec::new();
        for part in found {
            match part {
                Ok(p) => parts.push(p),
                Err(e) => {
                    self.err(e);
                    return None;
                }
            }
        }
        let verify_incoming = sections
            .iter()
            .rev()
            .find_map(|s| s.verify_incoming)
            .or(c.verify_incoming)
            .unwrap_or(true);
        match <[Option<weft_server::Pem>; 3]>::try_from(parts) {
            Ok([None, None, None]) => None,
            // Dev mode has no server RPC to protect.
            Ok([Some(_), Some(_), Some(_)]) if self.dev => None,
            Ok([Some(ca), Some(cert), Some(key)]) => Some(RpcTlsFiles {
                ca,
                cert,
                key,
                verify_incoming,
            }),
            _ => {
                self.err("tls: the CA, the certificate and the key go together (server RPC TLS needs all three, each as a _file or a _pem)");
                None
            }
        }
    }

    /// The CA configuration, the shortest leaf TTL accepted and how soon leaves follow a root rotation.
    fn connect(&mut self) -> (Option<weft_ca::CaConfig>, Duration, Duration) {
        // Dev mode accepts leaf TTLs of a few seconds, so renewal can be watched (and tested) for real; a cluster
        // keeps Consul's 1 h minimum.
        let min_leaf_ttl = Duration::from_secs(if self.dev { 2 } else { 3600 });
        let connect = self.c.connect.clone().unwrap_or_default();
        if connect.enabled == Some(false) {
            self.err("connect.enabled = false: Weft's mesh cannot be turned off (its CA and sidecars are the point)");
        }
        let ca_config = connect.ca_config.as_ref().and_then(|ca| {
            let wire = weft_ca::CaConfigWire {
                config: ca.clone(),
                ..Default::default()
            };
            weft_ca::CaConfig::from_wire(&wire, &weft_ca::CaConfig::default(), min_leaf_ttl)
                .map_err(|e| self.err(format!("connect.ca_config: {e}")))
                .ok()
        });
        let jitter = connect
            .leaf_root_change_jitter
            .map_or(Duration::from_secs(30), |d: GoDuration| d.0);
        (ca_config, min_leaf_ttl, jitter)
    }

    /// How often this agent sends its network coordinate.
    fn coordinate_sync(&mut self) -> weft_agent::coordinates::CoordinateSync {
        let base = weft_agent::coordinates::CoordinateSync::default();
        let rate = self
            .c
            .sync_coordinate_rate_target
            .unwrap_or(base.rate_target);
        if !(rate.is_finite() && rate > 0.0) {
            self.err(format!(
                "sync_coordinate_rate_target: {rate} must be a positive number of updates per second"
            ));
        }
        weft_agent::coordinates::CoordinateSync {
            interval_min: self
                .c
                .sync_coordinate_interval_min
                .map_or(base.interval_min, |d| d.0),
            rate_target: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                base.rate_target
            },
        }
    }

    /// `dns_config`, `domain`, `alt_domain` and `recursors` (IP addresses, port 53 unless given).
    fn dns(&mut self, datacenter: &str, node_name: &str) -> weft_dns::DnsConfig {
        let c = self.c;
        let d = c.dns_config.clone().unwrap_or_default();
        let base = weft_dns::DnsConfig::default();
        let secs = |d: GoDuration| u32::try_from(d.0.as_secs()).unwrap_or(u32::MAX);
        let mut recursors = Vec::new();
        for r in c.recursors.iter().flatten() {
            let parsed = r
                .parse::<SocketAddr>()
                .or_else(|_| r.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            match parsed {
                Ok(addr) => recursors.push(addr),
                Err(_) => self.err(format!(
                    "recursors: {r:?} is not an IP address (with an optional :port)"
                )),
            }
        }
        let domain = |key: &str, value: &Option<String>, this: &mut Self| {
            let v = value.as_deref()?;
            let normal = weft_dns::DnsConfig::normalise_domain(v);
            if normal == "." || normal.split('.').any(|l| l.len() > 63) {
                this.err(format!("{key}: {v:?} is not a domain"));
                return None;
            }
            Some(normal)
        };
        let soa = d.soa.clone().unwrap_or_default();
        weft_dns::DnsConfig {
            domain: domain("domain", &c.domain, self).unwrap_or(base.domain),
            alt_domain: domain("alt_domain", &c.alt_domain, self),
            datacenter: datacenter.to_string(),
            node_name: node_name.to_string(),
            node_ttl: d.node_ttl.map_or(base.node_ttl, secs),
            service_ttl: d.service_ttl.map_or(base.service_ttl, |m| {
                m.into_iter().map(|(k, v)| (k, secs(v))).collect()
            }),
            only_passing: d.only_passing.unwrap_or(base.only_passing),
            allow_stale: d.allow_stale.unwrap_or(base.allow_stale),
            max_stale: d.max_stale.map_or(base.max_stale, |d| d.0),
            enable_truncate: d.enable_truncate.unwrap_or(base.enable_truncate),
            udp_answer_limit: d
                .udp_answer_limit
                .map_or(base.udp_answer_limit, |n| n as usize),
            a_record_limit: d.a_record_limit.map_or(base.a_record_limit, |n| n as usize),
            node_meta_txt: d
                .enable_additional_node_meta_txt
                .unwrap_or(base.node_meta_txt),
            disable_compression: d.disable_compression.unwrap_or(base.disable_compression),
            soa: weft_dns::Soa {
                refresh: soa.refresh.unwrap_or(base.soa.refresh),
                retry: soa.retry.unwrap_or(base.soa.retry),
                expire: soa.expire.unwrap_or(base.soa.expire),
                min_ttl: soa.min_ttl.unwrap_or(base.soa.min_ttl),
            },
            recursors,
            recursor_timeout: d.recursor_timeout.map_or(base.recursor_timeout, |d| d.0),
        }
    }

    /// `connect.ca_seal_key_file`: read now, so a missing or malformed key stops the start (and `weft validate`).
    fn ca_seal_key(&mut self) -> Option<weft_ca::seal::SealKey> {
        let path = self.c.connect.as_ref()?.ca_seal_key_file.clone()?;
        match weft_server::read_seal_key(std::path::Path::new(&path)) {
            Ok(Some(key)) => Some(key),
            Ok(None) => {
                self.err(format!(
                    "connect.ca_seal_key_file: {path} does not exist (create it with `weft keygen > {path}`, mode 0600)"
                ));
                None
            }
            Err(e) => {
                self.err(format!("connect.ca_seal_key_file: {e}"));
                None
            }
        }
    }
}

fn is_dc_name(dc: &str) -> bool {
    !dc.is_empty()
        && dc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}

/// The tracing filter for a Consul log level name.
pub fn log_filter(level: &str) -> Result<&'static str, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" | "" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        other => {
            return Err(format!(
                "log_level: invalid level {other:?} (use trace, debug, info, warn or err)"
            ))
        }
    })
}

/// The settings Weft applies (a key, or a block all of whose keys it applies). Every other key that is set is
/// accepted for Consul compatibility, changes nothing in Weft yet, and is logged as such at start: each is harmless to
/// leave unapplied, since the settings whose absence would weaken security are refused in [`validate`] instead.
const APPLIED: &[&str] = &[
    "datacenter",
    "node_name",
    "node_id",
    "node_meta",
    "server",
    "bootstrap",
    "bootstrap_expect",
    "retry_join",
    "start_join",
    "retry_join_wan",
    "start_join_wan",
    "advertise_addrs.serf_wan",
    "bind_addr",
    "advertise_addr",
    "advertise_addrs.serf_lan",
    "client_addr",
    "addresses.http",
    "ports.http",
    "ports.server",
    "ports.serf_lan",
    "ports.https",
    "ports.grpc",
    "ports.grpc_tls",
    "ports.serf_wan",
    "data_dir",
    "log_level",
    "encrypt",
    "tls.defaults.ca_file",
    "tls.defaults.cert_file",
    "tls.defaults.key_file",
    "tls.defaults.verify_incoming",
    "tls.internal_rpc.ca_file",
    "tls.internal_rpc.cert_file",
    "tls.internal_rpc.key_file",
    "tls.internal_rpc.verify_incoming",
    "ca_file",
    "cert_file",
    "key_file",
    "verify_incoming",
    "limits.kv_max_value_size",
    "limits.http_max_conns_per_client",
    "limits.http_header_read_timeout",
    "limits.rpc_max_conns_per_client",
    "limits.rpc_handshake_timeout",
    "kv_max_value_size",
    "session_ttl_min",
    "sync_coordinate_interval_min",
    "sync_coordinate_rate_target",
    "leave_on_terminate",
    "reconnect_timeout",
    "autopilot.server_stabilization_time",
    "autopilot.cleanup_dead_servers",
    "autopilot.last_contact_threshold",
    "autopilot.max_trailing_logs",
    "autopilot.min_quorum",
    "ui",
    "ui_config.enabled",
    "acl.enabled",
    "acl.default_policy",
    "acl.down_policy",
    "acl.token_ttl",
    "acl.enable_key_list_policy",
    "acl.token_min_expiration_ttl",
    "acl.token_max_expiration_ttl",
    "acl.tokens.initial_management",
    "acl.tokens.master",
    "acl.tokens.default",
    "acl.tokens.agent",
    "acl.tokens.agent_recovery",
    "acl.tokens.agent_master",
    "acl.enable_token_persistence",
    "default_intention_policy",
    "enable_script_checks",
    "locality",
    "locality.region",
    "locality.zone",
    "enable_local_script_checks",
    "check_output_max_size",
    "connect.enabled",
    "connect.ca_config",
    "connect.leaf_root_change_jitter",
    "connect.leaf_cache_idle_expiry",
    "connect.ca_seal_key_file",
    "ports.dns",
    "addresses.dns",
    "domain",
    "alt_domain",
    "recursors",
    "dns_config.allow_stale",
    "dns_config.max_stale",
    "dns_config.node_ttl",
    "dns_config.service_ttl",
    "dns_config.only_passing",
    "dns_config.udp_answer_limit",
    "dns_config.a_record_limit",
    "dns_config.enable_truncate",
    "dns_config.recursor_timeout",
    "dns_config.enable_additional_node_meta_txt",
    "dns_config.disable_compression",
    "dns_config.soa",
    "allow_unauthenticated_rpc",
    "http_config.allowed_hosts",
    "http_config.allowed_origins",
];

/// The keys set in `merged` that Weft does not apply (see [`APPLIED`]), as dotted paths.
fn ignored_keys(merged: &Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, map: &Map<String, Value>, out: &mut Vec<String>) {
        for (key, value) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if APPLIED.contains(&path.as_str()) {
                continue;
            }
            match value {
                Value::Object(inner)
                    if APPLIED.iter().any(|a| a.starts_with(&format!("{path}."))) =>
                {
                    walk(&path, inner, out)
                }
                _ => out.push(path),
            }
        }
    }
    let mut out = Vec::new();
    walk("", merged, &mut out);
    out
}
