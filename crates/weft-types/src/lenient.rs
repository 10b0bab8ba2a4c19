//! Lenient request decoding, as Consul does it.
//!
//! Consul decodes bodies with Go's `encoding/json`, which matches object keys case-insensitively, and it also accepts
//! snake_case aliases (`enable_tag_override`, `service_id`). Real clients rely on both (py-consul sends lowercase keys).
//! We rewrite every key that names a known field to its canonical PascalCase spelling before serde sees the value, and
//! never touch keys inside user maps (`Meta`, `NodeMeta`, `Header`, `Proxy.Config`, ...), whose case is data.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Every field name that request bodies may carry, in canonical spelling. A unit test checks the request types
/// against this list so a new field cannot be forgotten.
const KNOWN_KEYS: &[&str] = &[
    "ID",
    "Name",
    "Kind",
    "Tags",
    "Port",
    "Address",
    "SocketPath",
    "TaggedAddresses",
    "EnableTagOverride",
    "Meta",
    "Weights",
    "Passing",
    "Warning",
    "Check",
    "Checks",
    "Proxy",
    "Connect",
    "Native",
    "SidecarService",
    "Token",
    "Namespace",
    "Partition",
    "Locality",
    "Region",
    "Zone",
    "Service",
    "Services",
    "Node",
    "NodeMeta",
    "Datacenter",
    "SkipNodeUpdate",
    "CheckID",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Notes",
    "Status",
    "Output",
    "Interval",
    "Timeout",
    "TTL",
    "HTTP",
    "Header",
    "Method",
    "Body",
    "DisableRedirects",
    "TCP",
    "TCPUseTLS",
    "UDP",
    "GRPC",
    "GRPCUseTLS",
    "H2PING",
    "H2PingUseTLS",
    "OSService",
    "TLSServerName",
    "TLSSkipVerify",
    "AliasNode",
    "AliasService",
    "ScriptArgs",
    "DockerContainerID",
    "Shell",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "OutputMaxSize",
    "DeregisterCriticalServiceAfter",
    "Definition",
    "Type",
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "LocalServiceSocketPath",
    "Mode",
    "Upstreams",
    "DestinationType",
    "DestinationName",
    "DestinationNamespace",
    "DestinationPartition",
    "DestinationPeer",
    "LocalBindAddress",
    "LocalBindPort",
    "LocalBindSocketPath",
    "LocalBindSocketMode",
    "MeshGateway",
    "Expose",
    "Paths",
    "Path",
    "LocalPathPort",
    "ListenerPort",
    "Protocol",
    "Config",
    "TransparentProxy",
    "OutboundListenerPort",
    "DialedDirectly",
    "LockDelay",
    "Behavior",
    "NodeChecks",
    "ServiceChecks",
    "Verb",
    "Key",
    "Value",
    "Flags",
    "Index",
    "Session",
    "Target",
    "ClientCertURI",
    "ClientCertSerial",
    "CreateIndex",
    "ModifyIndex",
    "LockIndex",
    "WriteRequest",
    "PeerName",
    "ExposedPort",
    "Services",
    "Checks",
    "CentrallyConfigured",
    "EnvoyExtensions",
    "AccessLogs",
    "Datacenters",
    // ACL tokens, policies and roles
    "AccessorID",
    "SecretID",
    "Description",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "TemplateName",
    "TemplateVariables",
    "NodeName",
    "Local",
    "AuthMethod",
    "ExpirationTime",
    "ExpirationTTL",
    "Rules",
    "BootstrapSecret",
    // Prepared queries
    "Template",
    "Regexp",
    "RemoveEmptyTags",
    "SamenessGroup",
    "Failover",
    "NearestN",
    "Targets",
    "OnlyPassing",
    "IgnoreCheckIDs",
    "Near",
    "Peer",
    "DNS",
    // Config entries
    "MaxInboundConnections",
    "LocalConnectTimeoutMs",
    "LocalRequestTimeoutMs",
    "BalanceInboundConnections",
    "ExternalSNI",
    "MutualTLSMode",
    "MeshDestinationsOnly",
    "AllowEnablingPermissiveMutualTLS",
    "SanitizeXForwardedClientCert",
];

/// Keys whose object value is a user map: its keys are data and keep their spelling, and so do its values.
const OPAQUE_KEYS: &[&str] = &[
    "Meta",
    "NodeMeta",
    "ServiceMeta",
    "Header",
    "Config",
    "EnvoyExtensions",
];

/// Keys whose object value is a user-keyed map of structs: keys kept, values normalised.
const KEYED_STRUCT_MAPS: &[&str] = &["TaggedAddresses", "ServiceTaggedAddresses"];

/// Extra spellings Consul accepts for some fields.
const ALIASES: &[(&str, &str)] = &[("args", "ScriptArgs"), ("scriptargs", "ScriptArgs")];

fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn dictionary() -> &'static HashMap<String, &'static str> {
    static DICT: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut map: HashMap<String, &'static str> = KNOWN_KEYS
            .iter()
            .chain(crate::autopilot::SETTINGS)
            .map(|k| (canonical(k), *k))
            .collect();
        for (alias, target) in ALIASES {
            map.insert((*alias).to_string(), target);
        }
        map
    })
}

/// Rewrites known keys to their canonical spelling, recursively, leaving user maps alone.
pub fn normalize_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(normalize_object(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

fn normalize_object(map: Map<String, Value>) -> Map<String, Value> {
    let dict = dictionary();
    let mut out = Map::with_capacity(map.len());
    for (key, value) in map {
        // Go leaves a field untouched for `null`; dropping the key gives serde the same default.
        if value.is_null() {
            continue;
        }
        let name = dict
            .get(&canonical(&key))
            .map(|k| k.to_string())
            .unwrap_or(key);
        let value = if OPAQUE_KEYS.contains(&name.as_str()) {
            value
        } else if KEYED_STRUCT_MAPS.contains(&name.as_str()) {
            match value {
                Value::Object(inner) => Value::Object(
                    inner
                        .into_iter()
                        .map(|(k, v)| (k, normalize_keys(v)))
                        .collect(),
                ),
                other => other,
            }
        } else {
            normalize_keys(value)
        };
        // Duplicates that name the same field: the last one wins, as in Go.
        out.insert(name, value);
    }
    out
}

/// Why a body could not be decoded; the text follows Go's `encoding/json` wording closely enough for humans.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("EOF")]
    Empty,
    #[error("{0}")]
    Json(String),
}

/// Decodes a request body leniently: JSON, case-insensitive keys, snake_case aliases, unknown keys ignored.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DecodeError::Empty);
    }
    let raw: Value = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    serde_json::from_value(normalize_keys(raw)).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Decodes an already-parsed JSON value leniently (config files, nested definitions).
pub fn decode_value<T: DeserializeOwned>(raw: Value) -> Result<T, DecodeError> {
    serde_json::from_value(normalize_keys(raw)).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Like [`decode`], but an empty body decodes as `T::default()` (session create, maintenance bodies).
pub fn decode_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, DecodeError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    decode(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_and_lower_case_become_pascal() {
        let v = normalize_keys(
            json!({"name": "web", "enable_tag_override": true, "tagged_addresses":
            {"lan": {"address": "1.2.3.4", "port": 1}}, "meta": {"my_Key": "x"}, "check": {"http": "u", "args": ["a"]}}),
        );
        assert_eq!(
            v,
            json!({"Name": "web", "EnableTagOverride": true, "TaggedAddresses": {"lan": {"Address": "1.2.3.4", "Port": 1}},
                "Meta": {"my_Key": "x"}, "Check": {"HTTP": "u", "ScriptArgs": ["a"]}})
        );
    }

    #[test]
    fn unknown_keys_pass_through() {
        let v = normalize_keys(json!({"WriteRequest": {"Token": "t"}, "whatever": 1}));
        assert_eq!(v, json!({"WriteRequest": {"Token": "t"}, "whatever": 1}));
    }

    #[test]
    fn empty_body_is_eof() {
        assert_eq!(decode::<Value>(b"  ").unwrap_err().to_string(), "EOF");
    }
}
