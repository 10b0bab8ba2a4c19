//! Anti-entropy: the catalog's record of this node follows the agent's local state.
//!
//! A pass compares the catalog (as this process sees it: a server's store or a client's replica) with the local
//! services and checks, and writes only the differences: the node and its `serfHealth` when missing, services and
//! checks that are missing or differ, and catalog entries for this node that the agent does not own. Passes run
//! when the catalog changes, when local state changes, and every [`FULL_SYNC`] regardless, so a service deleted
//! from the catalog behind the agent's back comes back, and a write that failed during an election is retried.

use crate::{Inner, SERF_HEALTH};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use weft_state::{Command, Registration, Table};
use weft_types::{CheckStatus, HealthCheck, Node, NodeService};

/// The longest time between two passes.
pub(crate) const FULL_SYNC: Duration = Duration::from_secs(30);
/// Changes arriving together are handled in one pass.
/// How soon a sync round that left services out (blocked by ACLs) is tried again.
const BLOCKED_RETRY: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_millis(100);

pub(crate) async fn anti_entropy(agent: Weak<Inner>) {
    let (mut nodes, mut services, mut checks, mut local) = match agent.upgrade() {
        Some(a) => (
            a.server.subscribe(Table::Nodes),
            a.server.subscribe(Table::Services),
            a.server.subscribe(Table::Checks),
            a.changes.subscribe(),
        ),
        None => return,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(inner) = agent.upgrade() else { return };
        if inner.leaving.load(Ordering::SeqCst) {
            return;
        }
        let outcome = {
            let _guard = inner.sync.lock().await;
            sync_once(&inner).await
        };
        drop(inner);
        // A service blocked by ACLs is tried again soon: its token may be created or granted at any moment.
        let retry_blocked = matches!(outcome, Ok((_, true)));
        let pause = match outcome.map(|(n, _)| n) {
            Ok(0) => {
                backoff = Duration::from_millis(200);
                None
            }
            Ok(n) => {
                tracing::debug!(writes = n, "anti-entropy repaired the catalog");
                backoff = Duration::from_millis(200);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "anti-entropy could not sync; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                Some(backoff)
            }
        };
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
            continue;
        }
        tokio::select! {
            _ = nodes.changed() => {}
            _ = services.changed() => {}
            _ = checks.changed() => {}
            _ = local.changed() => {}
            _ = tokio::time::sleep(if retry_blocked { BLOCKED_RETRY } else { FULL_SYNC }) => {}
        }
        tokio::time::sleep(SETTLE).await;
        nodes.borrow_and_update();
        services.borrow_and_update();
        checks.borrow_and_update();
        local.borrow_and_update();
    }
}

/// Fields the catalog fills in itself; equal services differ only in these.
fn comparable_service(s: &NodeService) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("CreateIndex");
        o.remove("ModifyIndex");
    }
    v
}

fn same_check(a: &HealthCheck, b: &HealthCheck) -> bool {
    a.status == b.status
        && a.output == b.output
        && a.name == b.name
        && a.service_id == b.service_id
        && a.notes == b.notes
}

/// One pass; answers how many writes it made.
/// One anti-entropy round: the writes it made, and whether it left services out because ACLs block them.
pub(crate) async fn sync_once(inner: &Arc<Inner>) -> Result<(usize, bool), weft_state::StoreError> {
    let cfg = &inner.config;
    let (local_services, local_checks, tokens): (Vec<NodeService>, Vec<HealthCheck>, Vec<_>) = {
        let local = inner.local();
        (
            local.services.values().map(|s| s.service.clone()).collect(),
            local.checks.values().map(|c| c.check.clone()).collect(),
            local
                .services
                .values()
                .filter_map(|s| {
                    Some((
                        s.service.id.clone(),
                        s.service.service.clone(),
                        s.token.clone()?,
                    ))
                })
                .collect(),
        )
    };
    // Config-file services whose token may not write them stay out of the catalog (decided before the store's
    // lock is taken: resolving a token may ask a server).
    let mut blocked = std::collections::BTreeSet::new();
    for (id, name, token) in tokens {
        if !inner.may_register(&name, &token).await {
            tracing::warn!(service = %name, "service registration blocked by ACLs: its token lacks service:write");
            blocked.insert(id);
        }
    }
    let mut writes: Vec<Command> = Vec::new();
    {
        let store = inner.server.read();
        let node_ok = store.node(&cfg.node_name).is_some_and(|n| {
            n.address == cfg.advertise_addr
                && n.id == cfg.node_id
                && n.locality == cfg.locality
                && meta_matches(n, &inner.node_meta())
        });
        let catalog_checks: Vec<HealthCheck> = store.node_checks(&cfg.node_name).cloned().collect();
        // In a cluster the leader owns `serfHealth` (it follows gossip); the agent only makes sure it exists.
        let serf_ok = catalog_checks.iter().any(|c| c.check_id == SERF_HEALTH);
        if !node_ok || !serf_ok {
            writes.push(node_registration(inner));
        }
        let catalog_services: Vec<NodeService> =
            store.node_services(&cfg.node_name).cloned().collect();
        for s in &local_services {
            let in_catalog = catalog_services.iter().find(|c| c.id == s.id);
            let checks: Vec<HealthCheck> = local_checks
                .iter()
                .filter(|c| c.service_id == s.id)
                .cloned()
                .collect();
            let service_same =
                in_catalog.is_some_and(|c| comparable_service(c) == comparable_service(s));
            let checks_same = checks.iter().all(|lc| {
                catalog_checks
                    .iter()
                    .any(|cc| cc.check_id == lc.check_id && same_check(cc, lc))
            });
            if (!service_same || !checks_same) && !blocked.contains(&s.id) {
                writes.push(Command::Register(Box::new(Registration {
                    node: Node {
                        node: cfg.node_name.clone(),
                        ..Node::default()
                    },
                    skip_node_update: true,
                    service: Some(s.clone()),
                    checks,
                })));
            }
        }
        let node_checks: Vec<HealthCheck> = local_checks
            .iter()
            .filter(|c| c.service_id.is_empty())
            .filter(|lc| {
                !catalog_checks
                    .iter()
                    .any(|cc| cc.check_id == lc.check_id && same_check(cc, lc))
            })
            .cloned()
            .collect();
        if !node_checks.is_empty() {
            writes.push(Command::Register(Box::new(Registration {
                node: Node {
                    node: cfg.node_name.clone(),
                    ..Node::default()
                },
                skip_node_update: true,
                service: None,
                checks: node_checks,
            })));
        }
        for c in &catalog_services {
            let owned =
                local_services.iter().any(|s| s.id == c.id) || (cfg.server && c.id == "consul");
            if !owned {
                writes.push(Command::Deregister {
                    node: cfg.node_name.clone(),
                    service_id: Some(c.id.clone()),
                    check_id: None,
                });
            }
        }
        for c in &catalog_checks {
            let owned = c.check_id == SERF_HEALTH
                || local_checks.iter().any(|l| l.check_id == c.check_id)
                || !c.service_id.is_empty() && !local_services.iter().any(|s| s.id == c.service_id);
            if !owned {
                writes.push(Command::Deregister {
                    node: cfg.node_name.clone(),
                    service_id: None,
                    check_id: Some(c.check_id.clone()),
                });
            }
        }
    }
    let n = writes.len();
    for w in writes {
        inner.server.write(w).await?;
    }
    Ok((n, !blocked.is_empty()))
}

/// The catalog's node carries the agent's metadata (plus the segment key every node has).
fn meta_matches(node: &Node, meta: &std::collections::BTreeMap<String, String>) -> bool {
    node.meta
        .iter()
        .filter(|(k, _)| k.as_str() != "consul-network-segment")
        .eq(meta.iter())
}

/// The node with its passing `serfHealth` check (and the `consul` service on servers).
pub(crate) fn node_registration(inner: &Inner) -> Command {
    let cfg = &inner.config;
    let mut node = Node {
        id: cfg.node_id.clone(),
        node: cfg.node_name.clone(),
        address: cfg.advertise_addr.clone(),
        datacenter: cfg.datacenter.clone(),
        meta: inner.node_meta(),
        locality: cfg.locality.clone(),
        ..Node::default()
    };
    node.meta
        .entry("consul-network-segment".into())
        .or_default();
    node.fill_default_tagged_addresses();
    let service = cfg.server.then(|| NodeService {
        id: "consul".into(),
        service: "consul".into(),
        port: cfg.server_port,
        meta: [("version".to_string(), weft_types::VERSION.to_string())]
            .into_iter()
            .collect(),
        ..NodeService::default()
    });
    let serf = HealthCheck {
        node: cfg.node_name.clone(),
        check_id: SERF_HEALTH.into(),
        name: "Serf Health Status".into(),
        status: CheckStatus::Passing,
        output: "Agent alive and reachable".into(),
        ..HealthCheck::default()
    };
    Command::Register(Box::new(Registration {
        node,
        skip_node_update: false,
        service,
        checks: vec![serf],
    }))
}
