//! Scenario 3, reads at scale: 10,000 services with 2 instances each, then catalog and health reads of random
//! services. Target: read p99 at most 2 ms, for each endpoint.
//!
//! Registration: `PUT /v1/catalog/register` registers one instance per call, so 20,000 calls (service `svc-NNNNN`
//! on nodes `bench-node-1` and `bench-node-2`) go out from 32 concurrent workers over kept-alive connections. The
//! agent's RSS is read (after a settle period) before and after, and the growth is reported.
//!
//! Reads: a few concurrent clients (default 4), each sending one request at a time over its own kept-alive
//! connection, alternate `GET /v1/catalog/service/<name>` and `GET /v1/health/service/<name>` for a random
//! registered name. A sample is the time from sending the request to having the whole body; JSON parsing and the
//! check that both instances came back happen after the clock stops. 1,000 unmeasured reads warm up first. The
//! client shares the machine's cores with the agent, so the figures include the client's own overhead.

use crate::memory::SETTLE;
use crate::process::{mb, Agent};
use crate::report::{announce, ms, Row, Summary, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TARGET_P99: Duration = Duration::from_millis(2);
const NODES: usize = 2;
const WARMUP: usize = 1_000;

pub struct Config {
    pub services: usize,
    pub writers: usize,
    pub reads: usize,
    pub readers: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            services: 10_000,
            writers: 32,
            reads: 20_000,
            readers: 4,
        }
    }
}

fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

pub async fn run(bin: &Path, cfg: &Config) -> Result<Vec<Row>> {
    let agent = Agent::start(bin).await?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(cfg.writers.max(cfg.readers) * 2)
        .build()?;
    tokio::time::sleep(SETTLE).await;
    let before = agent.rss()?;
    println!("    RSS before registering: {}", before.describe());

    // Register services * NODES instances from `writers` workers.
    let total = cfg.services * NODES;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.writers {
        let (client, next, url) = (
            client.clone(),
            next.clone(),
            format!("{}/v1/catalog/register", agent.url),
        );
        let services = cfg.services;
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let (svc, node) = (i % services, i / services + 1);
                let body = json!({
                    "Node": format!("bench-node-{node}"),
                    "Address": format!("10.0.0.{node}"),
                    "Service": {
                        "ID": service_name(svc),
                        "Service": service_name(svc),
                        "Port": 8080,
                        "Tags": ["bench", "v1"],
                    },
                });
                let t = Instant::now();
                let resp = client.put(&url).json(&body).send().await?;
                let status = resp.status();
                let text = resp.text().await?;
                latencies.push(t.elapsed());
                if !status.is_success() || text.trim() != "true" {
                    bail!(
                        "register {} on node {node}: {status} {text}",
                        service_name(svc)
                    );
                }
            }
        });
    }
    let mut write_latencies = Vec::with_capacity(total);
    while let Some(done) = workers.join_next().await {
        write_latencies.extend(done.context("a register worker panicked")??);
    }
    let reg_elapsed = started.elapsed();
    let writes = Summary::of(&mut write_latencies);
    println!(
        "    registered {total} instances in {:.2} s ({:.0}/s, {} writers); per call {}",
        reg_elapsed.as_secs_f64(),
        total as f64 / reg_elapsed.as_secs_f64(),
        cfg.writers,
        writes.describe()
    );
    let listed: Value = client
        .get(format!("{}/v1/catalog/services", agent.url))
        .send()
        .await?
        .json()
        .await?;
    let count = listed.as_object().map_or(0, |m| m.len());
    if count < cfg.services {
        bail!(
            "the catalog lists {count} services after registering {}",
            cfg.services
        );
    }
    let after_now = agent.rss()?;
    tokio::time::sleep(SETTLE).await;
    let after = agent.rss()?;
    println!("    RSS right after registering: {}", after_now.describe());
    println!("    RSS after settling:          {}", after.describe());

    // Reads.
    let warm = read_phase(&agent.url, cfg.services, WARMUP, cfg.readers, 7).await?;
    drop(warm);
    let started = Instant::now();
    let (mut catalog, mut health) =
        read_phase(&agent.url, cfg.services, cfg.reads, cfg.readers, 42).await?;
    let elapsed = started.elapsed();
    let (catalog, health) = (Summary::of(&mut catalog), Summary::of(&mut health));
    println!(
        "    {} reads by {} clients in {:.2} s ({:.0}/s)",
        cfg.reads,
        cfg.readers,
        elapsed.as_secs_f64(),
        cfg.reads as f64 / elapsed.as_secs_f64()
    );
    println!("    /v1/catalog/service/<name>: {}", catalog.describe());
    println!("    /v1/health/service/<name>:  {}", health.describe());
    let rss_reads = agent.rss()?;
    println!("    RSS after reads: {}", rss_reads.describe());
    drop(agent);

    let k = cfg.services / 1000;
    let growth = after.rss.saturating_sub(before.rss);
    let rows = vec![
        Row::info(
            format!("RSS before / after {k}k services x {NODES}"),
            format!("{} / {}", mb(before.rss), mb(after.rss)),
        ),
        Row::info(
            "  RSS growth (per instance)",
            format!(
                "{} ({} B)",
                mb(growth),
                growth / (cfg.services * NODES).max(1) as u64
            ),
        ),
        Row::info(
            format!("register {total} instances ({} in flight)", cfg.writers),
            format!(
                "{:.2} s ({:.0}/s), p50 {}, p99 {}",
                reg_elapsed.as_secs_f64(),
                total as f64 / reg_elapsed.as_secs_f64(),
                ms(writes.p50),
                ms(writes.p99)
            ),
        ),
        Row::new(
            "catalog/service read p99",
            format!("{} (p50 {})", ms(catalog.p99), ms(catalog.p50)),
            format!("<= {}", ms(TARGET_P99)),
            Verdict::check(catalog.p99 <= TARGET_P99),
        ),
        Row::new(
            "health/service read p99",
            format!("{} (p50 {})", ms(health.p99), ms(health.p50)),
            format!("<= {}", ms(TARGET_P99)),
            Verdict::check(health.p99 <= TARGET_P99),
        ),
    ];
    rows.iter().for_each(announce);
    Ok(rows)
}

/// `reads` reads split over `readers` sequential clients; returns (catalog samples, health samples).
async fn read_phase(
    url: &str,
    services: usize,
    reads: usize,
    readers: usize,
    seed: u64,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..readers {
        let url = url.to_string();
        let share = reads / readers + usize::from(r < reads % readers);
        // One client per reader: its own kept-alive connection.
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()?;
        tasks.spawn(async move {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (r as u64 + 1));
            let (mut catalog, mut health) = (Vec::new(), Vec::new());
            for i in 0..share {
                let name = service_name((rng.next() % services as u64) as usize);
                let is_catalog = i % 2 == 0;
                let path = if is_catalog {
                    format!("{url}/v1/catalog/service/{name}")
                } else {
                    format!("{url}/v1/health/service/{name}")
                };
                let t = Instant::now();
                let resp = client.get(&path).send().await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                let took = t.elapsed();
                if !status.is_success() {
                    bail!("GET {path}: {status}");
                }
                let value: Value = serde_json::from_slice(&body)
                    .with_context(|| format!("GET {path}: not JSON"))?;
                let n = value
                    .as_array()
                    .ok_or_else(|| anyhow!("GET {path}: not a list"))?
                    .len();
                if n != NODES {
                    bail!("GET {path}: {n} instances, expected {NODES}");
                }
                if is_catalog {
                    catalog.push(took);
                } else {
                    health.push(took);
                }
            }
            Ok::<_, anyhow::Error>((catalog, health))
        });
    }
    let (mut catalog, mut health) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (c, h) = done.context("a read worker panicked")??;
        catalog.extend(c);
        health.extend(h);
    }
    Ok((catalog, health))
}

/// A tiny deterministic PRNG (xorshift64) for picking service names.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
