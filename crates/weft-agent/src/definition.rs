//! Turning registration bodies into stored records: validation with Consul's messages, default IDs and names,
//! tagged addresses. Pure functions, so every rule is unit-tested without an agent.

use crate::AgentError;
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_types::duration::format_duration;
use weft_types::service::ServiceAddress;
use weft_types::{
    CheckDefinition, CheckKind, HealthCheck, NodeService, ServiceDefinition, Weights,
};

const MAX_META_PAIRS: usize = 64;
const MAX_META_KEY: usize = 128;
const MAX_META_VALUE: usize = 512;

/// Why service metadata is refused: Consul's messages.
#[derive(Debug, thiserror::Error)]
enum MetaError {
    #[error("Node metadata cannot contain more than {MAX_META_PAIRS} key/value pairs")]
    TooManyPairs,
    #[error("Key cannot be blank")]
    BlankKey,
    #[error("Key is too long (limit: {MAX_META_KEY} characters)")]
    KeyTooLong,
    #[error("Key contains invalid characters: {0:?}")]
    InvalidKey(String),
    #[error("Key prefix 'consul-' is reserved for internal use: {0:?}")]
    ReservedKey(String),
    #[error("Value is too long (limit: {MAX_META_VALUE} characters)")]
    ValueTooLong,
}

fn bad(msg: impl Into<String>) -> AgentError {
    AgentError::BadRequest(msg.into())
}

/// IDs and names with control characters could be registered but never addressed again (no URL or shell carries
/// them cleanly), and they persist across restarts: refused at the door.
fn printable(what: &str, value: &str) -> Result<(), AgentError> {
    if value.chars().any(char::is_control) {
        return Err(bad(format!(
            "Invalid {what} {value:?}: it contains control characters"
        )));
    }
    Ok(())
}

/// Validates a registration body and builds the service record (without checks; see [`service_checks`]).
pub fn build_service(def: &ServiceDefinition) -> Result<NodeService, AgentError> {
    if def.name.is_empty() {
        return Err(bad("Missing service name"));
    }
    printable("service name", &def.name)?;
    printable("service ID", &def.id)?;
    if def.namespace.len() > 1 && def.namespace != "default" {
        return Err(bad(format!(
            "Invalid namespace {:?}: namespaces are a Consul Enterprise feature",
            def.namespace
        )));
    }
    if matches!(def.address.as_str(), "0.0.0.0" | "::" | "[::]") {
        return Err(bad("Invalid service address"));
    }
    if let Some(w) = def.weights {
        if w.passing <= 0 {
            return Err(bad("Invalid Weights: Passing must be greater than 0"));
        }
        if w.warning < 0 {
            return Err(bad(
                "Invalid Weights: Warning must be greater or equal than 0",
            ));
        }
    }
    validate_meta(&def.meta).map_err(|e| bad(format!("Invalid Service Meta: {e}")))?;
    match def.kind.as_str() {
        "" => {}
        "connect-proxy" => {
            if def.port == 0 && def.socket_path.is_empty() {
                return Err(bad(
                    "Validation failed: Port or SocketPath must be set for a connect-proxy",
                ));
            }
            let dest = def
                .proxy
                .as_ref()
                .map(|p| p.destination_service_name.as_str())
                .unwrap_or("");
            if dest.is_empty() {
                return Err(bad(
                    "Validation failed: Proxy.DestinationServiceName must be non-empty for Connect proxy services",
                ));
            }
        }
        "ingress-gateway" | "terminating-gateway" | "mesh-gateway" | "api-gateway" => {}
        other => return Err(bad(format!("Invalid service kind: {other:?}"))),
    }
    let native = def.connect.as_ref().is_some_and(|c| c.native);
    if native && def.port == 0 && def.socket_path.is_empty() {
        return Err(bad(
            "Validation failed: Port or SocketPath must be set for a Connect native service.",
        ));
    }
    let mut tagged = def.tagged_addresses.clone();
    if let Ok(ip) = def.address.parse::<IpAddr>() {
        let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        for scope in ["lan", "wan"] {
            tagged
                .entry(format!("{scope}_{family}"))
                .or_insert_with(|| ServiceAddress {
                    address: def.address.clone(),
                    port: def.port,
                });
        }
    }
    Ok(NodeService {
        kind: def.kind.clone(),
        id: if def.id.is_empty() {
            def.name.clone()
        } else {
            def.id.clone()
        },
        service: def.name.clone(),
        tags: def.tags.clone(),
        address: def.address.clone(),
        tagged_addresses: tagged,
        meta: def.meta.clone(),
        port: def.port,
        socket_path: def.socket_path.clone(),
        weights: def.weights.unwrap_or_default(),
        enable_tag_override: def.enable_tag_override,
        locality: def
            .locality
            .clone()
            .filter(|l| !l.region.is_empty() || !l.zone.is_empty()),
        proxy: {
            let mut proxy = def.proxy.clone().unwrap_or_default();
            for upstream in &mut proxy.upstreams {
                if upstream.destination_type.is_empty() {
                    upstream.destination_type = "service".into();
                }
            }
            proxy
        },
        connect: weft_types::service::ServiceConnect { native },
        ..NodeService::default()
    })
}

fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), MetaError> {
    if meta.len() > MAX_META_PAIRS {
        return Err(MetaError::TooManyPairs);
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(MetaError::BlankKey);
        }
        if k.len() > MAX_META_KEY {
            return Err(MetaError::KeyTooLong);
        }
        if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(MetaError::InvalidKey(k.clone()));
        }
        if k.starts_with("consul-") {
            return Err(MetaError::ReservedKey(k.clone()));
        }
        if v.len() > MAX_META_VALUE {
            return Err(MetaError::ValueTooLong);
        }
    }
    Ok(())
}

/// The check definitions of a service registration, with Consul's default IDs (`service:<id>`, or
/// `service:<id>:<n>` when there are several) and names.
pub fn service_checks(def: &ServiceDefinition, svc: &NodeService) -> Vec<CheckDefinition> {
    let all: Vec<&CheckDefinition> = def.check.iter().chain(def.checks.iter()).collect();
    let several = all.len() > 1;
    all.into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            if c.check_id.is_empty() {
                c.check_id = if several {
                    format!("service:{}:{}", svc.id, i + 1)
                } else {
                    format!("service:{}", svc.id)
                };
            }
            if c.name.is_empty() {
                c.name = format!("Service '{}' check", svc.service);
            }
            c.service_id = svc.id.clone();
            c
        })
        .collect()
}

/// Validates a check definition and builds its catalog record for `node`. `service` supplies the owner's name and
/// tags for service checks.
pub fn build_check(
    def: &CheckDefinition,
    node: &str,
    service: Option<&NodeService>,
) -> Result<(HealthCheck, CheckKind), AgentError> {
    printable("check name", &def.name)?;
    printable("check ID", &def.check_id)?;
    let kind = def.kind().map_err(|e| bad(e.to_string()))?;
    if def
        .interval
        .is_some_and(|i| !i.is_zero() && i < weft_types::check::MIN_INTERVAL)
    {
        tracing::warn!(check = %def.name, "check interval below the 1 s minimum; using 1 s");
    }
    let status = def.initial_status().map_err(|e| bad(e.to_string()))?;
    let interval = match &kind {
        CheckKind::Http { interval, .. }
        | CheckKind::Tcp { interval, .. }
        | CheckKind::Udp { interval, .. }
        | CheckKind::Script { interval, .. }
        | CheckKind::Docker { interval, .. }
        | CheckKind::Grpc { interval, .. }
        | CheckKind::H2Ping { interval, .. } => format_duration(*interval),
        _ => String::new(),
    };
    let check = HealthCheck {
        node: node.to_string(),
        check_id: if def.check_id.is_empty() {
            def.name.clone()
        } else {
            def.check_id.clone()
        },
        name: def.name.clone(),
        status,
        notes: def.notes.clone(),
        output: def.output.clone(),
        service_id: def.service_id.clone(),
        service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
        service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
        check_type: kind.type_name().to_string(),
        interval,
        timeout: def.timeout.map(format_duration).unwrap_or_default(),
        exposed_port: 0,
        definition: def.to_definition(),
        create_index: 0,
        modify_index: 0,
    };
    Ok((check, kind))
}

/// The sidecar registration a `Connect.SidecarService` block stands for (Consul's `sidecar_service.go`): ID
/// `<parent-id>-sidecar-proxy`, name `<parent-name>-sidecar-proxy`, the proxy pointed at the parent on
/// 127.0.0.1, and a listening check plus an alias of the parent when the block defines no checks. `port` is the
/// port the caller allocated.
pub fn expand_sidecar(
    parent: &ServiceDefinition,
    port: u16,
) -> Result<ServiceDefinition, AgentError> {
    let Some(sc) = parent
        .connect
        .as_ref()
        .and_then(|c| c.sidecar_service.as_deref())
    else {
        return Err(bad("no SidecarService to expand"));
    };
    if !sc.id.is_empty() {
        return Err(bad(
            "A SidecarService cannot specify an ID as this is managed by the agent",
        ));
    }
    if sc
        .connect
        .as_ref()
        .is_some_and(|c| c.sidecar_service.is_some())
    {
        return Err(bad("A SidecarService cannot have a nested SidecarService"));
    }
    let parent_id = if parent.id.is_empty() {
        parent.name.clone()
    } else {
        parent.id.clone()
    };
    let mut side = sc.clone();
    side.id = format!("{parent_id}-sidecar-proxy");
    if side.name.is_empty() {
        side.name = format!("{}-sidecar-proxy", parent.name);
    }
    if side.kind.is_empty() {
        side.kind = "connect-proxy".into();
    }
    if side.address.is_empty() {
        side.address = parent.address.clone();
    }
    if side.tags.is_empty() {
        side.tags = parent.tags.clone();
    }
    if side.meta.is_empty() {
        side.meta = parent.meta.clone();
    }
    if side.locality.is_none() {
        side.locality = parent.locality.clone();
    }
    if side.port == 0 {
        side.port = port;
    }
    let mut proxy = side.proxy.take().unwrap_or_default();
    proxy.destination_service_name = parent.name.clone();
    proxy.destination_service_id = parent_id.clone();
    if proxy.local_service_address.is_empty()
        && proxy.local_service_port == 0
        && proxy.local_service_socket_path.is_empty()
    {
        proxy.local_service_address = "127.0.0.1".into();
        proxy.local_service_port = parent.port;
    }
    side.proxy = Some(proxy);
    if side.check.is_none() && side.checks.is_empty() {
        let addr = if side.address.is_empty() {
            "127.0.0.1".to_string()
        } else {
            side.address.clone()
        };
        side.checks = vec![
            CheckDefinition {
                name: "Connect Sidecar Listening".into(),
                tcp: format!("{addr}:{}", side.port),
                interval: Some(std::time::Duration::from_secs(10)),
                ..CheckDefinition::default()
            },
            CheckDefinition {
                name: format!("Connect Sidecar Aliasing {parent_id}"),
                alias_service: parent_id,
                ..CheckDefinition::default()
            },
        ];
    }
    if side.token.is_empty() {
        side.token = parent.token.clone();
    }
    Ok(side)
}

/// Default weights when a registration gave none.
pub fn default_weights() -> Weights {
    Weights::default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weft_types::lenient::decode;

    fn def(json: &str) -> ServiceDefinition {
        decode(json.as_bytes()).unwrap()
    }

    #[test]
    fn defaults_and_tagged_addresses() {
        let d = def(r#"{"name":"web","address":"10.0.0.5","port":8080}"#);
        let s = build_service(&d).unwrap();
        assert_eq!(s.id, "web");
        assert_eq!(s.tagged_addresses["lan_ipv4"].address, "10.0.0.5");
        assert_eq!(
            s.weights,
            Weights {
                passing: 1,
                warning: 1
            }
        );
    }

    #[test]
    fn validation_messages() {
        let cases = [
            (r#"{"port":1}"#, "Missing service name"),
            (
                r#"{"name":"a","address":"0.0.0.0"}"#,
                "Invalid service address",
            ),
            (
                r#"{"name":"a","weights":{"passing":0,"warning":1}}"#,
                "Invalid Weights: Passing must be greater than 0",
            ),
            (
                r#"{"name":"a","meta":{"consul-x":"1"}}"#,
                "Invalid Service Meta:",
            ),
            (
                r#"{"name":"a","kind":"connect-proxy"}"#,
                "Port or SocketPath must be set for a connect-proxy",
            ),
            (
                r#"{"name":"a","kind":"connect-proxy","port":1}"#,
                "Proxy.DestinationServiceName must be non-empty",
            ),
        ];
        for (body, want) in cases {
            let err = build_service(&def(body)).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn check_ids_follow_consul() {
        let d = def(
            r#"{"name":"web","id":"web1","checks":[{"ttl":"10s"},{"tcp":"127.0.0.1:1","interval":"5s"}]}"#,
        );
        let s = build_service(&d).unwrap();
        let checks = service_checks(&d, &s);
        assert_eq!(checks[0].check_id, "service:web1:1");
        assert_eq!(checks[1].check_id, "service:web1:2");
        assert_eq!(checks[0].name, "Service 'web' check");
        let (hc, kind) = build_check(&checks[1], "n1", Some(&s)).unwrap();
        assert_eq!(hc.check_type, "tcp");
        assert_eq!(hc.interval, "5s");
        assert!(matches!(kind, CheckKind::Tcp { .. }));
        let single = def(r#"{"name":"web","check":{"ttl":"10s","status":"passing"}}"#);
        let s = build_service(&single).unwrap();
        let c = service_checks(&single, &s);
        assert_eq!(c[0].check_id, "service:web");
        assert_eq!(
            build_check(&c[0], "n1", Some(&s)).unwrap().0.status,
            weft_types::CheckStatus::Passing
        );
    }

    #[test]
    fn bad_checks_are_refused() {
        for body in [
            r#"{"name":"c","http":"http://x","interval":"0s"}"#,
            r#"{"name":"c","http":"ftp://x","interval":"1s"}"#,
            r#"{"name":"c","ttl":"10s","status":"bogus"}"#,
            r#"{"name":"c","grpc":"localhost:9090"}"#,
            r#"{"name":"c","h2ping":"localhost:9090"}"#,
            r#"{"name":"c","udp":"localhost:53"}"#,
            r#"{"name":"c","docker_container_id":"web","interval":"1s"}"#,
            r#"{"name":"c","os_service":"sshd","interval":"1s"}"#,
            r#"{"name":"c","args":["/bin/true"]}"#,
            r#"{"name":"c","args":[""],"interval":"1s"}"#,
        ] {
            let c: CheckDefinition = decode(body.as_bytes()).unwrap();
            assert!(build_check(&c, "n1", None).is_err(), "{body}");
        }
    }
}
