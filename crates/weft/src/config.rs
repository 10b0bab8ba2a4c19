//! Agent configuration: flags, JSON config files and config directories merged into one validated runtime config,
//! built once and passed down (nothing reads files or the environment deeper in).
//!
//! Files merge in order (a directory's `*.json` files alphabetically): later scalars win, `services` and `checks`
//! lists append, as in Consul. Flags override files. Keys are Consul's snake_case names; service and check entries
//! accept every spelling the HTTP API does.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_types::lenient::decode_value;
use weft_types::{CheckDefinition, ServiceDefinition};

/// Certificate files for server RPC.
#[derive(Debug, Default, Clone)]
pub struct TlsFiles {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub verify_incoming: Option<bool>,
}

impl TlsFiles {
    fn merge(&mut self, map: &Map<String, Value>) -> Result<()> {
        for (key, slot) in [
            ("ca_file", &mut self.ca_file),
            ("cert_file", &mut self.cert_file),
            ("key_file", &mut self.key_file),
        ] {
            if let Some(v) = string(map, key)? {
                *slot = Some(v);
            }
        }
        if let Some(v) = map.get("verify_incoming") {
            self.verify_incoming = Some(
                v.as_bool()
                    .context("verify_incoming must be true or false")?,
            );
        }
        Ok(())
    }
}

/// What config files can set.
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    pub datacenter: Option<String>,
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub bind_addr: Option<String>,
    pub client_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub data_dir: Option<String>,
    pub log_level: Option<String>,
    pub http_port: Option<u16>,
    /// `ports.server`: the server RPC port.
    pub server_port: Option<u16>,
    /// `ports.serf_lan`: the gossip port.
    pub serf_lan_port: Option<u16>,
    /// `encrypt`: the gossip encryption key.
    pub encrypt: Option<String>,
    /// `reconnect_timeout`: how long failed members are kept before they are reaped (Consul: 72 h).
    pub reconnect_timeout: Option<Duration>,
    /// TLS for server RPC: `tls.defaults` / `tls.internal_rpc` (or the top-level `ca_file`, `cert_file`,
    /// `key_file`, `verify_incoming` of older Consul configs).
    pub tls: TlsFiles,
    pub server: Option<bool>,
    /// `leave_on_terminate`: leave the cluster gracefully on SIGTERM/SIGINT (Consul: true on clients, false on
    /// servers, where leaving would shrink the Raft quorum).
    pub leave_on_terminate: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    /// `retry_join`: servers to join (appended across files).
    pub retry_join: Vec<String>,
    /// `autopilot.server_stabilization_time`: how long a voter may be unreachable before it is removed once a
    /// replacement has joined.
    pub dead_server_after: Option<Duration>,
    pub kv_max_value_size: Option<usize>,
    pub session_ttl_min: Option<Duration>,
    pub services: Vec<ServiceDefinition>,
    pub checks: Vec<CheckDefinition>,
    /// `connect.ca_config`, in the CA configuration's own keys (snake_case or CamelCase).
    pub ca_config: Option<Map<String, Value>>,
    /// `connect.leaf_root_change_jitter`: how soon leaves follow a root rotation (Consul: within 30 s).
    pub root_change_jitter: Option<Duration>,
    /// `acl.default_policy`: what authorization decides when no intention matches.
    pub acl_default_policy: Option<String>,
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("{key}: expected a string, got {other}"),
    }
}

fn items(value: Option<&Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
    }
}

impl FileConfig {
    /// Merges one parsed file over this config.
    fn merge_json(&mut self, value: Value, origin: &Path) -> Result<()> {
        let Value::Object(map) = value else {
            bail!("{}: the top level must be a JSON object", origin.display())
        };
        let at = |e: anyhow::Error| e.context(format!("in {}", origin.display()));
        macro_rules! set_string {
            ($field:ident, $key:expr) => {
                if let Some(v) = string(&map, $key).map_err(at)? {
                    self.$field = Some(v);
                }
            };
        }
        set_string!(datacenter, "datacenter");
        set_string!(node_name, "node_name");
        set_string!(node_id, "node_id");
        set_string!(bind_addr, "bind_addr");
        set_string!(client_addr, "client_addr");
        set_string!(advertise_addr, "advertise_addr");
        set_string!(data_dir, "data_dir");
        set_string!(log_level, "log_level");
        set_string!(encrypt, "encrypt");
        self.tls.merge(&map).map_err(at)?;
        if let Some(tls) = map.get("tls").and_then(Value::as_object) {
            for section in ["defaults", "internal_rpc"] {
                if let Some(m) = tls.get(section).and_then(Value::as_object) {
                    self.tls.merge(m).map_err(at)?;
                }
            }
        }
        if let Some(v) = string(&map, "reconnect_timeout").map_err(at)? {
            self.reconnect_timeout = Some(
                weft_types::duration::parse_duration(&v)
                    .map_err(|e| anyhow::anyhow!(e))
                    .map_err(at)?,
            );
        }
        if let Some(v) = map.get("leave_on_terminate") {
            self.leave_on_terminate = Some(v.as_bool().with_context(|| {
                format!(
                    "{}: leave_on_terminate must be true or false",
                    origin.display()
                )
            })?);
        }
        if let Some(v) = map.get("server") {
            self.server =
                Some(v.as_bool().with_context(|| {
                    format!("{}: server must be true or false", origin.display())
                })?);
        }
        if let Some(v) = map.get("bootstrap_expect") {
            let n = v.as_u64().filter(|n| *n <= 64);
            self.bootstrap_expect = Some(n.with_context(|| {
                format!("{}: bootstrap_expect must be a number", origin.display())
            })? as u32);
        }
        if let Some(autopilot) = map.get("autopilot").and_then(Value::as_object) {
            if let Some(v) = string(autopilot, "server_stabilization_time").map_err(at)? {
                self.dead_server_after = Some(
                    weft_types::duration::parse_duration(&v)
                        .map_err(|e| anyhow::anyhow!(e))
                        .map_err(at)?,
                );
            }
        }
        for v in items(map.get("retry_join")) {
            match v {
                Value::String(addr) => self.retry_join.push(addr),
                other => bail!(
                    "{}: retry_join entries must be strings, got {other}",
                    origin.display()
                ),
            }
        }
        if let Some(ports) = map.get("ports").and_then(Value::as_object) {
            if let Some(p) = ports.get("serf_lan") {
                let port = p.as_u64().filter(|p| *p <= 65535);
                self.serf_lan_port = Some(port.with_context(|| {
                    format!("{}: ports.serf_lan must be 0-65535", origin.display())
                })? as u16);
            }
            if let Some(p) = ports.get("server") {
                let port = p.as_u64().filter(|p| *p <= 65535);
                self.server_port = Some(port.with_context(|| {
                    format!("{}: ports.server must be 0-65535", origin.display())
                })? as u16);
            }
            if let Some(p) = ports.get("http") {
                let port = p.as_u64().filter(|p| *p <= 65535);
                self.http_port =
                    Some(port.with_context(|| {
                        format!("{}: ports.http must be 0-65535", origin.display())
                    })? as u16);
            }
        }
        if let Some(limits) = map.get("limits").and_then(Value::as_object) {
            if let Some(v) = limits.get("kv_max_value_size") {
                self.kv_max_value_size = Some(v.as_u64().with_context(|| {
                    format!("{}: kv_max_value_size must be a number", origin.display())
                })? as usize);
            }
        }
        if let Some(v) = map.get("kv_max_value_size") {
            self.kv_max_value_size = Some(v.as_u64().with_context(|| {
                format!("{}: kv_max_value_size must be a number", origin.display())
            })? as usize);
        }
        if let Some(v) = string(&map, "session_ttl_min").map_err(at)? {
            self.session_ttl_min = Some(
                weft_types::duration::parse_duration(&v)
                    .map_err(|e| anyhow::anyhow!(e))
                    .map_err(at)?,
            );
        }
        if let Some(connect) = map.get("connect").and_then(Value::as_object) {
            if let Some(ca) = connect.get("ca_config").and_then(Value::as_object) {
                self.ca_config = Some(ca.clone());
            }
            if let Some(v) = string(connect, "leaf_root_change_jitter").map_err(at)? {
                self.root_change_jitter = Some(
                    weft_types::duration::parse_duration(&v)
                        .map_err(|e| anyhow::anyhow!(e))
                        .map_err(at)?,
                );
            }
        }
        if let Some(acl) = map.get("acl").and_then(Value::as_object) {
            if let Some(v) = string(acl, "default_policy").map_err(at)? {
                if v != "allow" && v != "deny" {
                    return Err(at(anyhow::anyhow!(
                        "acl.default_policy must be \"allow\" or \"deny\", got {v:?}"
                    )));
                }
                self.acl_default_policy = Some(v);
            }
        }
        for (key, plural) in [("service", false), ("services", true)] {
            for (i, item) in items(map.get(key)).into_iter().enumerate() {
                let def: ServiceDefinition = decode_value(item)
                    .map_err(|e| anyhow::anyhow!("{}: {key}[{i}]: {e}", origin.display()))?;
                let _ = plural;
                self.services.push(def);
            }
        }
        for key in ["check", "checks"] {
            for (i, item) in items(map.get(key)).into_iter().enumerate() {
                let def: CheckDefinition = decode_value(item)
                    .map_err(|e| anyhow::anyhow!("{}: {key}[{i}]: {e}", origin.display()))?;
                self.checks.push(def);
            }
        }
        Ok(())
    }

    /// Loads `files` and every `*.json` in `dirs` (directories first, each alphabetically, then files in order).
    pub fn load(files: &[PathBuf], dirs: &[PathBuf]) -> Result<FileConfig> {
        let mut paths = Vec::new();
        for dir in dirs {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read config dir {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "hcl"))
                .collect();
            entries.sort();
            paths.extend(entries);
        }
        paths.extend(files.iter().cloned());
        let mut config = FileConfig::default();
        for path in paths {
            if path.extension().is_some_and(|x| x == "hcl") {
                bail!(
                    "{}: HCL config files are not supported yet; write the same keys as JSON",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", path.display()))?;
            config.merge_json(value, &path)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merges_files_and_reads_services() {
        let dir = std::env::temp_dir().join(format!("weft-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"{"datacenter":"east","services":[{"name":"web","port":80,"check":{"ttl":"10s"}}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("b.json"),
            r#"{"datacenter":"west","service":{"Name":"db","Port":5432}}"#,
        )
        .unwrap();
        let c = FileConfig::load(&[], std::slice::from_ref(&dir)).unwrap();
        assert_eq!(c.datacenter.as_deref(), Some("west"));
        assert_eq!(c.services.len(), 2);
        assert_eq!(
            c.services[0].check.as_ref().unwrap().ttl,
            Some(Duration::from_secs(10))
        );
        std::fs::write(dir.join("c.json"), r#"{"datacenter": 5}"#).unwrap();
        assert!(FileConfig::load(&[], std::slice::from_ref(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
