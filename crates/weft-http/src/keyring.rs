//! `/v1/operator/keyring`: the gossip keyring across the cluster (Consul's shapes). `GET` lists the keys every member
//! holds, `POST` installs a key everywhere, `PUT` makes it the primary key everywhere, `DELETE` removes it. The
//! agent asked carries the operation to every alive member over gossip and answers once each has answered (or
//! the query timed out).
//!
//! With WAN federation the operation goes, as in Consul, to every datacenter: each applies it to its LAN pool
//! (its servers share their keyring with the WAN pool), and a list holds one WAN entry (every datacenter's
//! servers) and one LAN entry per datacenter. `?dc=` asks one other datacenter alone. As in Consul, a member that
//! reports an error, or does not answer, turns the whole answer into a 500 whose text names the failures.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::Method;
use serde_json::json;
use std::collections::BTreeMap;
use weft_gossip::{KeyOp, KeyringAnswer};

#[derive(serde::Deserialize)]
struct KeyRequest {
    #[serde(rename = "Key")]
    key: String,
}

pub async fn keyring(ctx: Ctx) -> Result<Reply, ApiError> {
    // `?dc=` naming another datacenter was passed on to it before this runs (`Forward::LocalOrDc`).
    ctx.check_scope()?;
    if let Some(relay) = ctx.param("relay-factor") {
        // Accepted as Consul accepts it; every answer comes straight back here, so there is nothing to relay.
        match relay.parse::<u8>() {
            Ok(n) if n <= 5 => {}
            _ => {
                return Err(ApiError::bad_request(
                    "Relay factor must be in range: [0, 5]",
                ))
            }
        }
    }
    let op = if ctx.method == Method::GET {
        KeyOp::List
    } else {
        if ctx.param("local-only").is_some() {
            return Err(ApiError::bad_request(
                "local-only can only be set for list requests",
            ));
        }
        let request: KeyRequest = ctx.decode()?;
        let key = weft_gossip::canonical_key(&request.key)
            .map_err(|e| ApiError::bad_request(format!("Invalid key: {e}")))?;
        match ctx.method {
            Method::POST => KeyOp::Install(key),
            Method::PUT => KeyOp::Use(key),
            _ => KeyOp::Remove(key),
        }
    };
    let listing = op == KeyOp::List;
    let node = ctx.state.agent.config().node_name.clone();
    let answer = match ctx.state.agent.server().gossip() {
        Some(gossip) => gossip
            .keyring_operation(op)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?,
        // Dev mode has no gossip pool, and so no keyring.
        None => KeyringAnswer {
            num_nodes: 1,
            answers: vec![weft_gossip::NodeKeys {
                node,
                error: Some(
                    if listing {
                        "Keyring is empty (encryption not enabled)"
                    } else {
                        "No keyring to modify (encryption not enabled)"
                    }
                    .into(),
                ),
                keys: Vec::new(),
            }],
            silent: Vec::new(),
        },
    };
    let datacenter = ctx.state.agent.config().datacenter.clone();
    let mut failures = failure_lines(&answer, &datacenter);
    // Passed on by another datacenter (the fan-out below, or `?dc=`): this datacenter's part alone, its servers'
    // share of the WAN ring included. (Keyring requests are passed on for no other reason.)
    let asked_by_other = ctx.state.forwarded;
    let others = if asked_by_other {
        Vec::new()
    } else {
        crate::keyring_federation::other_datacenters(&ctx).await
    };
    let mut lan = vec![ring_entry(&answer, &datacenter)];
    let mut wan = Vec::new();
    if asked_by_other || !others.is_empty() {
        wan.push(crate::keyring_federation::wan_part(&ctx, &answer));
    }
    for dc in &others {
        let part = crate::keyring_federation::ask(&ctx, dc).await;
        failures.extend(part.failures);
        for entry in part.entries {
            if entry["WAN"] == true {
                wan.push(entry);
            } else {
                lan.push(entry);
            }
        }
    }
    if !failures.is_empty() {
        return Err(ApiError::internal(multi_error(&failures)));
    }
    if !listing {
        return Ok(Reply::empty());
    }
    let mut entries = Vec::new();
    if asked_by_other {
        entries.extend(wan);
    } else if !wan.is_empty() {
        entries.push(crate::keyring_federation::merge_wan(&wan, &datacenter));
    }
    entries.extend(lan);
    Ok(ctx.json(&serde_json::Value::Array(entries)))
}

/// Consul's `KeyringResponse` for the LAN ring: how many members hold each key, and each primary key.
pub(crate) fn ring_entry(answer: &KeyringAnswer, datacenter: &str) -> serde_json::Value {
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    let mut primary: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &answer.answers {
        for key in &node.keys {
            *keys.entry(key).or_default() += 1;
        }
        if let Some(p) = node.primary() {
            *primary.entry(p).or_default() += 1;
        }
    }
    json!({
        "WAN": false, "Datacenter": datacenter, "Segment": "", "Partition": "",
        "Messages": messages(answer), "Keys": keys, "PrimaryKeys": primary, "NumNodes": answer.num_nodes,
    })
}

/// What each member that failed said, and who never answered.
pub(crate) fn messages(answer: &KeyringAnswer) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = answer
        .answers
        .iter()
        .filter_map(|n| n.error.clone().map(|e| (n.node.clone(), e)))
        .collect();
    for node in &answer.silent {
        out.insert(
            node.clone(),
            format!(
                "no answer within {} s",
                weft_gossip::QUERY_TIMEOUT.as_secs()
            ),
        );
    }
    out
}

/// What went wrong in one datacenter's pool, as Consul's multi-error lists it: Serf's counts, then one line per
/// member that failed or stayed silent; nothing when every member answered without error.
fn failure_lines(answer: &KeyringAnswer, datacenter: &str) -> Vec<String> {
    let failed = answer.answers.iter().filter(|n| n.error.is_some()).count();
    let summary = if failed > 0 {
        format!("{failed}/{} nodes reported failure", answer.num_nodes)
    } else if answer.answers.len() != answer.num_nodes {
        format!(
            "{}/{} nodes reported success",
            answer.answers.len(),
            answer.num_nodes
        )
    } else {
        return Vec::new();
    };
    let mut lines = vec![format!("{datacenter} (LAN) error: {summary}")];
    lines.extend(
        messages(answer)
            .into_iter()
            .map(|(n, m)| format!("{n}: {m}")),
    );
    lines
}

/// Consul's multi-error text.
pub(crate) fn multi_error(lines: &[String]) -> String {
    let head = match lines.len() {
        1 => "1 error occurred:".to_string(),
        n => format!("{n} errors occurred:"),
    };
    let body: String = lines.iter().map(|l| format!("\n\t* {l}")).collect();
    format!("{head}{body}\n\n")
}

/// Consul's error text when any member failed or stayed silent.
#[cfg(test)]
fn failure_text(answer: &KeyringAnswer, datacenter: &str) -> Option<String> {
    let lines = failure_lines(answer, datacenter);
    (!lines.is_empty()).then(|| multi_error(&lines))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use weft_gossip::NodeKeys;

    fn node(name: &str, keys: &[&str], error: Option<&str>) -> NodeKeys {
        NodeKeys {
            node: name.into(),
            error: error.map(str::to_string),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn keys_are_counted_per_member_as_consul_counts_them() {
        let answer = KeyringAnswer {
            num_nodes: 3,
            answers: vec![
                node("a", &["k2", "k1"], None),
                node("b", &["k2", "k1"], None),
                node("c", &["k1", "k2"], None),
            ],
            silent: vec![],
        };
        let entry = ring_entry(&answer, "dc1");
        assert_eq!(entry["Keys"], json!({"k1": 3, "k2": 3}));
        assert_eq!(entry["PrimaryKeys"], json!({"k1": 1, "k2": 2}));
        assert_eq!(entry["NumNodes"], 3);
        assert_eq!(entry["WAN"], false);
        assert_eq!(failure_text(&answer, "dc1"), None);
    }

    #[test]
    fn failures_and_silence_are_spelled_out() {
        let answer = KeyringAnswer {
            num_nodes: 3,
            answers: vec![
                node("a", &["k1"], None),
                node(
                    "b",
                    &["k1"],
                    Some("Removing the primary key is not allowed"),
                ),
            ],
            silent: vec!["c".into()],
        };
        assert_eq!(
            failure_text(&answer, "dc1").unwrap(),
            "3 errors occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\t* b: Removing the primary key \
             is not allowed\n\t* c: no answer within 5 s\n\n"
        );
        let quiet = KeyringAnswer {
            silent: vec!["c".into()],
            answers: vec![node("a", &["k1"], None), node("b", &["k1"], None)],
            num_nodes: 3,
        };
        assert!(failure_text(&quiet, "dc1")
            .unwrap()
            .contains("dc1 (LAN) error: 2/3 nodes reported success"));
    }
}
