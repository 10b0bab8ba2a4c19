//! Wire views derived from the stored types: the agent's `AgentService`, the catalog's flattened `ServiceNode`,
//! `CheckServiceNode` for health queries and `NodeServices` for `/catalog/node`. They borrow, so building a response
//! copies nothing until serde writes it.

use crate::check::{CheckStatus, HealthCheck};
use crate::node::Node;
use crate::service::{
    ConnectProxyConfig, Locality, NodeService, ServiceAddress, ServiceConnect, Weights,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// `GET /v1/agent/services` entries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub service: &'a str,
    pub tags: &'a [String],
    pub meta: &'a BTreeMap<String, String>,
    pub port: u16,
    pub address: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub socket_path: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<&'a ConnectProxyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<&'a ServiceConnect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    pub datacenter: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<&'a Locality>,
}

impl<'a> AgentService<'a> {
    pub fn new(s: &'a NodeService, datacenter: &'a str) -> Self {
        AgentService {
            kind: &s.kind,
            id: &s.id,
            service: &s.service,
            tags: &s.tags,
            meta: &s.meta,
            port: s.port,
            address: &s.address,
            socket_path: &s.socket_path,
            tagged_addresses: &s.tagged_addresses,
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            proxy: (!s.kind.is_empty()).then_some(&s.proxy),
            connect: s.connect.native.then_some(&s.connect),
            content_hash: None,
            datacenter,
            locality: s.locality.as_ref(),
        }
    }
}

/// `GET /v1/catalog/service/:name` entries: node and service fields flattened.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNode<'a> {
    #[serde(rename = "ID")]
    pub id: &'a str,
    pub node: &'a str,
    pub address: &'a str,
    pub datacenter: &'a str,
    pub tagged_addresses: &'a BTreeMap<String, String>,
    pub node_meta: &'a BTreeMap<String, String>,
    pub service_kind: &'a str,
    #[serde(rename = "ServiceID")]
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub service_tags: &'a [String],
    pub service_address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: &'a BTreeMap<String, ServiceAddress>,
    pub service_weights: Weights,
    pub service_meta: &'a BTreeMap<String, String>,
    pub service_port: u16,
    pub service_socket_path: &'a str,
    pub service_enable_tag_override: bool,
    pub service_proxy: &'a ConnectProxyConfig,
    pub service_connect: &'a ServiceConnect,
    pub service_locality: Option<&'a Locality>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl<'a> ServiceNode<'a> {
    pub fn new(node: &'a Node, s: &'a NodeService) -> Self {
        ServiceNode {
            id: &node.id,
            node: &node.node,
            address: &node.address,
            datacenter: &node.datacenter,
            tagged_addresses: &node.tagged_addresses,
            node_meta: &node.meta,
            service_kind: &s.kind,
            service_id: &s.id,
            service_name: &s.service,
            service_tags: &s.tags,
            service_address: &s.address,
            service_tagged_addresses: &s.tagged_addresses,
            service_weights: s.weights,
            service_meta: &s.meta,
            service_port: s.port,
            service_socket_path: &s.socket_path,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: &s.proxy,
            service_connect: &s.connect,
            service_locality: s.locality.as_ref(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `GET /v1/health/service/:name` entries: node-level checks of the node plus the instance's own checks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckServiceNode<'a> {
    pub node: &'a Node,
    pub service: &'a NodeService,
    pub checks: Vec<&'a HealthCheck>,
}

impl CheckServiceNode<'_> {
    /// The worst status among the checks, or passing when there are none.
    pub fn aggregated_status(&self) -> CheckStatus {
        self.checks
            .iter()
            .fold(CheckStatus::Passing, |acc, c| acc.worst(c.status))
    }
}

/// `GET /v1/catalog/node/:node`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices<'a> {
    pub node: &'a Node,
    pub services: BTreeMap<&'a str, &'a NodeService>,
}

/// `GET /v1/catalog/node-services/:node`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceList<'a> {
    pub node: &'a Node,
    pub services: Vec<&'a NodeService>,
}
