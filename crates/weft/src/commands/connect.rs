//! `weft connect proxy|ingress` (run by the weft-sidecar crate, see `crate::sidecar_exec`) and
//! `weft connect ca get-config|set-config`.

use crate::client::{Api, HttpArgs};
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum ConnectCmd {
    /// Runs a sidecar proxy: mutual TLS in and out, under intentions.
    Proxy(weft_sidecar::ProxyArgs),
    /// Runs an ingress gateway: plain HTTP/TCP from outside, mutual TLS into the mesh under intentions.
    Ingress(weft_sidecar::IngressArgs),
    /// Reads and changes the CA configuration.
    #[command(subcommand)]
    Ca(CaCmd),
}

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Prints the CA configuration.
    GetConfig(CaGetArgs),
    /// Applies a CA configuration from a JSON file (a new key rotates the root).
    SetConfig(CaSetArgs),
}

#[derive(Args, Debug)]
pub struct CaGetArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct CaSetArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long = "config-file")]
    pub config_file: String,
    #[arg(long = "force-without-cross-signing")]
    pub force_without_cross_signing: bool,
}

pub async fn run(cmd: ConnectCmd) -> Result<i32> {
    match cmd {
        ConnectCmd::Proxy(a) => weft_sidecar::run(weft_sidecar::ConnectCmd::Proxy(a)).await,
        ConnectCmd::Ingress(a) => weft_sidecar::run(weft_sidecar::ConnectCmd::Ingress(a)).await,
        ConnectCmd::Ca(CaCmd::GetConfig(a)) => {
            let api = Api::new(&a.http)?;
            let v = api.get_json("/v1/connect/ca/configuration").await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        ConnectCmd::Ca(CaCmd::SetConfig(a)) => {
            let api = Api::new(&a.http)?;
            let text = std::fs::read_to_string(&a.config_file)
                .with_context(|| format!("Error reading config file {:?}", a.config_file))?;
            let mut v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid JSON", a.config_file))?;
            if a.force_without_cross_signing {
                v["ForceWithoutCrossSigning"] = json!(true);
            }
            api.ok(
                Method::PUT,
                "/v1/connect/ca/configuration",
                Some(serde_json::to_vec(&v)?),
            )
            .await
            .map_err(|e| anyhow!("Error setting CA configuration: {e}"))?;
            println!("Configuration updated!");
            Ok(0)
        }
    }
}
