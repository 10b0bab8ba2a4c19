//! `weft agent`'s flags. Most are configuration keys written on the command line: they become one more source,
//! merged after every file, so a flag beats a file and a file beats a default.

use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
pub struct AgentFlags {
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
    /// Another datacenter's server to join in the WAN pool (host or host:port, port 8302 by default); repeatable.
    #[arg(long = "retry-join-wan", alias = "join-wan")]
    pub retry_join_wan: Vec<String>,
    /// The WAN gossip port of a server (WAN federation runs only when this or -retry-join-wan is given).
    #[arg(long = "serf-wan-port", allow_negative_numbers = true)]
    pub serf_wan_port: Option<i32>,
    /// The gossip (serf LAN) port (default 8301).
    #[arg(long = "serf-lan-port")]
    pub serf_lan_port: Option<i32>,
    /// Encrypts gossip with this key (base64 of 16 or 32 bytes; `weft keygen` makes one).
    #[arg(long)]
    pub encrypt: Option<String>,
    /// Reads the gossip key from this file instead (keeps it out of `ps` and shell history).
    #[arg(long = "encrypt-file")]
    pub encrypt_file: Option<PathBuf>,
    /// The server RPC port (default 8300).
    #[arg(long = "server-port")]
    pub server_port: Option<i32>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long = "node-id")]
    pub node_id: Option<String>,
    /// Node metadata as key:value (repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    #[arg(long)]
    pub datacenter: Option<String>,
    /// Address for cluster communication (default 127.0.0.1).
    #[arg(long)]
    pub bind: Option<String>,
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address the HTTP API listens on (default 127.0.0.1).
    #[arg(long)]
    pub client: Option<String>,
    /// HTTP API port (default 8500; 0 picks a free one, -1 disables it).
    #[arg(long = "http-port", allow_negative_numbers = true)]
    pub http_port: Option<i32>,
    /// DNS port, UDP and TCP (default 8600; 0 picks a free one, -1 disables it).
    #[arg(long = "dns-port", allow_negative_numbers = true)]
    pub dns_port: Option<i32>,
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
    /// A config file, JSON or HCL (repeatable; later files win).
    #[arg(long = "config-file")]
    pub config_file: Vec<PathBuf>,
    /// A directory of .json and .hcl config files, read in lexical order (repeatable).
    #[arg(long = "config-dir")]
    pub config_dir: Vec<PathBuf>,
    /// The format of config files whose name ends in neither .json nor .hcl: json or hcl.
    #[arg(long = "config-format")]
    pub config_format: Option<String>,
    /// A fragment of HCL configuration, read after the files (repeatable).
    #[arg(long)]
    pub hcl: Vec<String>,
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// The DNS domain (default consul).
    #[arg(long)]
    pub domain: Option<String>,
    /// A second DNS domain answered like the first.
    #[arg(long = "alt-domain")]
    pub alt_domain: Option<String>,
    /// An upstream DNS server for names outside the domain (IP[:port], repeatable).
    #[arg(long)]
    pub recursor: Vec<String>,
    /// Serves the dashboard (it is served unless ui_config.enabled is false).
    #[arg(long)]
    pub ui: bool,
}

impl AgentFlags {
    /// The flags that are configuration keys, as a configuration source.
    pub fn to_source(&self) -> Result<Value, String> {
        let mut map = Map::new();
        let mut set = |key: &str, value: Value| {
            map.insert(key.to_string(), value);
        };
        if self.server {
            set("server", json!(true));
        }
        if let Some(n) = self.bootstrap_expect {
            set("bootstrap_expect", json!(n));
        }
        if !self.retry_join.is_empty() {
            set("retry_join", json!(self.retry_join));
        }
        if !self.retry_join_wan.is_empty() {
            set("retry_join_wan", json!(self.retry_join_wan));
        }
        for (key, value) in [
            ("encrypt", &self.encrypt),
            ("node_name", &self.node),
            ("node_id", &self.node_id),
            ("datacenter", &self.datacenter),
            ("bind_addr", &self.bind),
            ("advertise_addr", &self.advertise),
            ("client_addr", &self.client),
            ("data_dir", &self.data_dir),
            ("log_level", &self.log_level),
            ("domain", &self.domain),
            ("alt_domain", &self.alt_domain),
        ] {
            if let Some(v) = value {
                set(key, json!(v));
            }
        }
        if let Some(path) = &self.encrypt_file {
            if self.encrypt.is_some() {
                return Err("-encrypt and -encrypt-file both give the gossip key: use one".into());
            }
            let key = std::fs::read_to_string(path)
                .map_err(|e| format!("-encrypt-file: {}: {e}", path.display()))?;
            set("encrypt", json!(key.trim()));
        }
        if !self.recursor.is_empty() {
            set("recursors", json!(self.recursor));
        }
        if self.ui {
            set("ui_config", json!({"enabled": true}));
        }
        let mut ports = Map::new();
        for (key, value) in [
            ("http", self.http_port),
            ("dns", self.dns_port),
            ("server", self.server_port),
            ("serf_lan", self.serf_lan_port),
            ("serf_wan", self.serf_wan_port),
        ] {
            if let Some(p) = value {
                ports.insert(key.into(), json!(p));
            }
        }
        if !ports.is_empty() {
            set("ports", Value::Object(ports));
        }
        if !self.node_meta.is_empty() {
            let mut meta = Map::new();
            for pair in &self.node_meta {
                let (k, v) = pair
                    .split_once(':')
                    .ok_or_else(|| format!("-node-meta: {pair:?} is not key:value"))?;
                meta.insert(k.to_string(), json!(v));
            }
            set("node_meta", Value::Object(meta));
        }
        Ok(Value::Object(map))
    }
}
