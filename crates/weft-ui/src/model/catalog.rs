//! Catalog views: the services list (sidecars folded into the service they serve), the nodes list, and the instances
//! and checks of one service or node. Computed from the store's read methods into owned rows, no HTML.

use super::health::{Health, Tally};
use crate::links;
use std::collections::{BTreeMap, BTreeSet};
use weft_state::Store;
use weft_types::{HealthCheck, Node, NodeService};

/// One check, as a card shows it.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub name: String,
    pub id: String,
    pub health: Health,
    pub kind: String,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
}

impl CheckView {
    pub fn of(c: &HealthCheck) -> CheckView {
        let kind = if !c.check_type.is_empty() {
            c.check_type.clone()
        } else if c.check_id == "serfHealth" {
            "serf".into()
        } else {
            infer_kind(c).into()
        };
        CheckView {
            name: c.name.clone(),
            id: c.check_id.clone(),
            health: Health::of(c.status),
            kind,
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
        }
    }
}

/// The check type from its definition, for stores that do not record it.
fn infer_kind(c: &HealthCheck) -> &'static str {
    let d = &c.definition;
    if d.ttl.is_some() {
        "ttl"
    } else if !d.http.is_empty() {
        "http"
    } else if !d.tcp.is_empty() {
        "tcp"
    } else if !d.alias_service.is_empty() || !d.alias_node.is_empty() {
        "alias"
    } else {
        "manual"
    }
}

/// The display name of a service kind; plain services have none.
pub fn kind_label(kind: &str) -> Option<&'static str> {
    match kind {
        "" => None,
        "connect-proxy" => Some("Proxy"),
        "ingress-gateway" => Some("Ingress gateway"),
        "terminating-gateway" => Some("Terminating gateway"),
        "mesh-gateway" => Some("Mesh gateway"),
        "api-gateway" => Some("API gateway"),
        _ => Some("Other kind"),
    }
}

/// The address an instance is reached at: its own, else its node's.
pub fn instance_address(node: &Node, svc: &NodeService) -> String {
    let host = if svc.address.is_empty() {
        node.address.as_str()
    } else {
        svc.address.as_str()
    };
    match svc.port {
        0 => host.to_string(),
        p => weft_types::addr::join_host_port(host, p),
    }
}

/// Node-level checks and the instance's own checks.
fn instance_checks<'a>(store: &'a Store, node: &str, id: &str) -> Vec<&'a HealthCheck> {
    store
        .node_checks(node)
        .filter(|c| c.service_id.is_empty() || c.service_id == id)
        .collect()
}

/// One row of the services list.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub href: String,
    pub kind: Option<&'static str>,
    pub instances: usize,
    pub tally: Tally,
    pub health: Health,
    pub tags: Vec<String>,
    /// "in service mesh with proxy", "Connect native", or nothing.
    pub mesh: Option<&'static str>,
    /// Lower-case name and tags, for the search box.
    pub search: String,
}

/// The services list: one row per service name, sidecar proxies folded into the service they serve (their checks
/// count towards its health and it shows as "in service mesh with proxy"); proxies for services that are not
/// registered keep their own row so nothing is hidden.
pub fn service_rows(dc: &str, store: &Store) -> Vec<ServiceRow> {
    let names = store.service_tags();
    let mut rows: BTreeMap<String, ServiceRow> = BTreeMap::new();
    let mut folded: Vec<(String, Tally)> = Vec::new();
    for (name, tags) in &names {
        let instances = store.instances(name);
        let mut tally = Tally::default();
        let mut kinds = BTreeSet::new();
        let mut native = false;
        let mut own = 0;
        for (node, svc) in &instances {
            let t = Tally::of(instance_checks(store, &node.node, &svc.id));
            let dest = &svc.proxy.destination_service_name;
            if svc.is_connect_proxy() && !dest.is_empty() && names.contains_key(dest.as_str()) {
                folded.push((dest.clone(), t));
                continue;
            }
            own += 1;
            tally.merge(t);
            kinds.insert(svc.kind.clone());
            native |= svc.connect.native;
        }
        if own == 0 && !instances.is_empty() {
            continue;
        }
        let kind = kinds.iter().next().and_then(|k| kind_label(k));
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let search = format!("{} {}", name, tags.join(" ")).to_lowercase();
        rows.insert(
            name.to_string(),
            ServiceRow {
                name: name.to_string(),
                href: links::service(dc, name, ""),
                kind,
                instances: own,
                tally,
                health: tally.health(),
                tags,
                mesh: native.then_some("Connect native"),
                search,
            },
        );
    }
    for (dest, t) in folded {
        if let Some(row) = rows.get_mut(&dest) {
            row.tally.merge(t);
            row.health = row.tally.health();
            row.mesh = Some("in service mesh with proxy");
        }
    }
    rows.into_values().collect()
}

/// One row of the nodes list.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub name: String,
    pub href: String,
    pub address: String,
    pub tally: Tally,
    pub health: Health,
    pub leader: bool,
    /// Service instances, sidecar proxies not counted (they belong to their service).
    pub services: usize,
    pub search: String,
}

pub fn node_rows(dc: &str, store: &Store, is_leader: impl Fn(&Node) -> bool) -> Vec<NodeRow> {
    store
        .nodes()
        .map(|n| {
            let tally = Tally::of(store.node_checks(&n.node));
            NodeRow {
                name: n.node.clone(),
                href: links::node(dc, &n.node, "health-checks"),
                address: n.address.clone(),
                tally,
                health: tally.health(),
                leader: is_leader(n),
                services: store
                    .node_services(&n.node)
                    .filter(|s| !s.is_connect_proxy())
                    .count(),
                search: format!("{} {}", n.node, n.address).to_lowercase(),
            }
        })
        .collect()
}

/// An upstream a sidecar declares.
#[derive(Debug, Clone)]
pub struct UpstreamView {
    pub name: String,
    pub href: String,
    /// Where the application reaches it: `127.0.0.1:9191`.
    pub bind: String,
    pub datacenter: String,
}

/// A sidecar proxy next to an instance.
#[derive(Debug, Clone)]
pub struct SidecarView {
    pub id: String,
    pub address: String,
    pub health: Health,
    pub checks: Vec<CheckView>,
    pub upstreams: Vec<UpstreamView>,
}

/// One instance of a service, with everything its card shows.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub id: String,
    pub node: String,
    pub node_href: String,
    pub address: String,
    pub tags: Vec<String>,
    pub kind: Option<&'static str>,
    pub health: Health,
    pub node_checks: Vec<CheckView>,
    pub service_checks: Vec<CheckView>,
    pub sidecar: Option<SidecarView>,
    /// The upstreams of an instance that is itself a proxy.
    pub upstreams: Vec<UpstreamView>,
    pub native: bool,
}

fn upstreams(dc: &str, svc: &NodeService) -> Vec<UpstreamView> {
    svc.proxy
        .upstreams
        .iter()
        .map(|u| {
            let addr = if u.local_bind_address.is_empty() {
                "127.0.0.1"
            } else {
                u.local_bind_address.as_str()
            };
            UpstreamView {
                name: u.destination_name.clone(),
                href: links::service(dc, &u.destination_name, "topology"),
                bind: format!("{addr}:{}", u.local_bind_port),
                datacenter: u.datacenter.clone(),
            }
        })
        .collect()
}

fn instance_view(dc: &str, store: &Store, node: &Node, svc: &NodeService) -> InstanceView {
    let checks = instance_checks(store, &node.node, &svc.id);
    let tally = Tally::of(checks.iter().copied());
    let (node_checks, service_checks): (Vec<_>, Vec<_>) =
        checks.iter().partition(|c| c.service_id.is_empty());
    let sidecar = store
        .node_services(&node.node)
        .find(|s| {
            s.is_connect_proxy()
                && s.proxy.destination_service_name == svc.service
                && (s.proxy.destination_service_id == svc.id
                    || s.proxy.destination_service_id.is_empty())
        })
        .map(|s| {
            let own: Vec<&HealthCheck> = store
                .node_checks(&node.node)
                .filter(|c| c.service_id == s.id)
                .collect();
            SidecarView {
                id: s.id.clone(),
                address: instance_address(node, s),
                health: Tally::of(own.iter().copied()).health(),
                checks: own.into_iter().map(CheckView::of).collect(),
                upstreams: upstreams(dc, s),
            }
        });
    let mut health = tally.health();
    if let Some(side) = &sidecar {
        health = health.max(side.health);
    }
    InstanceView {
        id: svc.id.clone(),
        node: node.node.clone(),
        node_href: links::node(dc, &node.node, "health-checks"),
        address: instance_address(node, svc),
        tags: svc.tags.clone(),
        kind: kind_label(&svc.kind),
        health,
        node_checks: node_checks.into_iter().map(CheckView::of).collect(),
        service_checks: service_checks.into_iter().map(CheckView::of).collect(),
        sidecar,
        upstreams: if svc.is_connect_proxy() {
            upstreams(dc, svc)
        } else {
            Vec::new()
        },
        native: svc.connect.native,
    }
}

/// The instances of a service, each with its node checks, its own checks and its sidecar.
pub fn instances(dc: &str, store: &Store, name: &str) -> Vec<InstanceView> {
    store
        .instances(name)
        .into_iter()
        .map(|(node, svc)| instance_view(dc, store, node, svc))
        .collect()
}

/// A service instance on a node, with the service it belongs to.
#[derive(Debug, Clone)]
pub struct NodeInstance {
    pub service: String,
    pub service_href: String,
    pub view: InstanceView,
}

/// The service instances on one node, sidecars folded into the instance they serve.
pub fn node_instances(dc: &str, store: &Store, node: &str) -> Vec<NodeInstance> {
    let Some(n) = store.node(node) else {
        return Vec::new();
    };
    let services: Vec<&NodeService> = store.node_services(node).collect();
    let has_parent = |p: &NodeService| {
        p.is_connect_proxy()
            && services.iter().any(|s| {
                !s.is_connect_proxy()
                    && s.service == p.proxy.destination_service_name
                    && (p.proxy.destination_service_id.is_empty()
                        || p.proxy.destination_service_id == s.id)
            })
    };
    services
        .iter()
        .filter(|s| !has_parent(s))
        .map(|s| NodeInstance {
            service: s.service.clone(),
            service_href: links::service(dc, &s.service, ""),
            view: instance_view(dc, store, n, s),
        })
        .collect()
}

/// The checks on one node: node-level first, then by service.
pub fn node_checks(store: &Store, node: &str) -> Vec<CheckView> {
    let mut checks: Vec<CheckView> = store.node_checks(node).map(CheckView::of).collect();
    checks.sort_by(|a, b| {
        (!a.service_id.is_empty(), &a.service_name, &a.name).cmp(&(
            !b.service_id.is_empty(),
            &b.service_name,
            &b.name,
        ))
    });
    checks
}

/// Whether the service has a sidecar proxy or is Connect-native (so its default tab is the topology).
pub fn in_mesh(store: &Store, name: &str) -> bool {
    !store.connect_instances(name).is_empty()
        || store
            .instances(name)
            .iter()
            .any(|(_, s)| s.is_connect_proxy())
}

/// The worst health over every instance of a service and its proxies (the topology cards' colour).
pub fn service_health(store: &Store, name: &str) -> Option<Health> {
    let instances = store.instances(name);
    if instances.is_empty() {
        return None;
    }
    let mut tally = Tally::default();
    for (node, svc) in instances.iter().chain(store.connect_instances(name).iter()) {
        tally.merge(Tally::of(instance_checks(store, &node.node, &svc.id)));
    }
    Some(tally.health())
}
