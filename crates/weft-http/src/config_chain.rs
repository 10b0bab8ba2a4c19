//! The discovery-chain kinds of config entry (`service-router`, `service-splitter`, `service-resolver`): decoded
//! strictly and checked as Consul checks them when they are written, including against the other entries: routers
//! and splitters need the service to speak HTTP (`service-defaults` `Protocol`, else `proxy-defaults`
//! `Config.protocol`, else tcp), and a service that has them cannot be turned back to tcp. What they do to traffic
//! arrives with L7 proxying; Weft stores them now so that tools that write them keep working.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use weft_state::Store;
use weft_types::config_entry::{PROXY_DEFAULTS, SERVICE_DEFAULTS};

pub const SERVICE_ROUTER: &str = "service-router";
pub const SERVICE_SPLITTER: &str = "service-splitter";
pub const SERVICE_RESOLVER: &str = "service-resolver";
pub const KINDS: [&str; 3] = [SERVICE_ROUTER, SERVICE_SPLITTER, SERVICE_RESOLVER];

const HTTP_PROTOCOLS: [&str; 3] = ["http", "http2", "grpc"];
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const LB_POLICIES: [&str; 6] = [
    "",
    "random",
    "round_robin",
    "least_request",
    "ring_hash",
    "maglev",
];
/// Most routes, splits, subsets or matchers an entry may hold: far beyond real use, and a bound on what one write
/// can make the servers store.
const MAX_ITEMS: usize = 256;

// Every field is declared so that strict decoding refuses unknown ones; Weft reads those it checks.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct HeaderMatch {
    name: String,
    present: bool,
    exact: String,
    prefix: String,
    suffix: String,
    regex: String,
    invert: bool,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct QueryMatch {
    name: String,
    present: bool,
    exact: String,
    regex: String,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct HttpMatch {
    path_exact: String,
    path_prefix: String,
    path_regex: String,
    header: Vec<HeaderMatch>,
    query_param: Vec<QueryMatch>,
    methods: Vec<String>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct RouteMatch {
    #[serde(rename = "HTTP")]
    http: Option<HttpMatch>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct RouteDestination {
    service: String,
    service_subset: String,
    namespace: String,
    partition: String,
    prefix_rewrite: String,
    request_timeout: Option<Value>,
    idle_timeout: Option<Value>,
    num_retries: i64,
    retry_on_connect_failure: bool,
    retry_on: Vec<String>,
    retry_on_status_codes: Vec<i64>,
    request_headers: Option<Value>,
    response_headers: Option<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Route {
    #[serde(rename = "Match")]
    matches: Option<RouteMatch>,
    destination: Option<RouteDestination>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Router {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    routes: Vec<Route>,
    create_index: u64,
    modify_index: u64,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Split {
    weight: f64,
    service: String,
    service_subset: String,
    namespace: String,
    partition: String,
    request_headers: Option<Value>,
    response_headers: Option<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Splitter {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    splits: Vec<Split>,
    create_index: u64,
    modify_index: u64,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Subset {
    filter: String,
    only_passing: bool,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Redirect {
    service: String,
    service_subset: String,
    namespace: String,
    partition: String,
    datacenter: String,
    peer: String,
    sameness_group: String,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Failover {
    service: String,
    service_subset: String,
    namespace: String,
    datacenters: Vec<String>,
    targets: Vec<Value>,
    sameness_group: String,
    policy: Option<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct LoadBalancer {
    policy: String,
    ring_hash_config: Option<Value>,
    least_request_config: Option<Value>,
    hash_policies: Vec<Value>,
}

#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
struct Resolver {
    kind: String,
    name: String,
    meta: BTreeMap<String, String>,
    namespace: String,
    partition: String,
    default_subset: String,
    subsets: BTreeMap<String, Subset>,
    redirect: Option<Redirect>,
    failover: BTreeMap<String, Failover>,
    connect_timeout: Option<Value>,
    request_timeout: Option<Value>,
    load_balancer: Option<LoadBalancer>,
    prioritize_by_locality: Option<Value>,
    create_index: u64,
    modify_index: u64,
}

fn strict<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| e.to_string())
}

/// A duration field: a Go duration string, or nanoseconds; never negative.
fn duration(field: &str, v: &Option<Value>) -> Result<(), String> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => Ok(()),
        Some(Value::String(s)) if !s.trim_start().starts_with('-') => {
            weft_types::duration::parse_duration(s)
                .map(|_| ())
                .map_err(|e| format!("Bad {field} '{s}': {e}"))
        }
        Some(other) => Err(format!("Bad {field} {other}, must be >= 0")),
    }
}

fn bounded<T>(field: &str, items: &[T]) -> Result<(), String> {
    if items.len() > MAX_ITEMS {
        return Err(format!("{field}: at most {MAX_ITEMS}"));
    }
    Ok(())
}

fn regex(field: &str, re: &str) -> Result<(), String> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| format!("{field}: bad regular expression: {e}"))
}

/// The protocol `name` speaks by the stored entries: its `service-defaults`, else `proxy-defaults`, else tcp.
pub fn protocol_of(store: &Store, name: &str) -> String {
    own_protocol(store.config_entry(SERVICE_DEFAULTS, name).map(|e| &e.body)).unwrap_or_else(|| {
        global_protocol(
            store
                .config_entry(PROXY_DEFAULTS, "global")
                .map(|e| &e.body),
        )
    })
}

fn needs_http(store: &Store, kind: &str, name: &str) -> Result<(), String> {
    let protocol = protocol_of(store, name);
    if HTTP_PROTOCOLS.contains(&protocol.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "does not permit advanced routing or splitting behavior: {kind} {name:?} needs the service to speak \
             http, http2 or grpc, and it speaks {protocol:?} (set Protocol in its service-defaults)"
        ))
    }
}

/// Checks a discovery-chain entry on its own; answers its kind and name. [`check_protocol`] then checks it against
/// the stored entries.
pub fn validate(value: &Value) -> Result<(String, String), String> {
    let kind = weft_types::config_entry::kind_of(value);
    let name = match kind.as_str() {
        SERVICE_ROUTER => router(strict(value)?)?,
        SERVICE_SPLITTER => splitter(strict(value)?)?,
        SERVICE_RESOLVER => resolver(strict(value)?)?,
        other => return Err(format!("{other:?} is not a discovery-chain kind")),
    };
    Ok((kind, name))
}

/// Routers and splitters need the service to speak http, http2 or grpc by the stored entries.
pub fn check_protocol(store: &Store, kind: &str, name: &str) -> Result<(), String> {
    if kind == SERVICE_RESOLVER {
        return Ok(());
    }
    needs_http(store, kind, name)
}

/// The protocol `proxy-defaults` gives services without their own (tcp when it gives none).
fn global_protocol(proxy_defaults: Option<&Map<String, Value>>) -> String {
    proxy_defaults
        .and_then(|b| b.get("Config"))
        .and_then(|c| c.get("protocol"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map_or_else(|| "tcp".to_string(), str::to_ascii_lowercase)
}

/// A service's own protocol from a `service-defaults` body, when it sets one.
fn own_protocol(service_defaults: Option<&Map<String, Value>>) -> Option<String> {
    service_defaults
        .and_then(|b| b.get("Protocol"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
}

/// Services with a router, a splitter or intentions with `Permissions` (L7), which need http, http2 or grpc.
fn routed(store: &Store) -> std::collections::BTreeSet<String> {
    [SERVICE_ROUTER, SERVICE_SPLITTER]
        .iter()
        .flat_map(|k| store.config_entries_of(k).map(|e| e.name.clone()))
        .chain(
            store
                .intentions()
                .into_iter()
                .filter(|i| !i.permissions.is_empty())
                .map(|i| i.destination_name.clone()),
        )
        .collect()
}

/// Intentions with `Permissions` (L7) are enforced on requests, so their destination must speak http, http2 or
/// grpc by the stored entries; on a tcp service they could never match, and are refused when written.
pub fn check_l7_intention(store: &Store, destination: &str) -> Result<(), String> {
    let protocol = protocol_of(store, destination);
    if HTTP_PROTOCOLS.contains(&protocol.as_str()) {
        return Ok(());
    }
    Err(format!(
        "service {destination:?} has protocol {protocol:?}: intentions with Permissions (L7) need http, http2 or \
         grpc (set Protocol in its service-defaults, or in proxy-defaults for every service)"
    ))
}

/// Checks that every routed service still speaks a protocol that routes once `service_defaults` (name → body,
/// `None` for deleted) and `proxy_defaults` replace what the store holds.
fn routing_survives(
    store: &Store,
    service_defaults: Option<(&str, Option<&Map<String, Value>>)>,
    proxy_defaults: Option<Option<&Map<String, Value>>>,
    what: &str,
) -> Result<(), String> {
    let global = match proxy_defaults {
        Some(body) => global_protocol(body),
        None => global_protocol(
            store
                .config_entry(PROXY_DEFAULTS, "global")
                .map(|e| &e.body),
        ),
    };
    for name in routed(store) {
        let own = match service_defaults {
            Some((changed, body)) if changed == name => own_protocol(body),
            _ => own_protocol(store.config_entry(SERVICE_DEFAULTS, &name).map(|e| &e.body)),
        };
        let protocol = own.unwrap_or_else(|| global.clone());
        if !HTTP_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(format!(
                "{name:?} has a service-router, a service-splitter or intentions with Permissions, which need http, \
                 http2 or grpc: {what} would leave it speaking {protocol:?} (delete those first)"
            ));
        }
    }
    Ok(())
}

/// A `service-defaults` or `proxy-defaults` write may not take a service that has a router or splitter to a
/// protocol that cannot route (directly, or through the `proxy-defaults` it falls back to).
pub fn check_protocol_change(value: &Value, store: &Store) -> Result<(), String> {
    let kind = weft_types::config_entry::kind_of(value);
    let name = value
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind.as_str() {
        SERVICE_DEFAULTS => {
            routing_survives(store, Some((name, value.as_object())), None, "this entry")
        }
        PROXY_DEFAULTS => {
            routing_survives(store, None, Some(value.as_object()), "this proxy-defaults")
        }
        _ => Ok(()),
    }
}

/// Deleting a `service-defaults` or `proxy-defaults` may not leave a routed service without a protocol that
/// routes.
pub fn check_protocol_delete(kind: &str, name: &str, store: &Store) -> Result<(), String> {
    match kind {
        SERVICE_DEFAULTS => routing_survives(
            store,
            Some((name, None)),
            None,
            "deleting its service-defaults",
        ),
        PROXY_DEFAULTS => routing_survives(store, None, Some(None), "deleting proxy-defaults"),
        _ => Ok(()),
    }
}

/// The services a discovery-chain entry sends traffic to besides its own: router destinations, splits, and a
/// resolver's redirect and failover targets. Writing the entry needs `service:read` on each, as in Consul.
pub fn related_services(value: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut add = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            out.insert(s.to_string());
        }
    };
    let items = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    for route in items(value.get("Routes")) {
        add(route.get("Destination").and_then(|d| d.get("Service")));
    }
    for split in items(value.get("Splits")) {
        add(split.get("Service"));
    }
    add(value.get("Redirect").and_then(|r| r.get("Service")));
    if let Some(failover) = value.get("Failover").and_then(Value::as_object) {
        for f in failover.values() {
            add(f.get("Service"));
            for t in items(f.get("Targets")) {
                add(t.get("Service"));
            }
        }
    }
    let own = value
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    out.remove(own);
    out
}

fn named(name: &str) -> Result<String, String> {
    if name.is_empty() || name == "*" {
        return Err("Name is required, and names one service (not \"*\")".into());
    }
    Ok(name.to_string())
}

fn router(r: Router) -> Result<String, String> {
    bounded("Routes", &r.routes)?;
    // Every matcher may be a regexp to compile: bound them over the whole entry, not per route.
    let matchers: usize = r
        .routes
        .iter()
        .filter_map(|route| route.matches.as_ref().and_then(|m| m.http.as_ref()))
        .map(|h| 1 + h.header.len() + h.query_param.len())
        .sum();
    if matchers > MAX_ITEMS {
        return Err(format!(
            "at most {MAX_ITEMS} path, header and query matchers in all"
        ));
    }
    for (i, route) in r.routes.iter().enumerate() {
        let at = format!("Route[{i}]");
        let http = route.matches.as_ref().and_then(|m| m.http.as_ref());
        if let Some(h) = http {
            let paths = [&h.path_exact, &h.path_prefix, &h.path_regex]
                .iter()
                .filter(|p| !p.is_empty())
                .count();
            if paths > 1 {
                return Err(format!(
                    "{at} should only contain at most one of PathExact, PathPrefix, or PathRegex"
                ));
            }
            for (field, p) in [("PathExact", &h.path_exact), ("PathPrefix", &h.path_prefix)] {
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(format!("{at} {field} doesn't start with '/': {p:?}"));
                }
            }
            if !h.path_regex.is_empty() {
                regex(&format!("{at} PathRegex"), &h.path_regex)?;
            }
            bounded("Header", &h.header)?;
            for (j, hm) in h.header.iter().enumerate() {
                if hm.name.is_empty() {
                    return Err(format!("{at} Header[{j}] missing required Name field"));
                }
                let set = [
                    hm.present,
                    !hm.exact.is_empty(),
                    !hm.prefix.is_empty(),
                    !hm.suffix.is_empty(),
                    !hm.regex.is_empty(),
                ]
                .iter()
                .filter(|s| **s)
                .count();
                if set != 1 {
                    return Err(format!(
                        "{at} Header[{j}] should contain exactly one of Present, Exact, Prefix, Suffix, or Regex"
                    ));
                }
                if !hm.regex.is_empty() {
                    regex(&format!("{at} Header[{j}] Regex"), &hm.regex)?;
                }
            }
            bounded("QueryParam", &h.query_param)?;
            for (j, q) in h.query_param.iter().enumerate() {
                if q.name.is_empty() {
                    return Err(format!("{at} QueryParam[{j}] missing required Name field"));
                }
                let set = [q.present, !q.exact.is_empty(), !q.regex.is_empty()]
                    .iter()
                    .filter(|s| **s)
                    .count();
                if set > 1 {
                    return Err(format!(
                        "{at} QueryParam[{j}] should contain at most one of Present, Exact, or Regex"
                    ));
                }
                if !q.regex.is_empty() {
                    regex(&format!("{at} QueryParam[{j}] Regex"), &q.regex)?;
                }
            }
            let mut seen = BTreeSet::new();
            for m in &h.methods {
                let up = m.to_ascii_uppercase();
                if !METHODS.contains(&up.as_str()) {
                    return Err(format!("{at} Methods contains an invalid method {m:?}"));
                }
                if !seen.insert(up) {
                    return Err(format!("{at} Methods contains {m:?} more than once"));
                }
            }
        }
        if let Some(d) = &route.destination {
            let exact_or_prefix =
                http.is_some_and(|h| !h.path_exact.is_empty() || !h.path_prefix.is_empty());
            if !d.prefix_rewrite.is_empty() && !exact_or_prefix {
                return Err(format!(
                    "{at} cannot make use of PrefixRewrite without configuring either PathExact or PathPrefix"
                ));
            }
            duration(&format!("{at} RequestTimeout"), &d.request_timeout)?;
            duration(&format!("{at} IdleTimeout"), &d.idle_timeout)?;
            if d.num_retries < 0 {
                return Err(format!("{at} NumRetries must be >= 0"));
            }
            for code in &d.retry_on_status_codes {
                if !(100..=599).contains(code) {
                    return Err(format!(
                        "{at} RetryOnStatusCodes contains an invalid status {code}"
                    ));
                }
            }
        }
    }
    named(&r.name)
}

fn splitter(s: Splitter) -> Result<String, String> {
    if s.splits.is_empty() {
        return Err("no splits configured".into());
    }
    bounded("Splits", &s.splits)?;
    let mut seen = BTreeSet::new();
    let mut sum = 0.0;
    for (i, split) in s.splits.iter().enumerate() {
        if !(0.0..=100.0).contains(&split.weight) {
            return Err(format!("Splits[{i}].Weight must be between 0 and 100"));
        }
        // Weights count to two decimals, as Consul rounds them.
        sum += (split.weight * 100.0).round();
        let target = (
            split.service.clone(),
            split.service_subset.clone(),
            split.namespace.clone(),
        );
        if !seen.insert(target) {
            return Err(format!(
                "Splits[{i}]: the split destination {:?} (subset {:?}) occurs more than once",
                split.service, split.service_subset
            ));
        }
    }
    if (sum - 10_000.0).abs() > 0.5 {
        return Err(format!(
            "the sum of all split weights must be 100, not {:.2}",
            sum / 100.0
        ));
    }
    named(&s.name)
}

fn subset_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn resolver(r: Resolver) -> Result<String, String> {
    if r.subsets.len() > MAX_ITEMS || r.failover.len() > MAX_ITEMS {
        return Err(format!("Subsets and Failover: at most {MAX_ITEMS} each"));
    }
    for (name, subset) in &r.subsets {
        if !subset_name_ok(name) {
            return Err(format!("Subset defined with invalid name {name:?}"));
        }
        if !subset.filter.is_empty() {
            weft_filter::Filter::parse(&subset.filter).map_err(|e| {
                format!("Filter for subset {name:?} is not a valid expression: {e}")
            })?;
        }
    }
    if !r.default_subset.is_empty() && !r.subsets.contains_key(&r.default_subset) {
        return Err(format!(
            "Bad DefaultSubset {:?}: not a valid subset",
            r.default_subset
        ));
    }
    if let Some(redirect) = &r.redirect {
        if !r.subsets.is_empty() {
            return Err("Redirect and Subsets cannot both be set".into());
        }
        if !r.default_subset.is_empty() {
            return Err("Redirect and DefaultSubset cannot both be set".into());
        }
        if !r.failover.is_empty() {
            return Err("Redirect and Failover cannot both be set".into());
        }
        if redirect.service.is_empty()
            && redirect.service_subset.is_empty()
            && redirect.datacenter.is_empty()
        {
            return Err("Redirect is empty: set Service, ServiceSubset or Datacenter".into());
        }
        if !redirect.peer.is_empty() || !redirect.sameness_group.is_empty() {
            return Err(
                "Redirect: cluster peering and sameness groups are not supported by Weft".into(),
            );
        }
    }
    for (key, f) in &r.failover {
        if key != "*" && !r.subsets.contains_key(key) {
            return Err(format!("Bad Failover[{key:?}]: not a valid subset"));
        }
        if f.service.is_empty()
            && f.service_subset.is_empty()
            && f.datacenters.is_empty()
            && f.targets.is_empty()
        {
            return Err(format!(
                "Bad Failover[{key:?}]: one of Service, ServiceSubset, Targets or Datacenters is required"
            ));
        }
        if !f.targets.is_empty()
            && (!f.service.is_empty() || !f.service_subset.is_empty() || !f.datacenters.is_empty())
        {
            return Err(format!(
                "Bad Failover[{key:?}]: Targets cannot be set with Service, ServiceSubset or Datacenters"
            ));
        }
    }
    duration("ConnectTimeout", &r.connect_timeout)?;
    duration("RequestTimeout", &r.request_timeout)?;
    if let Some(lb) = &r.load_balancer {
        if !LB_POLICIES.contains(&lb.policy.as_str()) {
            return Err(format!(
                "Bad LoadBalancer policy {:?}: not supported",
                lb.policy
            ));
        }
        let hashing = matches!(lb.policy.as_str(), "ring_hash" | "maglev");
        if lb.ring_hash_config.is_some() && lb.policy != "ring_hash" {
            return Err(
                "LoadBalancer RingHashConfig specified for incompatible load balancing policy"
                    .into(),
            );
        }
        if lb.least_request_config.is_some() && lb.policy != "least_request" {
            return Err(
                "LoadBalancer LeastRequestConfig specified for incompatible load balancing policy"
                    .into(),
            );
        }
        if !lb.hash_policies.is_empty() && !hashing {
            return Err("LoadBalancer HashPolicies specified for non-hash-based policy".into());
        }
    }
    named(&r.name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use weft_state::Command;
    use weft_types::config_entry::StoredEntry;

    fn http_store() -> Store {
        let mut s = Store::new();
        let entry = StoredEntry {
            kind: SERVICE_DEFAULTS.into(),
            name: "web".into(),
            body: json!({"Protocol": "http"}).as_object().cloned().unwrap(),
            create_index: 0,
            modify_index: 0,
        };
        s.apply(
            1,
            0,
            &Command::ConfigEntrySet {
                entry: Box::new(entry),
                cas: None,
            },
        )
        .unwrap();
        s
    }

    #[test]
    fn chain_entries_are_checked_as_consul_checks_them() {
        let s = http_store();
        let ok = [
            json!({"Kind": "service-router", "Name": "web", "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/v2", "Methods": ["GET"], "Header": [{"Name": "x", "Exact": "1"}]}},
                 "Destination": {"ServiceSubset": "v2", "PrefixRewrite": "/", "RequestTimeout": "5s", "NumRetries": 2}}]}),
            json!({"Kind": "service-splitter", "Name": "web", "Splits": [
                {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]}),
            json!({"Kind": "service-resolver", "Name": "db", "DefaultSubset": "v1",
                "Subsets": {"v1": {"Filter": "Service.Meta.version == 1"}, "v2": {"Filter": "Service.Meta.version == 2"}},
                "Failover": {"*": {"Service": "db-backup"}}, "ConnectTimeout": "3s"}),
        ];
        for v in ok {
            validate(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            let (kind, name) = validate(&v).unwrap();
            check_protocol(&s, &kind, &name).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        for (v, why) in [
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathExact": "/a", "PathPrefix": "/b"}}}]}),
                "at most one of",
            ),
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathPrefix": "v2"}}}]}),
                "doesn't start with '/'",
            ),
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathRegex": "("}}}]}),
                "bad regular expression",
            ),
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"Header": [{"Name": "x"}]}}}]}),
                "exactly one of",
            ),
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"Methods": ["FETCH"]}}}]}),
                "invalid method",
            ),
            (
                json!({"Kind": "service-router", "Name": "web", "Routes": [{"Destination": {"PrefixRewrite": "/"}}]}),
                "PrefixRewrite",
            ),
            (
                json!({"Kind": "service-router", "Name": "api", "Routes": []}),
                "does not permit advanced routing",
            ),
            (
                json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90}, {"Weight": 5, "Service": "x"}]}),
                "must be 100",
            ),
            (
                json!({"Kind": "service-splitter", "Name": "web", "Splits": []}),
                "no splits",
            ),
            (
                json!({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 50}, {"Weight": 50}]}),
                "more than once",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "DefaultSubset": "v9"}),
                "not a valid subset",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "Subsets": {"V1": {}}}),
                "invalid name",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "Subsets": {"v1": {"Filter": "Service.Meta =="}}}),
                "not a valid expression",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "Redirect": {"Service": "x"}, "Failover": {"*": {"Service": "y"}}}),
                "cannot both be set",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "Failover": {"*": {}}}),
                "is required",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "-1s"}),
                "ConnectTimeout",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "LoadBalancer": {"Policy": "random", "HashPolicies": [{}]}}),
                "non-hash-based",
            ),
            (
                json!({"Kind": "service-resolver", "Name": "db", "Bogus": 1}),
                "unknown field",
            ),
        ] {
            let e = validate(&v)
                .and_then(|(kind, name)| check_protocol(&s, &kind, &name))
                .unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
        // A service with a router cannot go back to tcp.
        let mut s = http_store();
        let router = StoredEntry {
            kind: SERVICE_ROUTER.into(),
            name: "web".into(),
            body: serde_json::Map::new(),
            create_index: 0,
            modify_index: 0,
        };
        s.apply(
            2,
            0,
            &Command::ConfigEntrySet {
                entry: Box::new(router),
                cas: None,
            },
        )
        .unwrap();
        let tcp = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"});
        assert!(check_protocol_change(&tcp, &s)
            .unwrap_err()
            .contains("delete those first"));
        let grpc = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"});
        assert!(check_protocol_change(&grpc, &s).is_ok());
    }
}
