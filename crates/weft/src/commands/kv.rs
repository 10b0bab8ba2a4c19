//! `weft kv get|put|delete`, with Consul's flags, messages and exit codes.

use crate::client::{encode_path, query_value, Api, HttpArgs};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::io::Read;

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Reads a key (or a prefix with -recurse / -keys).
    Get(GetArgs),
    /// Writes a value: an argument, @file, or - for stdin.
    Put(PutArgs),
    /// Deletes a key (or a prefix with -recurse).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub recurse: bool,
    #[arg(long)]
    pub keys: bool,
    #[arg(long, default_value = "/")]
    pub separator: String,
    #[arg(long)]
    pub detailed: bool,
    #[arg(long)]
    pub base64: bool,
    pub key: Option<String>,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long, default_value_t = 0)]
    pub flags: u64,
    #[arg(long)]
    pub cas: bool,
    #[arg(long = "modify-index")]
    pub modify_index: Option<u64>,
    /// The value is base64-encoded.
    #[arg(long)]
    pub base64: bool,
    #[arg(long)]
    pub acquire: bool,
    #[arg(long)]
    pub release: bool,
    #[arg(long)]
    pub session: Option<String>,
    pub key: String,
    #[arg(allow_hyphen_values = true)]
    pub value: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    #[arg(long)]
    pub recurse: bool,
    #[arg(long)]
    pub cas: bool,
    #[arg(long = "modify-index")]
    pub modify_index: Option<u64>,
    pub key: Option<String>,
}

pub async fn run(cmd: KvCmd) -> Result<i32> {
    match cmd {
        KvCmd::Get(a) => get(a).await,
        KvCmd::Put(a) => put(a).await,
        KvCmd::Delete(a) => delete(a).await,
    }
}

fn decode_value(entry: &Value) -> Vec<u8> {
    entry["Value"]
        .as_str()
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .unwrap_or_default()
}

fn show(value: &[u8], as_base64: bool) -> String {
    if as_base64 {
        base64::engine::general_purpose::STANDARD.encode(value)
    } else {
        String::from_utf8_lossy(value).into_owned()
    }
}

fn print_detailed(entry: &Value, as_base64: bool) {
    let rows = [
        ("CreateIndex", entry["CreateIndex"].to_string()),
        ("Flags", entry["Flags"].to_string()),
        ("Key", entry["Key"].as_str().unwrap_or("").to_string()),
        ("LockIndex", entry["LockIndex"].to_string()),
        ("ModifyIndex", entry["ModifyIndex"].to_string()),
        (
            "Session",
            entry["Session"].as_str().unwrap_or("-").to_string(),
        ),
        ("Value", show(&decode_value(entry), as_base64)),
    ];
    for (k, v) in rows {
        println!("{k:<15}{v}");
    }
}

async fn get(a: GetArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let key = a.key.clone().unwrap_or_default();
    if key.is_empty() && !a.recurse && !a.keys {
        bail!("Missing KEY argument");
    }
    if a.keys {
        let path = format!(
            "/v1/kv/{}?keys&separator={}",
            encode_path(&key),
            query_value(&a.separator)
        );
        let answer = api.call(Method::GET, &path, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(0);
        }
        for k in answer.json()?.as_array().into_iter().flatten() {
            println!("{}", k.as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let path = format!(
        "/v1/kv/{}{}",
        encode_path(&key),
        if a.recurse { "?recurse" } else { "" }
    );
    let answer = api.call(Method::GET, &path, None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        if a.recurse {
            return Ok(0);
        }
        eprintln!("Error! No key exists at: {key}");
        return Ok(1);
    }
    if !answer.status.is_success() {
        bail!("Error querying Weft agent: {}", answer.text());
    }
    let entries = answer.json()?;
    for (i, entry) in entries.as_array().into_iter().flatten().enumerate() {
        if a.detailed {
            if i > 0 {
                println!();
            }
            print_detailed(entry, a.base64);
        } else if a.recurse {
            println!(
                "{}:{}",
                entry["Key"].as_str().unwrap_or(""),
                show(&decode_value(entry), a.base64)
            );
        } else {
            println!("{}", show(&decode_value(entry), a.base64));
        }
    }
    Ok(0)
}

fn read_value(a: &PutArgs) -> Result<Vec<u8>> {
    let raw: Vec<u8> = match a.value.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("Failed to read stdin")?;
            buf
        }
        Some(v) if v.starts_with('@') => {
            std::fs::read(&v[1..]).with_context(|| format!("Failed to read file {:?}", &v[1..]))?
        }
        Some(v) => v.as_bytes().to_vec(),
    };
    if a.base64 {
        let text = String::from_utf8_lossy(&raw);
        return base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| anyhow!("Failed to base64 decode value: {e}"));
    }
    Ok(raw)
}

async fn put(a: PutArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    if a.key.is_empty() {
        bail!("Missing KEY argument");
    }
    let value = read_value(&a)?;
    let mut query = vec![format!("flags={}", a.flags)];
    if a.cas {
        let index = a
            .modify_index
            .ok_or_else(|| anyhow!("Must specify -modify-index with -cas!"))?;
        query.push(format!("cas={index}"));
    }
    if a.acquire || a.release {
        let session = a
            .session
            .as_deref()
            .ok_or_else(|| anyhow!("Must specify -session with -acquire or -release"))?;
        query.push(format!(
            "{}={}",
            if a.acquire { "acquire" } else { "release" },
            query_value(session)
        ));
    }
    let path = format!("/v1/kv/{}?{}", encode_path(&a.key), query.join("&"));
    let answer = api
        .ok(Method::PUT, &path, Some(value))
        .await
        .map_err(|e| anyhow!("Error! Failed writing data: {e}"))?;
    let written = answer.text() == "true";
    // Consul's words for each outcome.
    match (written, a.acquire, a.release) {
        (true, true, _) => println!("Success! Lock acquired on: {}", a.key),
        (true, _, true) => println!("Success! Lock released on: {}", a.key),
        (true, ..) => println!("Success! Data written to: {}", a.key),
        (false, true, _) => eprintln!("Error! Did not acquire lock"),
        (false, _, true) => eprintln!("Error! Did not release lock"),
        (false, ..) => eprintln!("Error! Did not write to {}: CAS failed", a.key),
    }
    Ok(if written { 0 } else { 1 })
}

async fn delete(a: DeleteArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let key = a.key.clone().unwrap_or_default();
    if key.is_empty() && !a.recurse {
        bail!("Missing KEY argument");
    }
    if a.cas && a.recurse {
        bail!("Cannot specify both -cas and -recurse!");
    }
    let mut path = format!("/v1/kv/{}", encode_path(&key));
    if a.recurse {
        path.push_str("?recurse");
    } else if a.cas {
        let index = a
            .modify_index
            .ok_or_else(|| anyhow!("Must specify -modify-index with -cas!"))?;
        path.push_str(&format!("?cas={index}"));
    }
    let answer = api
        .ok(Method::DELETE, &path, None)
        .await
        .map_err(|e| anyhow!("Error! Did not delete key: {e}"))?;
    if answer.text() != "true" {
        eprintln!("Error! Did not delete key {key}: CAS failed");
        return Ok(1);
    }
    if a.recurse {
        println!("Success! Deleted keys with prefix: {key}");
    } else {
        println!("Success! Deleted key: {key}");
    }
    Ok(0)
}
