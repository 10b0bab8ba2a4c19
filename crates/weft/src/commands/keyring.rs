//! `weft keyring -list|-list-primary|-install KEY|-use KEY|-remove KEY`: Consul's `consul keyring`, through
//! `/v1/operator/keyring`. Exits 0 when every member answered without error, 1 otherwise.

use crate::client::{Api, HttpArgs};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct KeyringArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Lists the keys installed on the members, with how many hold each.
    #[arg(long)]
    pub list: bool,
    /// Lists the members' primary keys.
    #[arg(long = "list-primary")]
    pub list_primary: bool,
    /// Installs a new key on every member (not yet used to encrypt).
    #[arg(long, value_name = "KEY")]
    pub install: Option<String>,
    /// Makes an installed key the one every member encrypts with.
    #[arg(long = "use", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Removes a key that is no longer primary from every member.
    #[arg(long, value_name = "KEY")]
    pub remove: Option<String>,
    /// Accepted for Consul's scripts (0-5); answers come straight back in Weft.
    #[arg(long = "relay-factor", default_value_t = 0)]
    pub relay_factor: u8,
    /// Accepted for Consul's scripts with -list; Weft has one gossip pool.
    #[arg(long = "local-only")]
    pub local_only: bool,
}

pub async fn run(a: KeyringArgs) -> Result<i32> {
    let actions = [
        a.list,
        a.list_primary,
        a.install.is_some(),
        a.use_key.is_some(),
        a.remove.is_some(),
    ];
    if actions.iter().filter(|x| **x).count() != 1 {
        bail!("Exactly one of -list, -list-primary, -install, -use or -remove must be given");
    }
    if a.relay_factor > 5 {
        bail!("Error parsing relay factor: must be in range: [0, 5]");
    }
    if a.local_only && !(a.list || a.list_primary) {
        bail!("-local-only can only be used with -list or -list-primary");
    }
    let api = Api::new(&a.http)?;
    let relay = format!("relay-factor={}", a.relay_factor);
    if a.list || a.list_primary {
        println!("==> Gathering installed encryption keys...");
        let path = format!("/v1/operator/keyring?{relay}");
        let rings = api
            .ok(Method::GET, &path, None)
            .await
            .map_err(|e| anyhow!("error: {e}"))?
            .json()?;
        let field = if a.list_primary {
            "PrimaryKeys"
        } else {
            "Keys"
        };
        for ring in rings.as_array().into_iter().flatten() {
            println!("{}", format_ring(ring, field));
        }
        return Ok(0);
    }
    let (method, key, doing) = if let Some(k) = &a.install {
        (Method::POST, k, "Installing new gossip encryption key...")
    } else if let Some(k) = &a.use_key {
        (Method::PUT, k, "Changing primary gossip encryption key...")
    } else if let Some(k) = &a.remove {
        (Method::DELETE, k, "Removing gossip encryption key...")
    } else {
        bail!("no keyring action given");
    };
    println!("==> {doing}");
    let body = serde_json::to_vec(&json!({ "Key": key }))?;
    api.ok(method, &format!("/v1/operator/keyring?{relay}"), Some(body))
        .await
        .map_err(|e| anyhow!("error: {e}"))?;
    Ok(0)
}

/// One ring as Consul prints it: the pool, any member's message, then each key with how many members hold it.
fn format_ring(ring: &Value, field: &str) -> String {
    let pool = if ring["WAN"] == true {
        "WAN".to_string()
    } else {
        format!("{} (LAN)", ring["Datacenter"].as_str().unwrap_or_default())
    };
    let total = ring["NumNodes"].as_u64().unwrap_or(0);
    let mut out = format!("\n{pool}:\n");
    for (from, msg) in ring["Messages"].as_object().into_iter().flatten() {
        out.push_str(&format!(
            "  ===> {from}: {}\n",
            msg.as_str().unwrap_or_default()
        ));
    }
    for (key, n) in ring[field].as_object().into_iter().flatten() {
        out.push_str(&format!("  {key} [{}/{total}]\n", n.as_u64().unwrap_or(0)));
    }
    out.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_prints_as_consul_prints_it() {
        let ring = json!({
            "WAN": false, "Datacenter": "dc1", "Messages": {"c": "no answer within 5 s"},
            "Keys": {"k1": 2, "k2": 3}, "PrimaryKeys": {"k2": 3}, "NumNodes": 3,
        });
        assert_eq!(
            format_ring(&ring, "Keys"),
            "\ndc1 (LAN):\n  ===> c: no answer within 5 s\n  k1 [2/3]\n  k2 [3/3]"
        );
        assert_eq!(
            format_ring(&ring, "PrimaryKeys"),
            "\ndc1 (LAN):\n  ===> c: no answer within 5 s\n  k2 [3/3]"
        );
    }
}
