//! The `Config` block of `/v1/agent/self`, which clients read to learn the agent's datacenter and node.

use serde::{Deserialize, Serialize};

/// `/v1/agent/self` as clients decode it (only the blocks they use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentSelf {
    pub config: AgentSelfConfig,
}

/// `/v1/agent/self`'s `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentSelfConfig {
    pub datacenter: String,
    pub primary_datacenter: String,
    pub node_name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub revision: String,
    pub server: bool,
    pub version: String,
    pub build_date: String,
}
