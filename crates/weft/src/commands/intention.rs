//! `weft intention create|delete|get|check|list|match`.

use crate::client::{columns, query_value, Api, HttpArgs};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum IntentionCmd {
    /// Creates an intention SRC => DST (allow by default).
    Create(CreateArgs),
    /// Deletes the intention SRC => DST.
    Delete(PairArgs),
    /// Shows the intention SRC => DST.
    Get(PairArgs),
    /// Checks whether SRC may connect to DST: prints Allowed (exit 0) or Denied (exit 1).
    Check(PairArgs),
    /// Lists every intention.
    List(ListArgs),
    /// Lists the intentions that match a source or destination, in evaluation order.
    Match(MatchArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub allow: bool,
    #[arg(long)]
    pub deny: bool,
    /// Replace an existing intention for the same pair.
    #[arg(long)]
    pub replace: bool,
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    pub source: String,
    pub destination: String,
}

#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    pub source: String,
    pub destination: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct MatchArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub source: bool,
    #[arg(long)]
    pub destination: bool,
    pub name: String,
}

fn pair_query(src: &str, dst: &str) -> String {
    format!(
        "source={}&destination={}",
        query_value(src),
        query_value(dst)
    )
}

pub async fn run(cmd: IntentionCmd) -> Result<i32> {
    match cmd {
        IntentionCmd::Create(a) => create(a).await,
        IntentionCmd::Delete(a) => delete(a).await,
        IntentionCmd::Get(a) => get(a).await,
        IntentionCmd::Check(a) => check(a).await,
        IntentionCmd::List(a) => list(a).await,
        IntentionCmd::Match(a) => matches(a).await,
    }
}

/// Deletes the intention SRC => DST.
async fn delete(a: PairArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    api.ok(
        Method::DELETE,
        &format!(
            "/v1/connect/intentions/exact?{}",
            pair_query(&a.source, &a.destination)
        ),
        None,
    )
    .await
    .map_err(|e| anyhow!("Error deleting intention: {e}"))?;
    println!("Intention deleted.");
    Ok(0)
}

/// Prints the intention SRC => DST.
async fn get(a: PairArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let answer = api
        .call(
            Method::GET,
            &format!(
                "/v1/connect/intentions/exact?{}",
                pair_query(&a.source, &a.destination)
            ),
            None,
        )
        .await?;
    if answer.status == StatusCode::NOT_FOUND {
        eprintln!("Intention not found: {} => {}", a.source, a.destination);
        return Ok(1);
    }
    let v = answer.json()?;
    let rows: Vec<Vec<String>> = [
        "ID",
        "Source",
        "Destination",
        "Action",
        "Description",
        "Precedence",
        "CreatedAt",
        "UpdatedAt",
    ]
    .iter()
    .map(|k| {
        let val = match &v[*k] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let key = match *k {
            "Source" => "Source:",
            "Destination" => "Destination:",
            other => other,
        };
        let val = if *k == "Source" {
            v["SourceName"].as_str().unwrap_or("").to_string()
        } else if *k == "Destination" {
            v["DestinationName"].as_str().unwrap_or("").to_string()
        } else {
            val
        };
        vec![format!("{}:", key.trim_end_matches(':')), val]
    })
    .collect();
    print!("{}", columns(&rows));
    Ok(0)
}

/// Prints Allowed (exit 0) or Denied (exit 1), or exit 2 when the agent cannot answer.
async fn check(a: PairArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let v = api
        .get_json(&format!(
            "/v1/connect/intentions/check?{}",
            pair_query(&a.source, &a.destination)
        ))
        .await
        .map_err(|e| anyhow!("Error checking the intention: {e}"))
        .map_err(|e| {
            eprintln!("{e}");
            e
        });
    let Ok(v) = v else { return Ok(2) };
    if v["Allowed"] == json!(true) {
        println!("Allowed");
        Ok(0)
    } else {
        println!("Denied");
        Ok(1)
    }
}

/// Lists every intention.
async fn list(a: ListArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let v = api.get_json("/v1/connect/intentions").await?;
    let mut rows = vec![vec![
        "ID".to_string(),
        "Source".into(),
        "Action".into(),
        "Destination".into(),
        "Precedence".into(),
    ]];
    for i in v.as_array().into_iter().flatten() {
        let action = if i["Permissions"].is_array() {
            "<permissions>".to_string()
        } else {
            i["Action"].as_str().unwrap_or("").to_string()
        };
        rows.push(vec![
            i["ID"].as_str().unwrap_or("").to_string(),
            i["SourceName"].as_str().unwrap_or("").to_string(),
            action,
            i["DestinationName"].as_str().unwrap_or("").to_string(),
            i["Precedence"].to_string(),
        ]);
    }
    print!("{}", columns(&rows));
    Ok(0)
}

/// Lists the intentions that match a source or a destination, in evaluation order.
async fn matches(a: MatchArgs) -> Result<i32> {
    if a.source == a.destination {
        bail!("Exactly one of -source or -destination is required");
    }
    let api = Api::new(&a.http)?;
    let by = if a.source { "source" } else { "destination" };
    let v = api
        .get_json(&format!(
            "/v1/connect/intentions/match?by={by}&name={}",
            query_value(&a.name)
        ))
        .await?;
    for i in v[&a.name].as_array().into_iter().flatten() {
        let action = i["Action"].as_str().unwrap_or("L7");
        println!(
            "{} => {} ({action})",
            i["SourceName"].as_str().unwrap_or(""),
            i["DestinationName"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

async fn create(a: CreateArgs) -> Result<i32> {
    if a.allow && a.deny {
        bail!("Only one of -allow or -deny may be specified");
    }
    let api = Api::new(&a.http)?;
    let action = if a.deny { "deny" } else { "allow" };
    let query = pair_query(&a.source, &a.destination);
    if !a.replace {
        let existing = api
            .call(
                Method::GET,
                &format!("/v1/connect/intentions/exact?{query}"),
                None,
            )
            .await?;
        if existing.status.is_success() {
            eprintln!(
                "Error creating intention: an intention {} => {} already exists; use -replace to replace it",
                a.source, a.destination
            );
            return Ok(1);
        }
    }
    let mut meta = serde_json::Map::new();
    for pair in &a.meta {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("Invalid -meta {pair:?}: expected key=value"))?;
        meta.insert(k.to_string(), json!(v));
    }
    let body = json!({"SourceType": "consul", "Action": action, "Description": a.description.clone().unwrap_or_default(), "Meta": meta});
    api.ok(
        Method::PUT,
        &format!("/v1/connect/intentions/exact?{query}"),
        Some(body.to_string().into_bytes()),
    )
    .await
    .map_err(|e| anyhow!("Error creating intention: {e}"))?;
    println!("Created: {} => {} ({action})", a.source, a.destination);
    Ok(0)
}
