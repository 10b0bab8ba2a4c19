//! Config entries (`/v1/config`) other than `service-intentions` (which live in the intentions table): each kind is
//! decoded strictly into its own type, checked as Consul checks it, and stored as the normalized JSON the client
//! sent, so a read gives back every field it wrote. Kinds Weft does not store yet are refused by name.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const SERVICE_DEFAULTS: &str = "service-defaults";
pub const PROXY_DEFAULTS: &str = "proxy-defaults";
pub const MESH: &str = "mesh";
pub const INGRESS_GATEWAY: &str = "ingress-gateway";
pub const TERMINATING_GATEWAY: &str = "terminating-gateway";

/// The protocols a service may speak (`service-defaults` `Protocol`, `proxy-defaults` `Config.protocol`).
pub const PROTOCOLS: [&str; 4] = ["tcp", "http", "http2", "grpc"];
/// Most `Meta` pairs on an entry (Consul's limit), and their sizes.
const MAX_META: usize = 64;
const MAX_META_KEY: usize = 128;
const MAX_META_VALUE: usize = 512;

/// A stored entry: the normalized JSON with its kind, name and indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    pub kind: String,
    pub name: String,
    /// The entry as written, keys in Consul's spelling, without `Kind`, `Name` and the indexes.
    pub body: Map<String, Value>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl StoredEntry {
    /// The entry as `/v1/config` answers it.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("Kind".into(), self.kind.clone().into());
        out.insert("Name".into(), self.name.clone().into());
        for (k, v) in &self.body {
            out.insert(k.clone(), v.clone());
        }
        out.entry("Meta")
            .or_insert_with(|| Value::Object(Map::new()));
        out.insert("CreateIndex".into(), self.create_index.into());
        out.insert("ModifyIndex".into(), self.modify_index.into());
        Value::Object(out)
    }
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct MeshGatewayConfig {
    mode: String,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct TransparentProxyConfig {
    outbound_listener_port: i64,
    dialed_directly: bool,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ExposePath {
    listener_port: i64,
    path: String,
    local_path_port: i64,
    protocol: String,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ExposeConfig {
    checks: bool,
    paths: Vec<ExposePath>,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ServiceDefaults {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    protocol: String,
    mode: String,
    transparent_proxy: TransparentProxyConfig,
    #[serde(rename = "MutualTLSMode")]
    mutual_tls_mode: String,
    mesh_gateway: MeshGatewayConfig,
    expose: ExposeConfig,
    #[serde(rename = "ExternalSNI")]
    external_sni: String,
    max_inbound_connections: i64,
    local_connect_timeout_ms: i64,
    local_request_timeout_ms: i64,
    balance_inbound_connections: String,
    create_index: u64,
    modify_index: u64,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct ProxyDefaults {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    config: Map<String, Value>,
    mode: String,
    transparent_proxy: TransparentProxyConfig,
    #[serde(rename = "MutualTLSMode")]
    mutual_tls_mode: String,
    mesh_gateway: MeshGatewayConfig,
    expose: ExposeConfig,
    create_index: u64,
    modify_index: u64,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct MeshTransparentProxy {
    mesh_destinations_only: bool,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct MeshHttp {
    sanitize_x_forwarded_client_cert: bool,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Mesh {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    transparent_proxy: MeshTransparentProxy,
    allow_enabling_permissive_mutual_tls: bool,
    #[serde(rename = "HTTP")]
    http: MeshHttp,
    create_index: u64,
    modify_index: u64,
}

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it acts on.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct IngressService {
    name: String,
    namespace: String,
    partition: String,
    hosts: Vec<String>,
    #[serde(rename = "TLS")]
    tls: Option<Value>,
    request_headers: Option<Value>,
    response_headers: Option<Value>,
    max_connections: i64,
    max_pending_requests: i64,
    max_concurrent_requests: i64,
    passive_health_check: Option<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct IngressListener {
    port: i64,
    protocol: String,
    services: Vec<IngressService>,
    #[serde(rename = "TLS")]
    tls: Option<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct IngressGateway {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    #[serde(rename = "TLS")]
    tls: Option<Value>,
    listeners: Vec<IngressListener>,
    defaults: Option<Value>,
    create_index: u64,
    modify_index: u64,
}

#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct LinkedService {
    name: String,
    namespace: String,
    partition: String,
    #[serde(rename = "CAFile")]
    ca_file: String,
    cert_file: String,
    key_file: String,
    #[serde(rename = "SNI")]
    sni: String,
    disable_auto_host_rewrite: bool,
}

#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct TerminatingGateway {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    services: Vec<LinkedService>,
    create_index: u64,
    modify_index: u64,
}

/// Most listeners or services a gateway entry may list.
const MAX_GATEWAY_ITEMS: usize = 256;

fn ingress(e: &IngressGateway) -> Result<(), String> {
    check_meta(&e.meta)?;
    if e.listeners.len() > MAX_GATEWAY_ITEMS {
        return Err(format!("Listeners: at most {MAX_GATEWAY_ITEMS}"));
    }
    let mut ports = std::collections::BTreeSet::new();
    for (i, l) in e.listeners.iter().enumerate() {
        if !(1..=65535).contains(&l.port) {
            return Err(format!(
                "Listeners[{i}]: port {} is not between 1 and 65535",
                l.port
            ));
        }
        if !ports.insert(l.port) {
            return Err(format!("port {} declared on two listeners", l.port));
        }
        let protocol = if l.protocol.is_empty() {
            "tcp".to_string()
        } else {
            l.protocol.to_ascii_lowercase()
        };
        one_of(&format!("Listeners[{i}].Protocol"), &protocol, &PROTOCOLS)?;
        if l.services.is_empty() {
            return Err(format!("Listeners[{i}]: at least one service is required"));
        }
        if l.services.len() > MAX_GATEWAY_ITEMS {
            return Err(format!(
                "Listeners[{i}].Services: at most {MAX_GATEWAY_ITEMS}"
            ));
        }
        let http = protocol != "tcp";
        if !http && l.services.len() > 1 {
            return Err(format!(
                "Listeners[{i}]: multiple services per listener are only supported for protocol = 'http' (tcp listener on port {})",
                l.port
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (j, s) in l.services.iter().enumerate() {
            if s.name.is_empty() {
                return Err(format!("Listeners[{i}].Services[{j}]: Name is required"));
            }
            if s.name == "*" && !http {
                return Err(format!(
                    "Listeners[{i}]: the wildcard service \"*\" needs an http listener"
                ));
            }
            if !names.insert(s.name.clone()) {
                return Err(format!("Listeners[{i}]: service {:?} listed twice", s.name));
            }
            if !s.hosts.is_empty() && !http {
                return Err(format!(
                    "Listeners[{i}].Services[{j}]: Hosts need an http listener"
                ));
            }
            if s.name == "*" && !s.hosts.is_empty() {
                return Err(format!(
                    "Listeners[{i}]: the wildcard service cannot have Hosts"
                ));
            }
            for h in &s.hosts {
                let label_ok = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                let bare = h.strip_prefix("*.").unwrap_or(h);
                let valid = h == "*" || (h.len() <= 253 && bare.split('.').all(label_ok));
                if !valid {
                    return Err(format!("Listeners[{i}].Services[{j}]: Hosts {h:?} is not a valid DNS hostname or wildcard"));
                }
            }
        }
    }
    Ok(())
}

fn terminating(e: &TerminatingGateway) -> Result<(), String> {
    check_meta(&e.meta)?;
    if e.services.len() > MAX_GATEWAY_ITEMS {
        return Err(format!("Services: at most {MAX_GATEWAY_ITEMS}"));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, s) in e.services.iter().enumerate() {
        if s.name.is_empty() {
            return Err(format!("Services[{i}]: Name is required"));
        }
        if !names.insert(s.name.clone()) {
            return Err(format!("Service {:?} was specified more than once", s.name));
        }
        if s.cert_file.is_empty() != s.key_file.is_empty() {
            return Err(format!(
                "Services[{i}]: CertFile and KeyFile must both be set, or neither, for {:?}",
                s.name
            ));
        }
    }
    Ok(())
}

fn strict<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field} {value:?} is not one of {}",
            allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn check_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > MAX_META {
        return Err(format!("Meta: at most {MAX_META} key/value pairs"));
    }
    for (k, v) in meta {
        if k.is_empty() || k.len() > MAX_META_KEY || v.len() > MAX_META_VALUE {
            return Err(format!(
                "Meta: key {k:?} must be 1 to {MAX_META_KEY} characters and its value at most {MAX_META_VALUE}"
            ));
        }
    }
    Ok(())
}

/// The proxy settings `service-defaults` and `proxy-defaults` share.
struct ProxySettings<'a> {
    mode: &'a str,
    mtls: &'a str,
    gateway: &'a MeshGatewayConfig,
    tproxy: &'a TransparentProxyConfig,
    expose: &'a ExposeConfig,
}

fn check_common(
    meta: &BTreeMap<String, String>,
    namespace: &str,
    partition: &str,
    p: ProxySettings<'_>,
) -> Result<(), String> {
    let ProxySettings {
        mode,
        mtls,
        gateway,
        tproxy,
        expose,
    } = p;
    check_meta(meta)?;
    for (field, v) in [("Namespace", namespace), ("Partition", partition)] {
        if !v.is_empty() && v != "default" {
            return Err(format!(
                "{field} {v:?}: Weft has only the default namespace and partition"
            ));
        }
    }
    one_of("Mode", mode, &["", "direct", "transparent"])?;
    one_of("MutualTLSMode", mtls, &["", "strict", "permissive"])?;
    one_of(
        "MeshGateway.Mode",
        &gateway.mode,
        &["", "none", "local", "remote"],
    )?;
    if !(0..=65535).contains(&tproxy.outbound_listener_port) {
        return Err("TransparentProxy.OutboundListenerPort must be between 0 and 65535".into());
    }
    for (i, p) in expose.paths.iter().enumerate() {
        if !p.path.starts_with('/') {
            return Err(format!(
                "Expose.Paths[{i}].Path must start with '/': {:?}",
                p.path
            ));
        }
        one_of(
            &format!("Expose.Paths[{i}].Protocol"),
            &p.protocol,
            &["", "http", "http2"],
        )?;
        for (field, port) in [
            ("ListenerPort", p.listener_port),
            ("LocalPathPort", p.local_path_port),
        ] {
            if !(1..=65535).contains(&port) {
                return Err(format!(
                    "Expose.Paths[{i}].{field} must be between 1 and 65535"
                ));
            }
        }
    }
    Ok(())
}

/// [`check_common`] on an entry carrying the shared proxy fields (both defaults kinds).
macro_rules! check_proxy_entry {
    ($e:expr) => {
        check_common(
            &$e.meta,
            &$e.namespace,
            &$e.partition,
            ProxySettings {
                mode: &$e.mode,
                mtls: &$e.mutual_tls_mode,
                gateway: &$e.mesh_gateway,
                tproxy: &$e.transparent_proxy,
                expose: &$e.expose,
            },
        )
    };
}

/// An entry's `Kind`, lowercase (as Consul reads it); empty when missing.
pub fn kind_of(value: &Value) -> String {
    value
        .get("Kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Checks an entry of a stored kind; answers its kind and name. The text follows `Invalid config entry: `.
pub fn validate(value: &Value) -> Result<(String, String), String> {
    let kind = kind_of(value);
    match kind.as_str() {
        SERVICE_DEFAULTS => {
            let e: ServiceDefaults = strict(value)?;
            if e.name.is_empty() || e.name == "*" {
                return Err("Name is required, and names one service (not \"*\")".into());
            }
            check_proxy_entry!(e)?;
            if !e.protocol.is_empty() {
                one_of("Protocol", &e.protocol.to_ascii_lowercase(), &PROTOCOLS)?;
            }
            one_of(
                "BalanceInboundConnections",
                &e.balance_inbound_connections,
                &["", "exact_balance"],
            )?;
            for (field, v) in [
                ("MaxInboundConnections", e.max_inbound_connections),
                ("LocalConnectTimeoutMs", e.local_connect_timeout_ms),
                ("LocalRequestTimeoutMs", e.local_request_timeout_ms),
            ] {
                if v < 0 {
                    return Err(format!("{field} must be >= 0"));
                }
            }
            Ok((kind, e.name))
        }
        PROXY_DEFAULTS => {
            let e: ProxyDefaults = strict(value)?;
            if e.name != "global" {
                return Err(format!("invalid name ({:?}), only \"global\" is supported", e.name));
            }
            check_proxy_entry!(e)?;
            if let Some(p) = e.config.get("protocol") {
                let p = p.as_str().ok_or("Config.protocol must be a string")?;
                one_of("Config.protocol", &p.to_ascii_lowercase(), &PROTOCOLS)?;
            }
            Ok((kind, e.name))
        }
        MESH => {
            let e: Mesh = strict(value)?;
            if e.name != "mesh" {
                return Err(format!("invalid name ({:?}), only \"mesh\" is supported", e.name));
            }
            check_meta(&e.meta)?;
            Ok((kind, e.name))
        }
        INGRESS_GATEWAY | TERMINATING_GATEWAY => {
            let name = value.get("Name").and_then(Value::as_str).unwrap_or_default().to_string();
            if name.is_empty() {
                return Err("Name is required".into());
            }
            if kind == INGRESS_GATEWAY {
                ingress(&strict(value)?)?;
            } else {
                terminating(&strict(value)?)?;
            }
            Ok((kind, name))
        }
        "" => Err("Kind is required".into()),
        other => Err(format!(
            "config entry kind {other:?} is not stored by Weft yet (service-intentions, service-defaults, \
             proxy-defaults, mesh, service-router, service-splitter, service-resolver, ingress-gateway and \
             terminating-gateway are)"
        )),
    }
}

/// The entry's body as stored: the normalized JSON without `Kind`, `Name` and the indexes.
pub fn body_of(value: &Value) -> Map<String, Value> {
    let mut body = value.as_object().cloned().unwrap_or_default();
    for key in ["Kind", "Name", "CreateIndex", "ModifyIndex"] {
        body.remove(key);
    }
    if let Some(Value::String(p)) = body.get_mut("Protocol") {
        *p = p.to_ascii_lowercase();
    }
    body
}

/// Kinds whose names are services (ACLs: `service:read` / `service:write` on the name); the others are the mesh's
/// own (`operator:read` / `operator:write`).
pub fn names_a_service(kind: &str) -> bool {
    kind == SERVICE_DEFAULTS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_checked_as_consul_checks_them() {
        for good in [
            json!({"Kind": "ingress-gateway", "Name": "in", "Listeners": [
                {"Port": 8080, "Protocol": "http", "Services": [{"Name": "web", "Hosts": ["web.example.com", "*.example.org"]}, {"Name": "api"}]},
                {"Port": 9000, "Services": [{"Name": "db"}]}]}),
            json!({"Kind": "terminating-gateway", "Name": "out", "Services": [{"Name": "legacy", "CAFile": "/ca.pem", "SNI": "legacy.example"}]}),
        ] {
            validate(&good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let ok = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP", "Meta": {"team": "a"}});
        assert_eq!(
            validate(&ok).unwrap(),
            ("service-defaults".into(), "web".into())
        );
        assert_eq!(body_of(&ok)["Protocol"], "http");
        for (bad, why) in [
            (
                json!({"Kind": "service-defaults", "Name": ""}),
                "Name is required",
            ),
            (
                json!({"Kind": "service-defaults", "Name": "web", "Protocol": "udp"}),
                "Protocol \"udp\"",
            ),
            (
                json!({"Kind": "service-defaults", "Name": "web", "Bogus": 1}),
                "unknown field",
            ),
            (
                json!({"Kind": "service-defaults", "Name": "web", "MaxInboundConnections": -1}),
                ">= 0",
            ),
            (
                json!({"Kind": "service-defaults", "Name": "web", "MeshGateway": {"Mode": "far"}}),
                "MeshGateway.Mode",
            ),
            (
                json!({"Kind": "service-defaults", "Name": "web", "Expose": {"Paths": [{"Path": "x", "ListenerPort": 1, "LocalPathPort": 2}]}}),
                "must start with '/'",
            ),
            (
                json!({"Kind": "proxy-defaults", "Name": "web"}),
                "only \"global\"",
            ),
            (
                json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "smtp"}}),
                "Config.protocol",
            ),
            (json!({"Kind": "mesh", "Name": "other"}), "only \"mesh\""),
            (
                json!({"Kind": "exported-services", "Name": "default"}),
                "not stored by Weft yet",
            ),
            (
                json!({"Kind": "ingress-gateway", "Name": "in", "Listeners": [{"Port": 80, "Services": [{"Name": "a"}, {"Name": "b"}]}]}),
                "only supported for protocol = 'http'",
            ),
            (
                json!({"Kind": "ingress-gateway", "Name": "in", "Listeners": [{"Port": 0, "Services": [{"Name": "a"}]}]}),
                "between 1 and 65535",
            ),
            (
                json!({"Kind": "ingress-gateway", "Name": "in", "Listeners": [{"Port": 80, "Protocol": "http", "Services": [{"Name": "a", "Hosts": ["bad host"]}]}]}),
                "valid DNS hostname",
            ),
            (
                json!({"Kind": "terminating-gateway", "Name": "out", "Services": [{"Name": "db", "CertFile": "c.pem"}]}),
                "CertFile and KeyFile",
            ),
            (
                json!({"Kind": "terminating-gateway", "Name": "out", "Services": [{"Name": "db"}, {"Name": "db"}]}),
                "more than once",
            ),
            (json!({"Name": "web"}), "Kind is required"),
            (
                json!({"Kind": "service-defaults", "Name": "web", "Namespace": "team"}),
                "default namespace",
            ),
        ] {
            let e = validate(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let stored = StoredEntry {
            kind: "proxy-defaults".into(),
            name: "global".into(),
            body: body_of(
                &json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}),
            ),
            create_index: 3,
            modify_index: 4,
        };
        let out = stored.to_json();
        assert_eq!(out["Config"]["protocol"], "http");
        assert_eq!(
            (out["CreateIndex"].as_u64(), out["ModifyIndex"].as_u64()),
            (Some(3), Some(4))
        );
        assert_eq!(out["Meta"], json!({}));
    }
}
