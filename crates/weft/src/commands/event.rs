//! `weft event` (fires a user event) and `weft watch -type event` (follows them), as Consul's commands.

use crate::client::{query_value, Api, HttpArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::Value;
use std::io::Write;

#[derive(Args, Debug)]
pub struct EventArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// The event's name.
    #[arg(long)]
    pub name: String,
    /// Only nodes whose name matches this regular expression take it.
    #[arg(long)]
    pub node: Option<String>,
    /// Only nodes with a service whose name matches this regular expression take it.
    #[arg(long)]
    pub service: Option<String>,
    /// With -service: only if one of those services has a tag matching this regular expression.
    #[arg(long)]
    pub tag: Option<String>,
    /// The payload (at most 512 bytes with the name and filters).
    pub payload: Option<String>,
}

/// `weft event -name NAME [-node RE] [-service RE] [-tag RE] [PAYLOAD]`.
pub async fn fire(a: EventArgs) -> Result<i32> {
    if a.name.is_empty() {
        bail!("Event name must be specified");
    }
    let mut query = Vec::new();
    for (key, value) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            query.push(format!("{key}={}", query_value(v)));
        }
    }
    let path = format!(
        "/v1/event/fire/{}{}{}",
        weft_types::url::segment(&a.name),
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let api = Api::new(&a.http)?;
    let body = a.payload.map(String::into_bytes);
    let event = api.ok(Method::PUT, &path, body).await?.json()?;
    println!("Event ID: {}", event["ID"].as_str().unwrap_or_default());
    Ok(0)
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// What to watch: `event` (the other types of Consul's watch are not in this Weft version).
    #[arg(long = "type")]
    pub kind: String,
    /// With -type event: only events of this name.
    #[arg(long)]
    pub name: Option<String>,
    /// A command run with the new result as JSON on its stdin, each time it changes; without one the result is
    /// printed.
    #[arg(trailing_var_arg = true)]
    pub handler: Vec<String>,
}

/// `weft watch -type event [-name NAME] [HANDLER...]`: blocks on `/v1/event/list` and hands every new list on.
pub async fn watch(a: WatchArgs) -> Result<i32> {
    if a.kind != "event" {
        bail!(
            "Unsupported watch type {:?}: this Weft version watches events (-type event)",
            a.kind
        );
    }
    let api = Api::new(&a.http)?;
    let name = a
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(|n| format!("name={}&", query_value(n)))
        .unwrap_or_default();
    let mut index: u64 = 0;
    loop {
        let answer = api
            .ok(
                Method::GET,
                &format!("/v1/event/list?{name}index={index}&wait=5m"),
                None,
            )
            .await?;
        let next = answer
            .headers
            .get("x-consul-index")
            .and_then(|i| i.to_str().ok())
            .and_then(|i| i.parse::<u64>().ok())
            .unwrap_or(0);
        if next == index {
            continue;
        }
        index = next;
        let list: Value = answer.json()?;
        hand_on(&list, &a.handler)?;
    }
}

fn hand_on(list: &Value, handler: &[String]) -> Result<()> {
    let text = serde_json::to_string_pretty(list)?;
    let Some((program, args)) = handler.split_first() else {
        println!("{text}");
        return Ok(std::io::stdout().flush()?);
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the handler {program:?}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is its own business.
        let _ = stdin.write_all(text.as_bytes());
    }
    let status = child.wait()?;
    if !status.success() {
        eprintln!("==> handler {program:?} exited with {status}");
    }
    Ok(())
}
