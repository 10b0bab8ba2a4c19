//! Keyring operations across federated datacenters (see [`crate::keyring`]). The agent asked applies the operation
//! to its own datacenter's pool, then passes it to each other datacenter known to its servers, which applies it to
//! its own pool only. Every server shares one keyring between its LAN and WAN pools, so the WAN ring is every
//! datacenter's servers: each datacenter reports its servers' share, and the agent asked adds them up.

use crate::ctx::Ctx;
use crate::keyring::{messages, ring_entry};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use weft_gossip::KeyringAnswer;

/// The datacenters other than this one that this agent's servers federate with.
pub async fn other_datacenters(ctx: &Ctx) -> Vec<String> {
    let server = ctx.state.agent.server();
    let own = ctx.datacenter();
    let names: Vec<String> = if server.is_server() {
        server.datacenters().into_iter().map(|d| d.name).collect()
    } else {
        let reply = crate::forward::to_servers(
            &ctx.state,
            &axum::http::Method::GET,
            "/v1/catalog/datacenters",
            &ctx.headers,
        )
        .await;
        reply
            .filter(|r| r.status.is_success())
            .and_then(|r| serde_json::from_slice(&r.body).ok())
            .unwrap_or_default()
    };
    names.into_iter().filter(|n| n != own).collect()
}

/// This datacenter's share of the WAN ring: what its servers hold.
pub fn wan_part(ctx: &Ctx, answer: &KeyringAnswer) -> Value {
    let servers: Vec<String> = ctx
        .state
        .agent
        .server()
        .members()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.server)
        .map(|m| m.name)
        .collect();
    let of_servers = KeyringAnswer {
        num_nodes: servers.len(),
        answers: answer
            .answers
            .iter()
            .filter(|n| servers.contains(&n.node))
            .cloned()
            .collect(),
        silent: answer
            .silent
            .iter()
            .filter(|n| servers.contains(n))
            .cloned()
            .collect(),
    };
    let mut entry = ring_entry(&of_servers, ctx.datacenter());
    entry["WAN"] = json!(true);
    entry["Messages"] = json!(messages(&of_servers));
    entry
}

/// What another datacenter answered: its entries, or the lines of its errors.
pub struct Part {
    pub entries: Vec<Value>,
    pub failures: Vec<String>,
}

/// Passes the operation to `dc`, which applies it to its own pool.
pub async fn ask(ctx: &Ctx, dc: &str) -> Part {
    let path = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in ctx.query.iter().filter(|(k, _)| k != "dc") {
            query.append_pair(k, v);
        }
        query.append_pair("dc", dc);
        format!("{}?{}", ctx.path, query.finish())
    };
    let reply = crate::forward::to_other_datacenter(
        &ctx.state,
        dc,
        &ctx.method,
        &path,
        &ctx.headers,
        &ctx.body,
    )
    .await;
    if reply.status.is_success() {
        return Part {
            entries: serde_json::from_slice(&reply.body).unwrap_or_default(),
            failures: Vec::new(),
        };
    }
    // Its own multi-error text, one line per failure; anything else as one line.
    let text = String::from_utf8_lossy(&reply.body).to_string();
    let mut failures: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("\t* "))
        .map(str::to_string)
        .collect();
    if failures.is_empty() {
        failures.push(format!("{dc}: {}", text.trim()));
    }
    Part {
        entries: Vec::new(),
        failures,
    }
}

/// The WAN ring: every datacenter's servers' shares added up.
pub fn merge_wan(parts: &[Value], datacenter: &str) -> Value {
    let mut keys: BTreeMap<String, u64> = BTreeMap::new();
    let mut primary: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages = Map::new();
    let mut nodes = 0;
    for part in parts {
        for (field, into) in [("Keys", &mut keys), ("PrimaryKeys", &mut primary)] {
            for (k, n) in part[field].as_object().into_iter().flatten() {
                *into.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        for (node, m) in part["Messages"].as_object().into_iter().flatten() {
            messages.insert(node.clone(), m.clone());
        }
        nodes += part["NumNodes"].as_u64().unwrap_or(0);
    }
    json!({
        "WAN": true, "Datacenter": datacenter, "Segment": "", "Partition": "",
        "Messages": messages, "Keys": keys, "PrimaryKeys": primary, "NumNodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wan_ring_adds_up_every_datacenters_servers() {
        let parts = [
            json!({"Keys": {"k1": 3, "k2": 1}, "PrimaryKeys": {"k1": 3}, "NumNodes": 3, "Messages": {}}),
            json!({"Keys": {"k1": 1}, "PrimaryKeys": {"k1": 1}, "NumNodes": 2, "Messages": {"s5": "no answer within 5 s"}}),
        ];
        let wan = merge_wan(&parts, "dc1");
        assert_eq!(wan["WAN"], true);
        assert_eq!(wan["Keys"], json!({"k1": 4, "k2": 1}));
        assert_eq!(wan["PrimaryKeys"], json!({"k1": 4}));
        assert_eq!(wan["NumNodes"], 5);
        assert_eq!(wan["Messages"], json!({"s5": "no answer within 5 s"}));
    }
}
