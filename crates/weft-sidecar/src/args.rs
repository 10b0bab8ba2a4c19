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
    /// A file holding the ACL token (also WEFT_HTTP_TOKEN_FILE or CONSUL_HTTP_TOKEN_FILE): keeps it out of the
    /// command line and the environment.
    #[arg(long = "token-file")]
    pub token_file: Option<String>,
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
        self.given_addr().unwrap_or_else(|| "127.0.0.1:8500".into())
    }

    /// The agent's address when the operator named one (flag or environment).
    pub fn given_addr(&self) -> Option<String> {
        self.http_addr
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| env(&["WEFT_HTTP_ADDR", "CONSUL_HTTP_ADDR"]))
    }

    /// Consul's order: `-token`, `-token-file`, then WEFT_HTTP_TOKEN / CONSUL_HTTP_TOKEN, then WEFT_HTTP_TOKEN_FILE /
    /// CONSUL_HTTP_TOKEN_FILE. A token file that cannot be read is an error, never "no token".
    pub fn token(&self) -> Result<Option<String>, TokenFileError> {
        if let Some(t) = self.token.clone().filter(|t| !t.is_empty()) {
            return Ok(Some(t));
        }
        if let Some(path) = &self.token_file {
            return read_token_file(path).map(Some);
        }
        if let Some(t) = env(&["WEFT_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"]) {
            return Ok(Some(t));
        }
        match env(&["WEFT_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"]) {
            Some(path) => read_token_file(&path).map(Some),
            None => Ok(None),
        }
    }
}

/// A token file that gives no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    Empty(String),
}

/// The token in `path`: its first line, trimmed (a file of at most 4 KiB).
fn read_token_file(path: &str) -> Result<String, TokenFileError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|source| TokenFileError::Unreadable {
            path: path.to_string(),
            source,
        })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.to_string()));
    }
    Ok(token)
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
    /// Register the application defined in FILE (a service definition with `connect.sidecar_service`; or the
    /// definition itself, when the value starts with `{`) and run as its sidecar: the task's address fills an empty
    /// `address`, the proxy reports whether it can reach the application, and both registrations are removed when
    /// the proxy stops. Under Amazon ECS ($ECS_CONTAINER_METADATA_URI_V4 set) the task's address, ID and zone
    /// come from the task metadata and the agent is the container instance's unless -http-addr names one.
    #[arg(long = "register-service", value_name = "FILE")]
    pub register_service: Option<String>,
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
    /// Without -http and -tcp, the listeners come from the `ingress-gateway` config entry named after -service and
    /// follow its changes; they listen on this IP (default 0.0.0.0).
    #[arg(long)]
    pub address: Option<String>,
    /// Register the gateway with the local agent (Kind ingress-gateway).
    #[arg(long)]
    pub register: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags(token: Option<&str>, file: Option<&std::path::Path>) -> AgentFlags {
        AgentFlags {
            token: token.map(str::to_string),
            token_file: file.map(|f| f.to_string_lossy().into_owned()),
            ..AgentFlags::default()
        }
    }

    #[test]
    fn token_comes_from_the_flag_then_the_file_and_a_bad_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("weft-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  from-file \nignored\n").unwrap();
        assert_eq!(
            flags(Some("flag"), Some(&file)).token().unwrap().as_deref(),
            Some("flag")
        );
        assert_eq!(
            flags(None, Some(&file)).token().unwrap().as_deref(),
            Some("from-file")
        );
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            flags(None, Some(&file)).token(),
            Err(TokenFileError::Empty(_))
        ));
        let missing = dir.join("missing");
        assert!(matches!(
            flags(None, Some(&missing)).token(),
            Err(TokenFileError::Unreadable { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
