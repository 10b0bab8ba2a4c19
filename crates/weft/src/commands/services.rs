//! `weft services register|deregister`: local-agent registrations from flags or JSON files.

use crate::client::{segment, Api, HttpArgs};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ServicesCmd {
    /// Registers services with the local agent, from flags or JSON files.
    Register(RegisterArgs),
    /// Deregisters services from the local agent, by -id or from the files that registered them.
    Deregister(DeregisterArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Metadata key=value (repeatable).
    #[arg(long = "meta")]
    pub meta: Vec<String>,
    #[arg(long)]
    pub kind: Option<String>,
    /// JSON files holding a `service` object or a `services` list.
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DeregisterArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub id: Option<String>,
    pub files: Vec<PathBuf>,
}

pub async fn run(cmd: ServicesCmd) -> Result<i32> {
    match cmd {
        ServicesCmd::Register(a) => register(a).await,
        ServicesCmd::Deregister(a) => deregister(a).await,
    }
}

async fn register(a: RegisterArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let mut defs = Vec::new();
    if let Some(name) = &a.name {
        if !a.files.is_empty() {
            bail!("Cannot specify both flags and service files");
        }
        let mut meta = Map::new();
        for pair in &a.meta {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("Invalid -meta {pair:?}: expected key=value"))?;
            meta.insert(k.to_string(), json!(v));
        }
        defs.push(json!({
            "Name": name, "ID": a.id.clone().unwrap_or_default(), "Address": a.address.clone().unwrap_or_default(),
            "Port": a.port.unwrap_or(0), "Tags": a.tags, "Meta": meta, "Kind": a.kind.clone().unwrap_or_default(),
        }));
    } else {
        if a.files.is_empty() {
            bail!("Must specify -name or at least one service definition file");
        }
        for f in &a.files {
            defs.extend(weft_sidecar::service_file::definitions(f)?);
        }
    }
    for def in defs {
        let (name, _) = weft_sidecar::service_file::name_and_id(&def);
        api.ok(
            Method::PUT,
            "/v1/agent/service/register",
            Some(serde_json::to_vec(&def)?),
        )
        .await
        .map_err(|e| anyhow!("Error registering service {name:?}: {e}"))?;
        println!("Registered service: {name}");
    }
    Ok(0)
}

async fn deregister(a: DeregisterArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let mut ids = Vec::new();
    if let Some(id) = &a.id {
        ids.push(id.clone());
    }
    for f in &a.files {
        ids.extend(
            weft_sidecar::service_file::definitions(f)?
                .iter()
                .map(|d| weft_sidecar::service_file::name_and_id(d).1),
        );
    }
    if ids.is_empty() {
        bail!("Must specify -id or at least one service definition file");
    }
    for id in ids {
        api.ok(
            Method::PUT,
            &format!("/v1/agent/service/deregister/{}", segment(&id)),
            None,
        )
        .await
        .map_err(|e| anyhow!("Error deregistering service {id:?}: {e}"))?;
        println!("Deregistered service: {id}");
    }
    Ok(0)
}
