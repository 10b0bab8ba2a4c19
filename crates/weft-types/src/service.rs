//! Services: the stored form ([`NodeService`]), the registration body ([`ServiceDefinition`]) and Connect's proxy
//! settings. The catalog's flattened `ServiceNode` and the agent's `AgentService` are views built from these in
//! [`crate::views`], so there is one set of domain types and the wire shapes are derived from it.

use crate::check::CheckDefinition;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: i32,
    pub warning: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// `MeshGateway` and `Expose` always render as objects (Go's omitempty does not omit structs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshGatewayConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposeConfig {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub checks: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Upstream {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_type: String,
    pub destination_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_address: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub local_bind_port: u16,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Value>,
    pub mesh_gateway: MeshGatewayConfig,
}

/// Connect proxy settings (`Proxy` on a registration, `ServiceProxy` in the catalog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectProxyConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        rename = "DestinationServiceID",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub local_service_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    pub mode: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    pub mesh_gateway: MeshGatewayConfig,
    pub expose: ExposeConfig,
}

/// `Connect` on a stored service: only `Native` survives registration (the sidecar shortcut is expanded away).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceConnect {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
}

/// A service instance as the catalog stores it (Consul's `structs.NodeService`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    pub weights: Weights,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    pub proxy: ConnectProxyConfig,
    pub connect: ServiceConnect,
    pub peer_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl NodeService {
    pub fn is_connect_proxy(&self) -> bool {
        self.kind == "connect-proxy"
    }
}

/// One entry of `/v1/health/service/:name` and `/v1/health/connect/:name`, as a client decodes it (the server
/// writes it through `views::CheckServiceNode`; checks are left out here, since clients ask `?passing` instead).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEntry {
    pub node: crate::Node,
    pub service: NodeService,
}

/// Where an instance runs (Consul 1.17's `Locality`): a cloud region and zone, an ECS task's say. Stored and
/// returned as given; a sidecar registered without one inherits its parent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Locality {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone: String,
}

/// The `Connect` block of a registration body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectDefinition {
    pub native: bool,
    pub sidecar_service: Option<Box<ServiceDefinition>>,
}

/// The body of `PUT /v1/agent/service/register` and a `services` entry of a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceDefinition {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub socket_path: String,
    pub weights: Option<Weights>,
    pub enable_tag_override: bool,
    pub locality: Option<Locality>,
    pub check: Option<CheckDefinition>,
    pub checks: Vec<CheckDefinition>,
    pub proxy: Option<ConnectProxyConfig>,
    pub connect: Option<ConnectDefinition>,
    pub token: String,
    pub namespace: String,
    pub partition: String,
}
