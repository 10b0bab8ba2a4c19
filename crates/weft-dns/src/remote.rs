//! Names this agent's state cannot answer: another datacenter's services, mesh endpoints, nodes and prepared
//! queries (`web.service.dc2.consul`), and prepared queries with a `Failover` that find nothing here. The agent asks
//! through its servers (see [`crate::DnsState::fetch`]): another datacenter's answer to the HTTP read Consul's DNS
//! makes there, or this datacenter's leader's execution of the query, which fails it over. The answer is then
//! built as for local names, with SRV targets in the answering datacenter.

use crate::answer::{healthy, node_answer, service_answer, with_tag, Answer, Question};
use crate::name::Lookup;
use crate::DnsConfig;
use serde::Deserialize;
use serde_json::Value;
use weft_types::views::CheckServiceNode;
use weft_types::{HealthCheck, Node, NodeService};

/// What a fetch brought back.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Found(Value),
    /// The other side answered 404 (an unknown node or query).
    NotFound,
    /// No server could be asked, or none answered: SERVFAIL, so resolvers try again.
    Unavailable,
}

/// One `CheckServiceNode` as the HTTP API writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: Node,
    service: NodeService,
    #[serde(default)]
    checks: Vec<HealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeEntry {
    node: Node,
}

/// A query execution's answer: its instances, where they are, and the query's DNS TTL.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Execution {
    service: String,
    nodes: Vec<Entry>,
    datacenter: String,
    #[serde(rename = "DNS", default)]
    dns: weft_types::query::QueryDns,
}

/// The HTTP read that answers `lookup` elsewhere; `None` for names that cannot be asked (characters no name of
/// ours has, which would also change the path).
pub fn path(lookup: &Lookup) -> Option<String> {
    let (prefix, name, suffix) = match lookup {
        Lookup::Service { name, .. } => ("/v1/health/service/", name, ""),
        Lookup::Connect { name } => ("/v1/health/connect/", name, ""),
        Lookup::Node { name } => ("/v1/catalog/node/", name, ""),
        Lookup::Query { name } => ("/v1/query/", name, "/execute"),
        _ => return None,
    };
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (plain && !name.is_empty()).then(|| format!("{prefix}{name}{suffix}"))
}

fn entries(value: Value) -> Option<Vec<Entry>> {
    serde_json::from_value(value).ok()
}

fn views(entries: &[Entry]) -> Vec<CheckServiceNode<'_>> {
    entries
        .iter()
        .map(|e| CheckServiceNode {
            node: &e.node,
            service: &e.service,
            checks: e.checks.iter().collect(),
        })
        .collect()
}

/// The answer to `q` from what `datacenter` (else, for a query, the datacenter that ran it) sent back.
pub fn answer(
    fetched: Fetched,
    config: &DnsConfig,
    q: &Question<'_>,
    lookup: &Lookup,
    datacenter: Option<&str>,
) -> Answer {
    let value = match fetched {
        Fetched::Found(value) => value,
        Fetched::NotFound => return Answer::nxdomain(config, q.zone),
        Fetched::Unavailable => {
            return Answer {
                code: hickory_proto::op::ResponseCode::ServFail,
                ..Answer::default()
            }
        }
    };
    // Names in the answer (SRV targets, node names) are the answering datacenter's.
    let in_dc = |dc: &str| DnsConfig {
        datacenter: dc.to_string(),
        ..config.clone()
    };
    let unreadable = || Answer {
        code: hickory_proto::op::ResponseCode::ServFail,
        ..Answer::default()
    };
    match lookup {
        Lookup::Service { name, tag } => {
            let Some(list) = entries(value) else {
                return unreadable();
            };
            let config = in_dc(datacenter.unwrap_or(&config.datacenter));
            let instances = with_tag(healthy(views(&list), &config), tag.as_deref());
            service_answer(instances, &config, q, config.service_ttl(name))
        }
        Lookup::Connect { name } => {
            let Some(list) = entries(value) else {
                return unreadable();
            };
            let config = in_dc(datacenter.unwrap_or(&config.datacenter));
            let instances = healthy(views(&list), &config);
            service_answer(instances, &config, q, config.service_ttl(name))
        }
        Lookup::Node { .. } => match serde_json::from_value::<NodeEntry>(value) {
            Ok(entry) => node_answer(
                &entry.node,
                &in_dc(datacenter.unwrap_or(&config.datacenter)),
                q,
            ),
            // Consul's answer for an unknown node is `null`.
            Err(_) => Answer::nxdomain(config, q.zone),
        },
        Lookup::Query { .. } => {
            let Ok(run) = serde_json::from_value::<Execution>(value) else {
                return unreadable();
            };
            let config = in_dc(&run.datacenter);
            let ttl = match weft_types::duration::parse_duration(&run.dns.ttl) {
                Ok(ttl) if !run.dns.ttl.is_empty() => {
                    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
                }
                _ => config.service_ttl(&run.service),
            };
            // The query's own rules chose these; they are answered as they came.
            service_answer(views(&run.nodes), &config, q, ttl)
        }
        _ => Answer::nxdomain(config, q.zone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_asked_for() {
        let service = |name: &str| Lookup::Service {
            name: name.into(),
            tag: None,
        };
        assert_eq!(
            path(&service("web")).as_deref(),
            Some("/v1/health/service/web")
        );
        assert_eq!(
            path(&Lookup::Query {
                name: "db.v1".into()
            })
            .as_deref(),
            Some("/v1/query/db.v1/execute")
        );
        assert_eq!(path(&service("a?b")), None);
        assert_eq!(path(&service("a/b")), None);
        assert_eq!(path(&service("")), None);
        assert_eq!(path(&Lookup::Apex), None);
    }
}
