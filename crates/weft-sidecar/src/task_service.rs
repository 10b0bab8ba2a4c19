//! `weft connect proxy -register-service FILE`: the sidecar of a task (an application and its proxy sharing one
//! network namespace) registers the application itself, at the task's address, and reports whether the application
//! answers, since only the sidecar can reach an application that listens on the task's loopback.

use crate::ecs::EcsTask;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The service a task's sidecar registers for its application (`-register-service`).
pub struct TaskService {
    pub id: String,
    /// The TTL check the sidecar keeps passing while the application accepts connections.
    pub check: String,
    pub body: Value,
}

impl TaskService {
    /// The registration from a definition (`-register-service`): under ECS, `task` gives the address, the ID suffix,
    /// the locality and the task's meta; elsewhere the address is the one this task reaches its agent from.
    pub async fn from_definition(
        file_or_json: &str,
        agent_addr: &str,
        task: Option<&EcsTask>,
    ) -> Result<TaskService> {
        let source = if file_or_json.trim_start().starts_with('{') {
            "the inline service definition".to_string()
        } else {
            file_or_json.to_string()
        };
        let defs = crate::service_file::definitions_from(file_or_json)?;
        let [def] = defs.as_slice() else {
            bail!("{source}: -register-service takes exactly one service definition")
        };
        let Value::Object(def) = def else {
            bail!("{source}: the service definition is not an object")
        };
        let (name, id) = crate::service_file::name_and_id(&Value::Object(def.clone()));
        if name.is_empty() {
            bail!("{source}: the service definition has no name");
        }
        let connect = field(def, "connect").and_then(|c| c.as_object());
        if connect
            .and_then(|c| field(c, "sidecar_service").or_else(|| field(c, "sidecarservice")))
            .is_none()
        {
            bail!("{source}: the definition needs connect.sidecar_service for the proxy to serve");
        }
        let mut body = def.clone();
        let address = field(def, "address").and_then(|v| v.as_str()).unwrap_or("");
        if address.is_empty() {
            body.retain(|k, _| !k.eq_ignore_ascii_case("address"));
            let ip = match task {
                Some(t) => Some(t.ip),
                None => task_address(agent_addr).await,
            };
            if let Some(ip) = ip {
                body.insert("Address".into(), json!(ip.to_string()));
            }
        }
        let id = match task {
            // Every task of an ECS service registers apart, and a replaced task never takes over its
            // predecessor's registration.
            Some(t) => {
                let id = format!("{id}-{}", t.id);
                body.retain(|k, _| !k.eq_ignore_ascii_case("id"));
                body.insert("ID".into(), json!(id));
                if field(def, "locality").is_none() {
                    body.insert(
                        "Locality".into(),
                        json!({"Region": t.region, "Zone": t.zone}),
                    );
                }
                let meta = body
                    .iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case("meta"))
                    .map(|(_, v)| v);
                let mut merged = meta
                    .and_then(|m| m.as_object().cloned())
                    .unwrap_or_default();
                merged.entry("task-arn").or_insert_with(|| json!(t.arn));
                merged.entry("task-id").or_insert_with(|| json!(t.id));
                body.retain(|k, _| !k.eq_ignore_ascii_case("meta"));
                body.insert("Meta".into(), Value::Object(merged));
                id
            }
            None => id,
        };
        let check = format!("{id}-app");
        let mut checks: Vec<Value> = field(def, "checks")
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default();
        body.retain(|k, _| !k.eq_ignore_ascii_case("checks"));
        checks.push(json!({
            "CheckID": check,
            "Name": "Application reachable from its sidecar",
            "TTL": "10s",
            "Status": "critical",
        }));
        body.insert("Checks".into(), json!(checks));
        Ok(TaskService {
            id,
            check,
            body: Value::Object(body),
        })
    }
}

/// A definition's field, by Consul's case-insensitive key.
fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The address this task reaches its agent from: the one its peers reach it at. `None` when the agent is on
/// loopback (then the agent's own node address is the task's too).
pub async fn task_address(agent_addr: &str) -> Option<std::net::IpAddr> {
    let hostport = agent_addr
        .split_once("://")
        .map_or(agent_addr, |(_, rest)| rest)
        .trim_end_matches('/');
    let agent = tokio::net::lookup_host(hostport).await.ok()?.next()?;
    let any: std::net::IpAddr = if agent.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
    socket.connect(agent).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback()).then_some(ip)
}

/// Why the application did not answer a probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Connect(#[from] std::io::Error),
    #[error("timed out")]
    TimedOut,
}

/// Dials the application once, as its sidecar would for an inbound connection.
pub async fn probe(addr: &str) -> Result<(), ProbeError> {
    match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        Err(_) => Err(ProbeError::TimedOut),
    }
}
