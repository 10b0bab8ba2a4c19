//! `weft snapshot save|restore|inspect FILE`.

use crate::client::{Api, HttpArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use reqwest::Method;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Saves the whole cluster state to a file.
    Save(FileArgs),
    /// Replaces the whole cluster state with a saved file.
    Restore(FileArgs),
    /// Prints a snapshot file's header.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct FileArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub file: PathBuf,
}

pub async fn run(cmd: SnapshotCmd) -> Result<i32> {
    match cmd {
        SnapshotCmd::Save(a) => {
            let api = Api::new(&a.http)?;
            let answer = api.ok(Method::GET, "/v1/snapshot", None).await?;
            let snapshot = weft_http::snapshot::decode(&answer.body)
                .map_err(|e| anyhow::anyhow!("the agent sent an unusable snapshot: {e}"))?;
            // The snapshot holds the CA's private key and every secret in the KV store: owner only, and durable.
            weft_types::fsio::atomic_write(&a.file, &answer.body, weft_types::fsio::PRIVATE_FILE)
                .with_context(|| format!("cannot write {}", a.file.display()))?;
            println!("Saved and verified snapshot to index {}", snapshot.index);
            Ok(0)
        }
        SnapshotCmd::Restore(a) => {
            let file = std::fs::read(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            if let Err(e) = weft_http::snapshot::decode(&file) {
                bail!("Error restoring snapshot: {e}");
            }
            let api = Api::new(&a.http)?;
            api.ok(Method::PUT, "/v1/snapshot", Some(file)).await?;
            println!("Restored snapshot");
            Ok(0)
        }
        SnapshotCmd::Inspect(a) => {
            let file = std::fs::read(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let snapshot = weft_http::snapshot::decode(&file)
                .map_err(|e| anyhow::anyhow!("Error inspecting snapshot: {e}"))?;
            match snapshot.format {
                // Consul's `snapshot inspect` layout.
                weft_http::snapshot::Format::Archive(meta) => {
                    println!(" ID           {}", meta.id);
                    println!(" Size         {}", meta.size);
                    println!(" Index        {}", meta.index);
                    println!(" Term         {}", meta.term);
                    println!(" Version      {}", meta.version);
                }
                weft_http::snapshot::Format::Weft(header) => {
                    println!(" Index       {}", header.index);
                    println!(" Datacenter  {}", header.datacenter);
                    println!(" Size        {}", header.length);
                    println!(" Checksum    {}", header.checksum);
                    println!(" Version     {}", header.version);
                }
            }
            Ok(0)
        }
    }
}
