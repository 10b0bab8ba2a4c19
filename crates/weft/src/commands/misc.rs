//! Small commands: `members`, `info`, `version`, `leave`, `join`, `force-leave`, `keygen`.

use crate::client::{columns, segment, Api, HttpArgs};
use anyhow::{bail, Result};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Show every tag of each member.
    #[arg(long)]
    pub detailed: bool,
    /// Only members whose status matches this regular expression.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub wan: bool,
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn status_name(code: i64) -> &'static str {
    match code {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

/// Prints the members table; exit code 2 when no member matches (Consul's convention).
pub async fn members(args: MembersArgs) -> Result<i32> {
    let status_re = match &args.status {
        Some(re) => Some(
            regex::Regex::new(re)
                .map_err(|e| anyhow::anyhow!("Invalid -status regular expression: {e}"))?,
        ),
        None => None,
    };
    let api = Api::new(&args.http)?;
    let list = api
        .get_json(if args.wan {
            "/v1/agent/members?wan=1"
        } else {
            "/v1/agent/members"
        })
        .await?;
    let mut members: Vec<&Value> = list
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    members.sort_by_key(|m| (m["Tags"]["role"] != "consul", s(m, "Name")));
    let mut rows = vec![vec![
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>()];
    for m in members {
        let status = status_name(m["Status"].as_i64().unwrap_or(0));
        if status_re.as_ref().is_some_and(|re| !re.is_match(status)) {
            continue;
        }
        let server = m["Tags"]["role"] == "consul";
        let build = s(&m["Tags"], "build");
        let mut row = vec![
            s(m, "Name"),
            format!("{}:{}", s(m, "Addr"), s(m, "Port")),
            status.to_string(),
            if server { "server" } else { "client" }.to_string(),
            build.split(':').next().unwrap_or("").to_string(),
            s(m, "ProtocolCur"),
            s(&m["Tags"], "dc"),
            "default".to_string(),
            if server { "<all>" } else { "<default>" }.to_string(),
        ];
        if args.detailed {
            let tags: Vec<String> = m["Tags"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            row.push(tags.join(","));
        }
        rows.push(row);
    }
    if rows.len() == 1 {
        return Ok(2);
    }
    if args.detailed {
        rows[0].push("Tags".into());
    }
    print!("{}", columns(&rows));
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PlainArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn info(args: PlainArgs) -> Result<i32> {
    let api = Api::new(&args.http)?;
    let me = api.get_json("/v1/agent/self").await?;
    let Some(stats) = me["Stats"].as_object() else {
        bail!("the agent's answer has no Stats")
    };
    for (section, values) in stats {
        println!("{section}:");
        if let Some(values) = values.as_object() {
            for (k, v) in values {
                println!(
                    "\t{k} = {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                );
            }
        }
    }
    Ok(0)
}

pub fn version() -> i32 {
    println!("Weft v{}", weft_types::VERSION);
    println!("Speaks Consul's HTTP API (v1)");
    println!("Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)");
    0
}

pub async fn leave(args: PlainArgs) -> Result<i32> {
    let api = Api::new(&args.http)?;
    api.ok(Method::PUT, "/v1/agent/leave", None).await?;
    println!("Graceful leave complete");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Joins this server's WAN pool through other datacenters' servers (port 8302 by default).
    #[arg(long)]
    pub wan: bool,
    /// Gossip addresses of agents already in the cluster (host or host:port, port 8301 by default).
    #[arg(required = true)]
    pub addresses: Vec<String>,
}

/// `weft join ADDR...`: asks the local agent to join the cluster through these agents.
pub async fn join(args: JoinArgs) -> Result<i32> {
    let api = Api::new(&args.http)?;
    let mut joined = 0;
    for addr in &args.addresses {
        match api
            .ok(
                Method::PUT,
                &format!(
                    "/v1/agent/join/{}{}",
                    segment(addr),
                    if args.wan { "?wan=1" } else { "" }
                ),
                None,
            )
            .await
        {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{addr}': {e}"),
        }
    }
    if joined == 0 {
        bail!("Failed to join any nodes.");
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ForceLeaveArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The failed node's name.
    pub node: String,
}

/// `weft force-leave NODE`: marks a failed member as left, so the leader deregisters it.
pub async fn force_leave(args: ForceLeaveArgs) -> Result<i32> {
    let api = Api::new(&args.http)?;
    api.ok(
        Method::PUT,
        &format!("/v1/agent/force-leave/{}", segment(&args.node)),
        None,
    )
    .await?;
    Ok(0)
}

/// `weft keygen`: a new gossip encryption key.
pub fn keygen() -> Result<i32> {
    println!("{}", weft_gossip::generate_key()?);
    Ok(0)
}
