//! Scenario 2, time to leader: from the moment the process is spawned to the first `/v1/status/leader` that
//! answers 200 with a non-empty leader. Target: at most 100 ms.
//!
//! Each run spawns `weft agent -dev -http-port 0`, reads the `HTTP API:` line from its stdout to learn the port
//! (the listener is bound before that line is printed, so a request sent then is queued, not refused), then asks
//! for the leader, retrying every millisecond until the answer is a non-empty string. The clock starts just before
//! `spawn` and stops when the answer's body has arrived. One unmeasured warm-up run comes first (it loads the
//! binary into the page cache); then `runs` measured runs give p50 and max. The time to the `HTTP API:` line is
//! printed alongside to show how the total splits between process start-up and the first answer.

use crate::process::Agent;
use crate::report::{announce, ms, Row, Summary, Verdict};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

pub const TARGET: Duration = Duration::from_millis(100);

pub async fn run(bin: &Path, runs: usize) -> Result<Vec<Row>> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()?;
    let (cold, cold_line) = once(bin, &client).await?;
    println!(
        "    warm-up run (not counted): {} to leader, {} to the HTTP API line",
        ms(cold),
        ms(cold_line)
    );
    let mut totals = Vec::with_capacity(runs);
    let mut lines = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (total, line) = once(bin, &client).await?;
        totals.push(total);
        lines.push(line);
    }
    let total = Summary::of(&mut totals);
    let line = Summary::of(&mut lines);
    println!("    spawn -> leader answer:   {}", total.describe());
    println!("    spawn -> HTTP API line:   {}", line.describe());
    let rows = vec![
        Row::new(
            format!("spawn -> leader answer, p50 ({runs} runs)"),
            ms(total.p50),
            format!("<= {}", ms(TARGET)),
            Verdict::check(total.p50 <= TARGET),
        ),
        Row::new(
            format!("spawn -> leader answer, max ({runs} runs)"),
            ms(total.max),
            format!("<= {}", ms(TARGET)),
            Verdict::check(total.max <= TARGET),
        ),
        Row::info(
            "  of which spawn -> 'HTTP API:' line, p50/max",
            format!("{} / {}", ms(line.p50), ms(line.max)),
        ),
    ];
    rows.iter().for_each(announce);
    Ok(rows)
}

/// One run: (spawn -> leader answered, spawn -> HTTP API line printed).
async fn once(bin: &Path, client: &reqwest::Client) -> Result<(Duration, Duration)> {
    let agent = Agent::start(bin).await?;
    let url = format!("{}/v1/status/leader", agent.url);
    let deadline = agent.spawned + Duration::from_secs(10);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            if resp.status().is_success() {
                let body = resp.text().await.unwrap_or_default();
                let done = Instant::now();
                let leader: String = serde_json::from_str(&body).unwrap_or_default();
                if !leader.is_empty() {
                    return Ok((done - agent.spawned, agent.announced - agent.spawned));
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no leader within 10 s of spawning the agent ({url})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
