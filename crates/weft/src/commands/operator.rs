//! `weft operator raft list-peers|remove-peer|transfer-leader`, `weft operator autopilot state` and `weft operator usage instances`.

use crate::client::{columns, query_value, Api, HttpArgs};
use crate::commands::misc::PlainArgs;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// The Raft configuration.
    #[command(subcommand)]
    Raft(RaftCmd),
    /// Server health as the leader's autopilot sees it.
    #[command(subcommand)]
    Autopilot(AutopilotCmd),
    /// How much the datacenter holds.
    #[command(subcommand)]
    Usage(UsageCmd),
}

#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Services, service instances and nodes, billable and Connect ones apart.
    Instances(PlainArgs),
}

#[derive(Subcommand, Debug)]
pub enum RaftCmd {
    /// Lists the servers in the Raft configuration.
    ListPeers(PlainArgs),
    /// Removes a server from the Raft configuration.
    RemovePeer(RemovePeerArgs),
    /// Hands leadership to another server (-id, else the one with the most of the log).
    TransferLeader(TransferLeaderArgs),
}

#[derive(Args, Debug)]
pub struct TransferLeaderArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The Raft ID of the server to lead, as `list-peers` shows it.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AutopilotCmd {
    /// Prints each server's health.
    State(PlainArgs),
    /// Prints autopilot's settings.
    GetConfig(PlainArgs),
    /// Changes autopilot's settings (those given; the others are kept).
    SetConfig(SetConfigArgs),
}

#[derive(Args, Debug)]
pub struct SetConfigArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Remove failed servers once a replacement has joined (true or false).
    #[arg(long = "cleanup-dead-servers")]
    pub cleanup_dead_servers: Option<bool>,
    /// A server not heard from for longer is unhealthy (a duration such as 3s).
    #[arg(long = "last-contact-threshold")]
    pub last_contact_threshold: Option<String>,
    /// A server trailing the leader's log by more entries is unhealthy.
    #[arg(long = "max-trailing-logs")]
    pub max_trailing_logs: Option<u64>,
    /// Never remove dead servers below this many voters.
    #[arg(long = "min-quorum")]
    pub min_quorum: Option<u32>,
    /// How long a server must stay failed before cleanup may remove it (a duration).
    #[arg(long = "server-stabilization-time")]
    pub server_stabilization_time: Option<String>,
}

#[derive(Args, Debug)]
pub struct RemovePeerArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The server's ID, as `list-peers` shows it.
    #[arg(long)]
    pub id: Option<String>,
    /// The server's RPC address (IP:port).
    #[arg(long)]
    pub address: Option<String>,
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub async fn run(cmd: OperatorCmd) -> Result<i32> {
    match cmd {
        OperatorCmd::Raft(RaftCmd::ListPeers(a)) => list_peers(a).await,
        OperatorCmd::Raft(RaftCmd::RemovePeer(a)) => remove_peer(a).await,
        OperatorCmd::Raft(RaftCmd::TransferLeader(a)) => transfer_leader(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::State(a)) => autopilot_state(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::GetConfig(a)) => autopilot_get_config(a).await,
        OperatorCmd::Autopilot(AutopilotCmd::SetConfig(a)) => autopilot_set_config(a).await,
        OperatorCmd::Usage(UsageCmd::Instances(a)) => usage_instances(a).await,
    }
}

/// `weft operator raft list-peers`: the Raft configuration as a table.
async fn list_peers(a: PlainArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let config = api.get_json("/v1/operator/raft/configuration").await?;
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(String::from)
        .to_vec()];
    for srv in config["Servers"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(srv, "Node"),
            s(srv, "ID"),
            s(srv, "Address"),
            if srv["Leader"] == true {
                "leader"
            } else {
                "follower"
            }
            .into(),
            s(srv, "Voter"),
            s(srv, "ProtocolVersion"),
        ]);
    }
    print!("{}", columns(&rows));
    Ok(0)
}

/// `weft operator raft remove-peer`: removes a server from the Raft configuration.
async fn remove_peer(a: RemovePeerArgs) -> Result<i32> {
    let query = match (&a.id, &a.address) {
        (Some(_), Some(_)) => bail!("Only one of -id or -address may be given"),
        (Some(id), None) => format!("id={}", query_value(id)),
        (None, Some(addr)) => format!("address={}", query_value(addr)),
        (None, None) => bail!("Missing peer: pass -id or -address"),
    };
    let api = Api::new(&a.http)?;
    api.ok(
        Method::DELETE,
        &format!("/v1/operator/raft/peer?{query}"),
        None,
    )
    .await?;
    let who = a.id.or(a.address).unwrap_or_default();
    println!("Removed peer with {who}");
    Ok(0)
}

/// `weft operator raft transfer-leader [-id ID]`: prints Consul's `Success` once another server leads.
async fn transfer_leader(a: TransferLeaderArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let path = match &a.id {
        Some(id) => format!("/v1/operator/raft/transfer-leader?id={}", query_value(id)),
        None => "/v1/operator/raft/transfer-leader".to_string(),
    };
    let answer = api
        .ok(Method::POST, &path, None)
        .await
        .map_err(|e| {
            anyhow::anyhow!("Error transfering leadership: Failed to transfer leadership {e}")
        })?
        .json()?;
    if answer["Success"] != true {
        bail!("Error transfering leadership: Failed to transfer leadership");
    }
    println!("Success");
    Ok(0)
}

/// `weft operator autopilot state`: the servers' health as autopilot sees it.
async fn autopilot_state(a: PlainArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let answer = api
        .call(Method::GET, "/v1/operator/autopilot/health", None)
        .await?;
    if !(answer.status.is_success() || answer.status.as_u16() == 429) {
        bail!(
            "Unexpected response code: {} ({})",
            answer.status.as_u16(),
            answer.text()
        );
    }
    let health = answer.json()?;
    println!("Healthy:                      {}", health["Healthy"]);
    println!(
        "Failure Tolerance:            {}",
        health["FailureTolerance"]
    );
    let mut rows = vec![[
        "Node",
        "ID",
        "Address",
        "Healthy",
        "Voter",
        "Leader",
        "LastContact",
    ]
    .map(String::from)
    .to_vec()];
    for srv in health["Servers"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(srv, "Name"),
            s(srv, "ID"),
            s(srv, "Address"),
            s(srv, "Healthy"),
            s(srv, "Voter"),
            s(srv, "Leader"),
            s(srv, "LastContact"),
        ]);
    }
    print!("{}", columns(&rows));
    Ok(if health["Healthy"] == true { 0 } else { 2 })
}

/// `weft operator usage instances`: Consul's layout of `/v1/operator/usage`.
async fn usage_instances(a: PlainArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let usage = api.get_json("/v1/operator/usage").await?;
    let Some(by_dc) = usage["Usage"].as_object() else {
        bail!("Unexpected answer from /v1/operator/usage: {usage}");
    };
    let count = |v: &Value, key: &str| v[key].as_u64().unwrap_or(0);
    let total: u64 = by_dc
        .values()
        .map(|u| count(u, "BillableServiceInstances"))
        .sum();
    println!("Billable Service Instances Total: {total}");
    for (dc, u) in by_dc {
        println!(
            "{dc} Billable Service Instances: {}",
            count(u, "BillableServiceInstances")
        );
        println!("\nBillable Services");
        let rows = vec![
            vec!["Services".to_string(), "Service instances".to_string()],
            vec![
                count(u, "Services").to_string(),
                count(u, "ServiceInstances").to_string(),
            ],
        ];
        print!("{}", columns(&rows));
        println!("\nNodes");
        print!(
            "{}",
            columns(&[
                vec!["Datacenter".to_string(), "Count".to_string()],
                vec![dc.clone(), count(u, "Nodes").to_string()],
            ])
        );
        println!("\nConnect Services");
        let mut rows = vec![vec!["Type".to_string(), "Service instances".to_string()]];
        for (kind, n) in u["ConnectServiceInstances"]
            .as_object()
            .into_iter()
            .flatten()
        {
            rows.push(vec![kind.clone(), n.as_u64().unwrap_or(0).to_string()]);
        }
        print!("{}", columns(&rows));
    }
    Ok(0)
}

/// `weft operator autopilot get-config`, in Consul's layout.
async fn autopilot_get_config(a: PlainArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let c = api.get_json("/v1/operator/autopilot/configuration").await?;
    for key in weft_types::autopilot::SETTINGS {
        let value = match &c[key] {
            Value::String(text) if key.ends_with("Tag") => format!("{text:?}"),
            _ => s(&c, key),
        };
        println!("{key} = {value}");
    }
    Ok(0)
}

/// `weft operator autopilot set-config`: reads the settings, changes those given and writes them back only if
/// nobody changed them meanwhile (check-and-set on their ModifyIndex), as Consul's command does.
async fn autopilot_set_config(a: SetConfigArgs) -> Result<i32> {
    let duration = |flag: &str, text: &Option<String>| -> Result<Option<String>> {
        match text {
            None => Ok(None),
            Some(t) => match weft_types::duration::parse_duration(t) {
                Ok(_) => Ok(Some(t.clone())),
                Err(e) => bail!("Invalid -{flag} {t:?}: {e}"),
            },
        }
    };
    let threshold = duration("last-contact-threshold", &a.last_contact_threshold)?;
    let stabilization = duration("server-stabilization-time", &a.server_stabilization_time)?;
    let api = Api::new(&a.http)?;
    let mut c = api.get_json("/v1/operator/autopilot/configuration").await?;
    let index = c["ModifyIndex"].as_u64().unwrap_or(0);
    if let Some(v) = a.cleanup_dead_servers {
        c["CleanupDeadServers"] = Value::Bool(v);
    }
    if let Some(v) = threshold {
        c["LastContactThreshold"] = Value::String(v);
    }
    if let Some(v) = a.max_trailing_logs {
        c["MaxTrailingLogs"] = v.into();
    }
    if let Some(v) = a.min_quorum {
        c["MinQuorum"] = v.into();
    }
    if let Some(v) = stabilization {
        c["ServerStabilizationTime"] = Value::String(v);
    }
    let answer = api
        .ok(
            Method::PUT,
            &format!("/v1/operator/autopilot/configuration?cas={index}"),
            Some(c.to_string().into_bytes()),
        )
        .await?;
    if answer.text().trim() == "true" {
        println!("Configuration updated!");
        Ok(0)
    } else {
        println!("Configuration could not be atomically updated, please try again");
        Ok(1)
    }
}
