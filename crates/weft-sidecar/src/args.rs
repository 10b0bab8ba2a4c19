//! The flags of `connect proxy` and `connect ingress`, as Consul spells them (Go-style single dashes are rewritten
//! by `weft_types::flags::normalize` before clap sees them).

use clap::{Args, Subcommand};

/// The commands this crate runs.
#[derive(Subcommand, Debug)]
pub enum ConnectCmd {
    /// Runs a sidecar proxy: mutual TLS in and out, under intentions.
    Proxy(ProxyArgs),
    /// Runs an ingress gateway: plain HTTP/TCP from outside, mutual TLS into the mesh under intentions.
    Ingress(IngressArgs),
}

/// How to reach the local agent: Consul's HTTP API flags.
#[derive(Args, Debug, Clone, Default)]
pub struct AgentFlags {
    /// The agent's HTTP address (also WEFT_HTTP_ADDR or CONSUL_HTTP_ADDR).
    #[arg(long = "http-addr")]
    pub http_addr: Option<String>,
    /// ACL token (also WEFT_HTTP_TOKEN or CONSUL_HTTP_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Datacenter to query (default: the agent's; a proxy always serves its agent's).
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Allow any server to answer reads.
    #[arg(long)]
    pub stale: bool,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl AgentFlags {
    /// `-http-addr`, else WEFT_HTTP_ADDR, else CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
    pub fn addr(&self) -> String {
        self.http_addr
            .clone()
            .or_else(|| env(&["WEFT_HTTP_ADDR", "CONSUL_HTTP_ADDR"]))
            .unwrap_or_else(|| "127.0.0.1:8500".into())
    }

    /// `-token`, else WEFT_HTTP_TOKEN, else CONSUL_HTTP_TOKEN.
    pub fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| env(&["WEFT_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"]))
    }
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub agent: AgentFlags,
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
    #[command(flatten)]
    pub run: RunFlags,
}

/// What every long-running proxy takes: logging, the drain on SIGTERM, metrics.
#[derive(Args, Debug)]
pub struct RunFlags {
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// How long open connections may finish after SIGTERM.
    #[arg(long = "drain-timeout", default_value = "10s")]
    pub drain_timeout: String,
    /// Serve Prometheus metrics (refusals by reason, connections) at http://ADDR/metrics.
    #[arg(long = "metrics-addr", value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

#[derive(Args, Debug)]
pub struct IngressArgs {
    #[command(flatten)]
    pub agent: AgentFlags,
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
    #[command(flatten)]
    pub run: RunFlags,
}
