//! A catalog node: one host running an agent (or registered by hand through `/v1/catalog/register`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    /// Where the node runs (Consul 1.17's `Locality`), from the agent's `locality` setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<crate::service::Locality>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    /// Consul fills `lan`/`wan` (and their `_ipv4`/`_ipv6` forms) from the address when a node registers without them.
    pub fn fill_default_tagged_addresses(&mut self) {
        if self.address.is_empty() {
            return;
        }
        let family = if self.address.parse::<std::net::Ipv6Addr>().is_ok() {
            "ipv6"
        } else {
            "ipv4"
        };
        for name in [
            "lan".to_string(),
            "wan".to_string(),
            format!("lan_{family}"),
            format!("wan_{family}"),
        ] {
            self.tagged_addresses
                .entry(name)
                .or_insert_with(|| self.address.clone());
        }
    }
}
