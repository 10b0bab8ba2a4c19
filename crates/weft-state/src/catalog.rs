//! Catalog and health tables: nodes, service instances and checks, their writes and their read views.

use crate::{InstanceKey, Registration, Store, StoreError, Table};
use std::collections::{BTreeMap, BTreeSet};
use weft_types::views::CheckServiceNode;
use weft_types::{CheckStatus, HealthCheck, Node, NodeService};

/// Equality ignoring the Raft indexes, so a re-registration that changes nothing does not wake watchers.
fn same_service(a: &NodeService, b: &NodeService) -> bool {
    let mut a = a.clone();
    a.create_index = b.create_index;
    a.modify_index = b.modify_index;
    &a == b
}

fn same_check(a: &HealthCheck, b: &HealthCheck) -> bool {
    let mut a = a.clone();
    a.create_index = b.create_index;
    a.modify_index = b.modify_index;
    &a == b
}

impl Store {
    pub(crate) fn register(
        &mut self,
        index: u64,
        reg: &Registration,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        let node_name = reg.node.node.clone();
        if node_name.is_empty() {
            return Err(StoreError::MissingNode);
        }
        let node_exists = self.t.nodes.contains_key(&node_name);
        if reg.node.address.is_empty() && !(reg.skip_node_update && node_exists) {
            return Err(StoreError::MissingAddress);
        }
        // Validate everything before changing anything, so a refused command leaves no trace.
        let mut service = reg.service.clone();
        if let Some(svc) = service.as_mut() {
            if svc.service.is_empty() {
                return Err(StoreError::MissingServiceName);
            }
            if svc.id.is_empty() {
                svc.id = svc.service.clone();
            }
        }
        let mut checks = Vec::with_capacity(reg.checks.len());
        for check in &reg.checks {
            let mut check = check.clone();
            check.node = node_name.clone();
            if check.name.is_empty() {
                return Err(StoreError::MissingCheckName);
            }
            if check.check_id.is_empty() {
                check.check_id = check.name.clone();
            }
            if !check.service_id.is_empty() {
                let owner = service
                    .as_ref()
                    .filter(|s| s.id == check.service_id)
                    .or_else(|| {
                        self.t
                            .services
                            .get(&node_name)
                            .and_then(|m| m.get(&check.service_id))
                    });
                match owner {
                    Some(owner) => {
                        check.service_name = owner.service.clone();
                        check.service_tags = owner.tags.clone();
                    }
                    None => {
                        return Err(StoreError::UnknownServiceForCheck(check.service_id.clone()))
                    }
                }
            }
            checks.push(check);
        }

        let node_changed = self.upsert_node(index, &reg.node, reg.skip_node_update);
        if node_changed {
            touched.insert(Table::Nodes);
            for name in self.service_names_on(&node_name) {
                self.bump_service(index, &name, touched);
            }
        }
        if let Some(svc) = service {
            self.upsert_service(index, &node_name, svc, touched);
        }
        for check in checks {
            self.upsert_check(index, check, touched);
        }
        Ok(())
    }

    fn upsert_node(&mut self, index: u64, node: &Node, skip_update: bool) -> bool {
        match self.t.nodes.get_mut(&node.node) {
            Some(_) if skip_update => false,
            Some(existing) => {
                let mut updated = node.clone();
                if updated.id.is_empty() {
                    updated.id = existing.id.clone();
                }
                updated.create_index = existing.create_index;
                updated.modify_index = existing.modify_index;
                if &updated == existing {
                    return false;
                }
                updated.modify_index = index;
                *existing = updated;
                true
            }
            None => {
                let mut created = node.clone();
                created.create_index = index;
                created.modify_index = index;
                self.t.nodes.insert(node.node.clone(), created);
                true
            }
        }
    }

    fn upsert_service(
        &mut self,
        index: u64,
        node: &str,
        mut svc: NodeService,
        touched: &mut BTreeSet<Table>,
    ) {
        let previous = self
            .t
            .services
            .get(node)
            .and_then(|m| m.get(&svc.id))
            .cloned();
        if let Some(prev) = &previous {
            if same_service(&svc, prev) {
                return;
            }
            svc.create_index = prev.create_index;
            self.unindex_instance(node, prev);
            if prev.service != svc.service {
                self.bump_service(index, &prev.service, touched);
            }
        } else {
            svc.create_index = index;
        }
        svc.modify_index = index;
        self.index_instance(node, &svc);
        self.bump_service(index, &svc.service.clone(), touched);
        if let Some(dest) = connect_destination(&svc) {
            self.bump_service(index, &dest, touched);
        }
        // Checks carry their service's name and tags; keep them in step.
        if let Some(checks) = self.t.checks.get_mut(node) {
            for check in checks.values_mut().filter(|c| c.service_id == svc.id) {
                if check.service_name != svc.service || check.service_tags != svc.tags {
                    check.service_name = svc.service.clone();
                    check.service_tags = svc.tags.clone();
                    check.modify_index = index;
                    touched.insert(Table::Checks);
                }
            }
        }
        self.t
            .services
            .entry(node.to_string())
            .or_default()
            .insert(svc.id.clone(), svc);
    }

    fn upsert_check(&mut self, index: u64, mut check: HealthCheck, touched: &mut BTreeSet<Table>) {
        let node = check.node.clone();
        let previous = self
            .t
            .checks
            .get(&node)
            .and_then(|m| m.get(&check.check_id));
        match previous {
            Some(prev) if same_check(&check, prev) => return,
            Some(prev) => check.create_index = prev.create_index,
            None => check.create_index = index,
        }
        check.modify_index = index;
        let critical = check.status == CheckStatus::Critical;
        let check_id = check.check_id.clone();
        self.bump_for_check(index, &node, &check.service_id, touched);
        self.t
            .checks
            .entry(node.clone())
            .or_default()
            .insert(check_id.clone(), check);
        touched.insert(Table::Checks);
        if critical {
            self.invalidate_sessions_for_check(index, &node, &check_id, touched);
        }
    }

    /// A check change moves its service's index, or every service on the node for a node-level check.
    fn bump_for_check(
        &mut self,
        index: u64,
        node: &str,
        service_id: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let names: Vec<String> = if service_id.is_empty() {
            self.service_names_on(node)
        } else {
            let svc = self.t.services.get(node).and_then(|m| m.get(service_id));
            svc.map(|s| {
                let mut names = vec![s.service.clone()];
                names.extend(connect_destination(s));
                names
            })
            .unwrap_or_default()
        };
        for name in names {
            self.bump_service(index, &name, touched);
        }
    }

    fn service_names_on(&self, node: &str) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for svc in self
            .t
            .services
            .get(node)
            .into_iter()
            .flat_map(|m| m.values())
        {
            names.push(svc.service.clone());
            names.extend(connect_destination(svc));
        }
        names.sort();
        names.dedup();
        names
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_check(
        &mut self,
        index: u64,
        _now_ms: u64,
        node: &str,
        check_id: &str,
        status: CheckStatus,
        output: &str,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        let existing = self
            .t
            .checks
            .get(node)
            .and_then(|m| m.get(check_id))
            .ok_or_else(|| StoreError::UnknownCheck(check_id.to_string()))?;
        let mut updated = existing.clone();
        updated.status = status;
        updated.output = output.to_string();
        self.upsert_check(index, updated, touched);
        Ok(())
    }

    pub(crate) fn deregister(
        &mut self,
        index: u64,
        now_ms: u64,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        if node.is_empty() {
            return Err(StoreError::MissingNode);
        }
        if !self.t.nodes.contains_key(node) {
            return Ok(());
        }
        match (service_id, check_id) {
            (Some(sid), _) if !sid.is_empty() => {
                self.remove_service(index, now_ms, node, sid, touched)
            }
            (_, Some(cid)) if !cid.is_empty() => {
                self.remove_check(index, now_ms, node, cid, touched)
            }
            _ => self.remove_node(index, now_ms, node, touched),
        }
        Ok(())
    }

    fn remove_check(
        &mut self,
        index: u64,
        now_ms: u64,
        node: &str,
        check_id: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let Some(check) = self.t.checks.get_mut(node).and_then(|m| m.remove(check_id)) else {
            return;
        };
        touched.insert(Table::Checks);
        self.bump_for_check(index, node, &check.service_id, touched);
        let _ = now_ms;
        self.invalidate_sessions_for_check(index, node, check_id, touched);
    }

    fn remove_service(
        &mut self,
        index: u64,
        now_ms: u64,
        node: &str,
        service_id: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let check_ids: Vec<String> = self
            .t
            .checks
            .get(node)
            .map(|m| {
                m.values()
                    .filter(|c| c.service_id == service_id)
                    .map(|c| c.check_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for cid in check_ids {
            self.remove_check(index, now_ms, node, &cid, touched);
        }
        let Some(svc) = self
            .t
            .services
            .get_mut(node)
            .and_then(|m| m.remove(service_id))
        else {
            return;
        };
        self.unindex_instance(node, &svc);
        self.bump_service(index, &svc.service, touched);
        if let Some(dest) = connect_destination(&svc) {
            self.bump_service(index, &dest, touched);
        }
    }

    fn remove_node(&mut self, index: u64, now_ms: u64, node: &str, touched: &mut BTreeSet<Table>) {
        let service_ids: Vec<String> = self
            .t
            .services
            .get(node)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for sid in service_ids {
            self.remove_service(index, now_ms, node, &sid, touched);
        }
        let check_ids: Vec<String> = self
            .t
            .checks
            .get(node)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for cid in check_ids {
            self.remove_check(index, now_ms, node, &cid, touched);
        }
        self.t.services.remove(node);
        self.t.checks.remove(node);
        self.t.nodes.remove(node);
        touched.insert(Table::Nodes);
        self.coordinate_drop(node, touched);
        let sessions: Vec<String> = self
            .t
            .sessions
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.id.clone())
            .collect();
        for id in sessions {
            self.session_destroy(index, now_ms, &id, touched);
        }
    }

    pub(crate) fn index_instance(&mut self, node: &str, svc: &NodeService) {
        let key: InstanceKey = (node.to_string(), svc.id.clone());
        self.by_name
            .entry(svc.service.clone())
            .or_default()
            .insert(key.clone());
        if let Some(dest) = connect_destination(svc) {
            self.connect_by_dest.entry(dest).or_default().insert(key);
        }
    }

    fn unindex_instance(&mut self, node: &str, svc: &NodeService) {
        let key: InstanceKey = (node.to_string(), svc.id.clone());
        if let Some(set) = self.by_name.get_mut(&svc.service) {
            set.remove(&key);
            if set.is_empty() {
                self.by_name.remove(&svc.service);
            }
        }
        if let Some(dest) = connect_destination(svc) {
            if let Some(set) = self.connect_by_dest.get_mut(&dest) {
                set.remove(&key);
                if set.is_empty() {
                    self.connect_by_dest.remove(&dest);
                }
            }
        }
    }

    // ---- reads ----

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.t.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.t.nodes.get(name)
    }

    /// The services registered on a node, by ID.
    pub fn node_services(&self, node: &str) -> impl Iterator<Item = &NodeService> {
        self.t
            .services
            .get(node)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every service name with the union of its instances' tags (`/v1/catalog/services`).
    pub fn service_tags(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for svc in self.t.services.values().flat_map(|m| m.values()) {
            out.entry(&svc.service)
                .or_default()
                .extend(svc.tags.iter().map(String::as_str));
        }
        out
    }

    /// Every instance of a service, with its node.
    pub fn instances(&self, name: &str) -> Vec<(&Node, &NodeService)> {
        self.resolve(self.by_name.get(name))
    }

    /// The Connect-capable endpoints of a service: sidecar proxies for it and Connect-native instances.
    pub fn connect_instances(&self, name: &str) -> Vec<(&Node, &NodeService)> {
        self.resolve(self.connect_by_dest.get(name))
    }

    fn resolve(&self, keys: Option<&BTreeSet<InstanceKey>>) -> Vec<(&Node, &NodeService)> {
        keys.into_iter()
            .flatten()
            .filter_map(|(node, id)| {
                let n = self.t.nodes.get(node)?;
                let s = self.t.services.get(node)?.get(id)?;
                Some((n, s))
            })
            .collect()
    }

    /// Node-level and service checks on one node.
    pub fn node_checks(&self, node: &str) -> impl Iterator<Item = &HealthCheck> {
        self.t.checks.get(node).into_iter().flat_map(|m| m.values())
    }

    pub fn all_checks(&self) -> impl Iterator<Item = &HealthCheck> {
        self.t.checks.values().flat_map(|m| m.values())
    }

    /// The checks of every instance of a service.
    pub fn service_checks(&self, name: &str) -> Vec<&HealthCheck> {
        self.instances(name)
            .into_iter()
            .flat_map(|(node, svc)| {
                self.node_checks(&node.node)
                    .filter(move |c| c.service_id == svc.id && !c.service_id.is_empty())
            })
            .collect()
    }

    /// Instances with node checks and their own checks (`/v1/health/service`, `/v1/health/connect`).
    pub fn check_service_nodes(&self, name: &str, connect: bool) -> Vec<CheckServiceNode<'_>> {
        let instances = if connect {
            self.connect_instances(name)
        } else {
            self.instances(name)
        };
        instances
            .into_iter()
            .map(|(node, svc)| CheckServiceNode {
                node,
                service: svc,
                checks: self
                    .node_checks(&node.node)
                    .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
                    .collect(),
            })
            .collect()
    }

    /// The ingress gateway instances that carry `service` (one of their upstreams names it), with their checks:
    /// `/v1/health/ingress/:service` and DNS's `<service>.ingress.consul`.
    pub fn ingress_gateways_for(&self, service: &str) -> Vec<CheckServiceNode<'_>> {
        self.service_tags()
            .keys()
            .flat_map(|gw| self.check_service_nodes(gw, false))
            .filter(|i| {
                i.service.kind == "ingress-gateway"
                    && (i
                        .service
                        .proxy
                        .upstreams
                        .iter()
                        .any(|u| u.destination_name.eq_ignore_ascii_case(service))
                        || self
                            .gateway_services(&i.service.service)
                            .iter()
                            .any(|g| g.service == "*" || g.service.eq_ignore_ascii_case(service)))
            })
            .collect()
    }

    /// What the gateway named `gateway` carries (`/v1/catalog/gateway-services/:gateway`): the services of its
    /// `ingress-gateway` or `terminating-gateway` config entry, and the upstreams its instances were registered
    /// with (Weft's own ingress gateway), each service once (the entry's word first).
    pub fn gateway_services(&self, gateway: &str) -> Vec<GatewayService> {
        let mut out = Vec::new();
        let text = |v: &serde_json::Value, k: &str| {
            v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
        };
        if let Some(e) = self.config_entry("ingress-gateway", gateway) {
            for l in items(e.body.get("Listeners")) {
                let port = l.get("Port").and_then(|p| p.as_u64()).unwrap_or(0) as u16;
                let protocol = Some(text(l, "Protocol"))
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "tcp".into());
                for s in items(l.get("Services")) {
                    out.push(GatewayService {
                        service: text(s, "Name"),
                        kind: "ingress-gateway",
                        port,
                        protocol: protocol.clone(),
                        hosts: s
                            .get("Hosts")
                            .and_then(|h| h.as_array())
                            .map(|h| {
                                h.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        ..GatewayService::default()
                    });
                }
            }
        }
        if let Some(e) = self.config_entry("terminating-gateway", gateway) {
            for s in items(e.body.get("Services")) {
                out.push(GatewayService {
                    service: text(s, "Name"),
                    kind: "terminating-gateway",
                    ca_file: text(s, "CAFile"),
                    cert_file: text(s, "CertFile"),
                    key_file: text(s, "KeyFile"),
                    sni: text(s, "SNI"),
                    ..GatewayService::default()
                });
            }
        }
        for (_, svc) in self.instances(gateway) {
            if svc.kind != "ingress-gateway" {
                continue;
            }
            for u in &svc.proxy.upstreams {
                if !out.iter().any(|g| g.service == u.destination_name) {
                    out.push(GatewayService {
                        service: u.destination_name.clone(),
                        kind: "ingress-gateway",
                        port: u.local_bind_port,
                        protocol: "tcp".into(),
                        ..GatewayService::default()
                    });
                }
            }
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out.dedup_by(|a, b| a.service == b.service);
        out
    }

    /// The index a query on one service name reports and blocks on.
    pub fn service_index(&self, name: &str) -> u64 {
        self.t
            .service_indexes
            .get(name)
            .copied()
            .unwrap_or_else(|| self.table_index(Table::Services))
    }
}

/// The elements of a JSON list in a stored entry (none when absent or not a list).
fn items(v: Option<&serde_json::Value>) -> impl Iterator<Item = &serde_json::Value> {
    v.and_then(|v| v.as_array()).into_iter().flatten()
}

/// One service a gateway carries (Consul's `GatewayService`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayService {
    pub service: String,
    pub kind: &'static str,
    pub port: u16,
    pub protocol: String,
    pub hosts: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub sni: String,
}

/// The service a Connect endpoint stands for: a proxy's destination, or a native service itself.
pub(crate) fn connect_destination(svc: &NodeService) -> Option<String> {
    if svc.is_connect_proxy() && !svc.proxy.destination_service_name.is_empty() {
        Some(svc.proxy.destination_service_name.clone())
    } else if svc.connect.native {
        Some(svc.service.clone())
    } else {
        None
    }
}
