//! `weft validate` and `weft reload`: the configuration checked offline, or re-read by a running agent.

use crate::client::{Api, HttpArgs};
use crate::config::{AgentFlags, ConfigBuilder};
use anyhow::Result;
use clap::Args;
use reqwest::Method;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The format of files whose name ends in neither .json nor .hcl: json or hcl.
    #[arg(long = "config-format")]
    pub config_format: Option<String>,
    /// Print nothing when the configuration is valid.
    #[arg(long)]
    pub quiet: bool,
    /// Config files and directories, read as `weft agent -config-file/-config-dir` would.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Checks the files as the agent would at start: exit 0 when valid, 1 with every problem otherwise.
pub fn validate(args: ValidateArgs) -> Result<i32> {
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
        args.paths.into_iter().partition(|p| p.is_dir());
    let flags = AgentFlags {
        config_dir: dirs,
        config_file: files,
        config_format: args.config_format,
        ..AgentFlags::default()
    };
    match ConfigBuilder::from_flags(&flags).build_and_validate() {
        Ok(_) => {
            if !args.quiet {
                println!("Configuration is valid!");
            }
            Ok(0)
        }
        Err(errors) => {
            for e in &errors.problems {
                eprintln!("Config validation failed: {e}");
            }
            Ok(1)
        }
    }
}

#[derive(Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Asks the agent to re-read its configuration.
pub async fn reload(args: ReloadArgs) -> Result<i32> {
    let api = Api::new(&args.http)?;
    let answer = api.ok(Method::PUT, "/v1/agent/reload", None).await?;
    println!("Configuration reload triggered");
    if let Some(keys) = answer
        .headers
        .get("x-weft-restart-required")
        .and_then(|v| v.to_str().ok())
    {
        eprintln!("Changed settings that take effect only after a restart: {keys}");
    }
    Ok(0)
}
