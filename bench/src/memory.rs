//! Scenario 1, idle memory: the resident set (VmRSS in `/proc/<pid>/status`) of a fresh `weft agent -dev`, read
//! after start-up has settled (the agent has printed its address, answered one `/v1/status/leader`, then been left
//! alone for a settle period). Target: at most 15 MB.
//!
//! For context it measures peers the same way when they are installed (nothing is installed here): Consul's own
//! dev agent (`consul` on `$PATH`), and etcd from Debian's `etcd-server` package (`etcd` on `$PATH`). A peer that
//! is not installed is reported as not measured.

use crate::process::{self, mb, Agent, Rss};
use crate::report::{announce, Row, Verdict};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_testkit::net::free_port;

pub const TARGET_BYTES: u64 = 15_000_000;
pub const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(bin: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let agent = Agent::start(bin).await?;
    let client = reqwest::Client::new();
    let leader = client
        .get(format!("{}/v1/status/leader", agent.url))
        .send()
        .await?
        .text()
        .await?;
    println!("    agent at {} answers leader {leader}", agent.url);
    drop(client); // closes the connection: the agent is left idle
    tokio::time::sleep(SETTLE).await;
    let rss = agent.rss()?;
    drop(agent);
    println!("    weft idle: {}", rss.describe());
    rows.push(Row::new(
        format!("weft dev agent RSS, idle ({}s settle)", SETTLE.as_secs()),
        mb(rss.rss),
        format!("<= {}", mb(TARGET_BYTES)),
        Verdict::check(rss.rss <= TARGET_BYTES),
    ));
    rows.push(Row::info(
        "  of which anonymous / file-backed",
        format!("{} / {}", mb(rss.anon), mb(rss.file)),
    ));
    announce(&rows[0]);

    rows.push(peer_row("Consul dev agent RSS, idle", "consul", consul).await);
    rows.push(peer_row("etcd (Debian etcd-server) RSS, idle", "etcd", etcd).await);
    Ok(rows)
}

type PeerFn = fn(&Path) -> Result<(process::Guard, String)>;

/// Measures one peer if its binary is installed; a row saying why not otherwise.
async fn peer_row(figure: &str, binary: &str, start: PeerFn) -> Row {
    let Some(path) = process::which(binary) else {
        let why = if binary == "consul" {
            "not measured here (Consul not available)".to_string()
        } else {
            format!("not measured here ({binary} not installed)")
        };
        let row = Row::new(figure, why, "- (context)", Verdict::Skipped);
        announce(&row);
        return row;
    };
    let row = match peer_rss(&path, start).await {
        Ok(rss) => {
            println!("    {binary} idle: {}", rss.describe());
            Row::new(figure, mb(rss.rss), "- (context)", Verdict::Info)
        }
        Err(e) => Row::new(figure, format!("{e:#}"), "- (context)", Verdict::Error),
    };
    announce(&row);
    row
}

async fn peer_rss(path: &Path, start: PeerFn) -> Result<Rss> {
    let (mut guard, ready_url) = start(path)?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = guard.exit_status() {
            bail!("{status}");
        }
        let ok = match client.get(&ready_url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|t| t.len() > 2),
            _ => false,
        };
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("not ready within 30 s ({ready_url})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    Rss::of(guard.pid())
}

fn consul(path: &Path) -> Result<(process::Guard, String)> {
    let http = free_port()?;
    let mut cmd = Command::new(path);
    cmd.args(["agent", "-dev", "-http-port"])
        .arg(http.to_string())
        .args(["-dns-port", "-1", "-grpc-port", "-1"]);
    let (guard, stdout) = process::spawn("consul", &mut cmd)?;
    process::drain(stdout);
    Ok((guard, format!("http://127.0.0.1:{http}/v1/status/leader")))
}

fn etcd(path: &Path) -> Result<(process::Guard, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let data = process::temp_path("etcd-data");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(path);
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")]);
    let spawned = process::spawn("etcd", &mut cmd);
    let (mut guard, stdout) = match spawned {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&data);
            return Err(e);
        }
    };
    process::also_remove(&mut guard, data);
    process::drain(stdout);
    Ok((guard, format!("{client_url}/health")))
}
