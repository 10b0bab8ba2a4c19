//! The agent's configuration file schema: Consul's keys, one struct per block, every field optional.
//!
//! JSON and HCL files, `-hcl` fragments and the command line's flags all decode into [`Config`]; the builder merges
//! them and [`RuntimeConfig`](super::RuntimeConfig) fills in defaults and checks the result. Every struct refuses
//! keys it does not know (Consul does too): a misspelt key is a start-up error, never a silently ignored setting.
//! Keys Consul has but Weft does not act on yet are accepted where they are harmless to ignore (they are listed in
//! [`super::runtime`]'s warnings), never where ignoring them would weaken security.

// Many fields are only ever read by serde: the schema is Consul's whole, so that a file Consul accepts is accepted
// and a misspelt key is not. What Weft applies is read in `runtime.rs`; the rest is reported there as ignored.
#![allow(dead_code)]

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// One configuration source, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub datacenter: Option<String>,
    pub primary_datacenter: Option<String>,
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub node_meta: Option<BTreeMap<String, String>>,
    pub locality: Option<Locality>,
    pub server: Option<bool>,
    pub bootstrap: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub retry_join: Option<Vec<String>>,
    /// `start_join`: Consul's older spelling; joined like `retry_join`.
    pub start_join: Option<Vec<String>>,
    /// Other datacenters' servers to join in the WAN pool (servers only; port 8302 unless given).
    pub retry_join_wan: Option<Vec<String>>,
    /// `start_join_wan`: the older spelling, joined like `retry_join_wan`.
    pub start_join_wan: Option<Vec<String>>,
    pub retry_interval: Option<GoDuration>,
    pub retry_max: Option<u32>,
    pub rejoin_after_leave: Option<bool>,
    pub bind_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub client_addr: Option<String>,
    pub addresses: Option<Addresses>,
    pub advertise_addrs: Option<AdvertiseAddrs>,
    pub ports: Option<Ports>,
    pub data_dir: Option<String>,
    pub log_level: Option<String>,
    pub log_json: Option<bool>,
    pub encrypt: Option<String>,
    pub encrypt_verify_incoming: Option<bool>,
    pub encrypt_verify_outgoing: Option<bool>,
    pub tls: Option<Tls>,
    /// Consul's pre-1.12 top-level TLS keys; the same as `tls.defaults`.
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub auto_encrypt: Option<AutoEncrypt>,
    pub limits: Option<Limits>,
    /// Older spelling of `limits.kv_max_value_size`.
    pub kv_max_value_size: Option<u64>,
    pub session_ttl_min: Option<GoDuration>,
    /// Shortest interval between an agent's coordinate updates (Consul: 15 s).
    pub sync_coordinate_interval_min: Option<GoDuration>,
    /// Coordinate updates per second the whole cluster aims at (Consul: 64): agents space theirs out by the
    /// node count.
    pub sync_coordinate_rate_target: Option<f64>,
    pub performance: Option<Performance>,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub reconnect_timeout: Option<GoDuration>,
    pub autopilot: Option<Autopilot>,
    pub ui: Option<bool>,
    pub ui_config: Option<UiConfig>,
    pub services: Option<OneOrMany<Value>>,
    pub service: Option<OneOrMany<Value>>,
    pub checks: Option<OneOrMany<Value>>,
    pub check: Option<OneOrMany<Value>>,
    pub acl: Option<Acl>,
    /// What connections no intention covers get (Consul 1.20's key). Weft keeps it apart from `acl.default_policy`.
    pub default_intention_policy: Option<String>,
    pub dns_config: Option<DnsConfig>,
    pub recursors: Option<Vec<String>>,
    pub domain: Option<String>,
    pub alt_domain: Option<String>,
    pub connect: Option<Connect>,
    pub enable_script_checks: Option<bool>,
    pub enable_local_script_checks: Option<bool>,
    pub check_output_max_size: Option<i64>,
    pub disable_remote_exec: Option<bool>,
    pub enable_central_service_config: Option<bool>,
    pub disable_update_check: Option<bool>,
    pub http_config: Option<HttpConfig>,
    pub telemetry: Option<Telemetry>,
    /// Weft's own: lets a server listen for RPC on a non-loopback address with neither TLS nor a gossip key, so
    /// that anyone who reaches the port can speak Raft and forward writes. Unsafe; for isolated test networks.
    pub allow_unauthenticated_rpc: Option<bool>,
}

/// `addresses`: per-interface bind addresses (default: `client_addr`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    pub http: Option<String>,
    pub https: Option<String>,
    pub dns: Option<String>,
    pub grpc: Option<String>,
    pub grpc_tls: Option<String>,
}

/// `advertise_addrs`: what an interface announces when it differs from `advertise_addr` and its port (behind NAT
/// or a relay), as `ip:port`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvertiseAddrs {
    pub serf_lan: Option<String>,
    pub serf_wan: Option<String>,
    pub rpc: Option<String>,
}

/// `ports`: -1 disables an interface, as in Consul.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<i32>,
    pub https: Option<i32>,
    pub dns: Option<i32>,
    pub grpc: Option<i32>,
    pub grpc_tls: Option<i32>,
    pub server: Option<i32>,
    pub serf_lan: Option<i32>,
    pub serf_wan: Option<i32>,
    pub sidecar_min_port: Option<i32>,
    pub sidecar_max_port: Option<i32>,
    pub expose_min_port: Option<i32>,
    pub expose_max_port: Option<i32>,
}

/// `tls`: `defaults` apply to every interface unless the interface's own block says otherwise.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub defaults: Option<TlsSection>,
    pub internal_rpc: Option<TlsSection>,
    pub https: Option<TlsSection>,
    pub grpc: Option<TlsSection>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Weft's: the PEM text itself instead of a file (ECS and other platforms pass secrets as environment).
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<String>,
    pub use_auto_cert: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoEncrypt {
    pub tls: Option<bool>,
    pub allow_tls: Option<bool>,
    pub dns_san: Option<Vec<String>>,
    pub ip_san: Option<Vec<String>>,
}

/// `limits`: what one client or one request may cost the agent.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub http_max_conns_per_client: Option<u32>,
    /// Weft's own: how long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection is kept (Go's `ReadHeaderTimeout`; 30 s).
    pub http_header_read_timeout: Option<GoDuration>,
    pub rpc_max_conns_per_client: Option<u32>,
    pub rpc_handshake_timeout: Option<GoDuration>,
    pub rpc_rate: Option<f64>,
    pub rpc_max_burst: Option<u32>,
    pub kv_max_value_size: Option<u64>,
    pub txn_max_req_len: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    pub raft_multiplier: Option<u32>,
    pub leave_drain_time: Option<GoDuration>,
    pub rpc_hold_timeout: Option<GoDuration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    pub region: Option<String>,
    pub zone: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autopilot {
    pub cleanup_dead_servers: Option<bool>,
    pub last_contact_threshold: Option<GoDuration>,
    pub max_trailing_logs: Option<u64>,
    pub min_quorum: Option<u32>,
    pub server_stabilization_time: Option<GoDuration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    pub enabled: Option<bool>,
    pub dir: Option<String>,
    pub content_path: Option<String>,
    pub metrics_provider: Option<String>,
    pub metrics_provider_files: Option<Vec<String>>,
    pub metrics_provider_options_json: Option<String>,
    pub metrics_proxy: Option<Map<String, Value>>,
    pub dashboard_url_templates: Option<BTreeMap<String, String>>,
}

/// `acl`: tokens, policies and roles enforced on every route.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub enabled: Option<bool>,
    pub default_policy: Option<String>,
    pub down_policy: Option<String>,
    pub enable_token_persistence: Option<bool>,
    pub enable_key_list_policy: Option<bool>,
    pub token_ttl: Option<GoDuration>,
    pub policy_ttl: Option<GoDuration>,
    pub role_ttl: Option<GoDuration>,
    pub token_min_expiration_ttl: Option<GoDuration>,
    pub token_max_expiration_ttl: Option<GoDuration>,
    pub tokens: Option<AclTokens>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokens {
    #[serde(alias = "master")]
    pub initial_management: Option<String>,
    pub agent: Option<String>,
    #[serde(alias = "agent_master")]
    pub agent_recovery: Option<String>,
    pub default: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    pub allow_stale: Option<bool>,
    pub max_stale: Option<GoDuration>,
    pub node_ttl: Option<GoDuration>,
    pub service_ttl: Option<BTreeMap<String, GoDuration>>,
    pub only_passing: Option<bool>,
    pub udp_answer_limit: Option<u32>,
    pub a_record_limit: Option<u32>,
    pub enable_truncate: Option<bool>,
    pub recursor_timeout: Option<GoDuration>,
    pub recursor_strategy: Option<String>,
    pub use_cache: Option<bool>,
    pub cache_max_age: Option<GoDuration>,
    pub disable_compression: Option<bool>,
    pub enable_additional_node_meta_txt: Option<bool>,
    pub soa: Option<Soa>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soa {
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub min_ttl: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    pub enabled: Option<bool>,
    pub ca_provider: Option<String>,
    /// The CA's own keys (`leaf_cert_ttl`, `root_cert_ttl`, ...), checked by the CA configuration's decoder.
    pub ca_config: Option<Map<String, Value>>,
    /// How soon leaves follow a root rotation (Consul: within 30 s).
    pub leaf_root_change_jitter: Option<GoDuration>,
    /// Weft's own: how long the agent keeps (and renews) a leaf certificate nobody asks for (Consul's cache: 3 days).
    pub leaf_cache_idle_expiry: Option<GoDuration>,
    /// Weft's own: a file holding the key that seals the CA's private keys at rest (`weft keygen` output), the
    /// same on every server; without it each server keeps the cluster's key in its data dir.
    pub ca_seal_key_file: Option<String>,
    pub enable_mesh_gateway_wan_federation: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Weft's own: host names (besides IP addresses, `localhost` and the node name) the API may be reached by.
    pub allowed_hosts: Option<Vec<String>>,
    /// Weft's own: origins whose pages may write through a browser (the agent's own origin always may).
    pub allowed_origins: Option<Vec<String>>,
    pub response_headers: Option<BTreeMap<String, String>>,
    pub allow_write_http_from: Option<Vec<String>>,
    pub use_cache: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub disable_hostname: Option<bool>,
    pub prometheus_retention_time: Option<GoDuration>,
    pub statsd_address: Option<String>,
    pub dogstatsd_addr: Option<String>,
    pub metrics_prefix: Option<String>,
}

/// A Go duration string (`"10s"`, `"1h30m"`), as Consul's config files write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        weft_types::duration::parse_duration(&text)
            .map(GoDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// A value or a list of them: HCL writes one `service { }` block as an object and several as a list, and JSON
/// files use either `service` or `services`.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Many(Vec<T>),
            One(T),
        }
        Ok(match Either::deserialize(d)? {
            Either::Many(v) => OneOrMany(v),
            Either::One(v) => OneOrMany(vec![v]),
        })
    }
}
