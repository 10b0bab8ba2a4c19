//! User events as `/v1/event/fire` answers and `/v1/event/list` lists them (Consul's `UserEvent`): the payload is
//! base64 on the wire (`null` when empty), and the same JSON travels in gossip.

use serde::{Deserialize, Serialize};

/// The most a name, its filters and its payload may add up to (serf's `UserEventSizeLimit`).
pub const MAX_EVENT_SIZE: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct UserEvent {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(with = "crate::kv::base64_value")]
    pub payload: Vec<u8>,
    /// A regular expression on node names; empty matches every node.
    pub node_filter: String,
    /// A regular expression on the names of the node's services; empty matches every node.
    pub service_filter: String,
    /// With a service filter, a regular expression on those services' tags.
    pub tag_filter: String,
    pub version: u32,
    /// The Lamport time the event was fired at.
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

impl UserEvent {
    /// What counts against [`MAX_EVENT_SIZE`].
    pub fn size(&self) -> usize {
        self.name.len()
            + self.payload.len()
            + self.node_filter.len()
            + self.service_filter.len()
            + self.tag_filter.len()
    }
}
