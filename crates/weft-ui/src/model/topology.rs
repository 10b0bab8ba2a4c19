//! A service's place in the mesh: who calls it (downstreams), whom it calls (upstreams), and for each edge the
//! decision the sidecars would make, with the intention that makes it.
//!
//! Edges come from what proxies declare (a sidecar's `Upstreams`) and from intentions that name both ends exactly;
//! the latter are marked, since a caller can use the mesh without declaring an upstream (a client proxy started with
//! `weft connect proxy -upstream` is not in the catalog). Decisions use the same evaluation the agent's authorize
//! endpoint uses, so the page and the sidecars cannot disagree.

use super::catalog::{in_mesh, service_health};
use super::health::Health;
use crate::links;
use std::collections::BTreeMap;
use weft_state::Store;
use weft_types::intention::{authorize, WILDCARD};
use weft_types::Intention;

/// The outcome for one edge.
#[derive(Debug, Clone)]
pub struct DecisionView {
    pub allowed: bool,
    /// Why: "by the intention web => db (allow)", "by the default policy (no intention matches)".
    pub text: String,
    /// The intention that decides, when one does.
    pub intention_href: Option<String>,
}

/// A downstream or upstream service.
#[derive(Debug, Clone)]
pub struct Edge {
    pub service: String,
    pub href: String,
    pub health: Option<Health>,
    /// Declared by a proxy's upstreams (false: known only from an intention).
    pub declared: bool,
    pub decision: DecisionView,
    /// Edit the exact intention for this pair, or create one.
    pub action_href: String,
    pub action_label: &'static str,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub health: Option<Health>,
    pub in_mesh: bool,
    pub downstreams: Vec<Edge>,
    pub upstreams: Vec<Edge>,
    /// What happens to a caller no edge lists (a `* => name` intention or the default policy).
    pub others: DecisionView,
    pub default_allow: bool,
}

fn decide(
    dc: &str,
    all: &[&Intention],
    source: &str,
    dest: &str,
    default_allow: bool,
) -> DecisionView {
    let policy = if default_allow {
        weft_types::DefaultPolicy::Allow
    } else {
        weft_types::DefaultPolicy::Deny
    };
    let d = authorize(all.iter().copied(), source, dest, policy);
    match &d.matched {
        Some(i) => DecisionView {
            allowed: d.allowed,
            text: format!("by the intention {}", i.describe()),
            intention_href: Some(links::intention_edit(
                dc,
                &i.source_name,
                &i.destination_name,
            )),
        },
        None => DecisionView {
            allowed: d.allowed,
            text: "by the default policy (no intention matches)".into(),
            intention_href: None,
        },
    }
}

/// The names a service's proxies declare as upstreams.
fn declared_upstreams(store: &Store, name: &str) -> Vec<String> {
    let mut out: Vec<String> = store
        .connect_instances(name)
        .into_iter()
        .filter(|(_, s)| s.is_connect_proxy())
        .flat_map(|(_, s)| s.proxy.upstreams.iter().map(|u| u.destination_name.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The services whose proxies declare `name` as an upstream.
fn declared_downstreams(store: &Store, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for service in store.service_tags().keys() {
        for (_, s) in store.instances(service) {
            if s.is_connect_proxy() && s.proxy.upstreams.iter().any(|u| u.destination_name == name)
            {
                let caller = if s.proxy.destination_service_name.is_empty() {
                    s.service.clone()
                } else {
                    s.proxy.destination_service_name.clone()
                };
                out.push(caller);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

pub fn topology(dc: &str, store: &Store, name: &str, default_allow: bool) -> Topology {
    let all = store.intentions();
    let edge = |other: &str, source: &str, dest: &str, declared: bool| {
        let exact = store.intention(source, dest);
        Edge {
            service: other.to_string(),
            href: links::service(dc, other, "topology"),
            health: service_health(store, other),
            declared,
            decision: decide(dc, &all, source, dest, default_allow),
            action_href: match exact {
                Some(i) => links::intention_edit(dc, &i.source_name, &i.destination_name),
                None => links::intention_create(dc, source, dest),
            },
            action_label: if exact.is_some() {
                "Edit intention"
            } else {
                "Create intention"
            },
        }
    };
    let mut down: BTreeMap<String, bool> = declared_downstreams(store, name)
        .into_iter()
        .map(|n| (n, true))
        .collect();
    let mut up: BTreeMap<String, bool> = declared_upstreams(store, name)
        .into_iter()
        .map(|n| (n, true))
        .collect();
    for i in &all {
        if i.destination_name == name && i.source_name != WILDCARD {
            down.entry(i.source_name.clone()).or_insert(false);
        }
        if i.source_name == name && i.destination_name != WILDCARD {
            up.entry(i.destination_name.clone()).or_insert(false);
        }
    }
    Topology {
        name: name.to_string(),
        health: service_health(store, name),
        in_mesh: in_mesh(store, name),
        downstreams: down
            .iter()
            .map(|(n, declared)| edge(n, n, name, *declared))
            .collect(),
        upstreams: up
            .iter()
            .map(|(n, declared)| edge(n, name, n, *declared))
            .collect(),
        // A source name no intention can mention exactly stands for "any other caller".
        others: decide(dc, &all, "\u{0}other", name, default_allow),
        default_allow,
    }
}
