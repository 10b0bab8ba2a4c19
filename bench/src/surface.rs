//! `surface`: the figures issue 19 sets for the rest of Consul's agent surface, on 50 agents on loopback (three
//! servers and 47 client agents, each its own `weft` process):
//!
//! 1. Event fan-out: an event fired on one agent, seen by a blocking `GET /v1/event/list` on every agent; the
//!    delay from the fire to each agent's answer, over 20 events (1,000 deliveries): p50, p99, max.
//! 2. Coordinate traffic: the bytes each agent's round-trip probes (pings it sends, pongs it answers) put on the
//!    wire per second, from the agents' own counters over 20 s; all gossip beside it.
//! 3. `/v1/agent/metrics`: 1,000 reads in a row on one keep-alive connection, on the leader and on a client agent.

use crate::cluster::{http_client, send, start_weft, Http};
use crate::report::{announce, ms, percentile, Row, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: usize = 47;
const EVENTS: usize = 20;
const TRAFFIC_WINDOW: Duration = Duration::from_secs(20);
const METRICS_READS: usize = 1000;

pub async fn run(bin: &Path) -> Result<Vec<Row>> {
    let (members, _cleanup) = start_weft(bin, CLIENTS).await?;
    let urls: Vec<String> = members
        .iter()
        .map(|m| m.url().map(str::to_string))
        .collect::<Result<_>>()?;
    let http = http_client();
    wait_for_members(&http, &urls).await?;
    let mut rows = Vec::new();
    rows.extend(event_fan_out(&http, &urls).await?);
    rows.extend(coordinate_traffic(&http, &urls).await?);
    for (what, url) in [
        ("leader", &urls[leader(&http, &urls).await?]),
        ("client agent", &urls[3]),
    ] {
        rows.push(metrics_latency(&http, url, what).await?);
    }
    drop(members);
    Ok(rows)
}

/// Waits until the first agent sees all 50 alive.
async fn wait_for_members(http: &Http, urls: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = send(
            http,
            "GET",
            &format!("{}/v1/agent/members", urls[0]),
            vec![],
        )
        .await?;
        let members: serde_json::Value = serde_json::from_slice(&body)?;
        let alive = members
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["Status"] == 1)
            .count();
        if alive == urls.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {alive} of {} agents alive after 60 s", urls.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn leader(http: &Http, urls: &[String]) -> Result<usize> {
    for (i, url) in urls.iter().enumerate().take(3) {
        let (_, body) = send(http, "GET", &format!("{url}/v1/agent/self"), vec![]).await?;
        let me: serde_json::Value = serde_json::from_slice(&body)?;
        if me["Stats"]["raft"]["state"] == "Leader" {
            return Ok(i);
        }
    }
    bail!("no server says it leads")
}

/// The event list's index on one agent (`X-Consul-Index`).
async fn event_index(http: &Http, url: &str) -> Result<u64> {
    let req = hyper::Request::builder()
        .uri(format!("{url}/v1/event/list?name=bench"))
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))?;
    let resp = http.request(req).await?;
    resp.headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{url}: no X-Consul-Index on /v1/event/list"))
}

/// Blocks on `url`'s event list until it holds an event with `payload`; when it did.
async fn seen(http: Http, url: String, mut index: u64, payload: String) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("{url}/v1/event/list?name=bench&index={index}&wait=5s");
        let req = hyper::Request::builder()
            .uri(path)
            .body(http_body_util::Full::new(hyper::body::Bytes::new()))?;
        let resp = http.request(req).await?;
        let at = Instant::now();
        index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(index);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await?.to_bytes();
        let events: serde_json::Value = serde_json::from_slice(&body)?;
        let found = events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["Payload"].as_str() == Some(payload.as_str()));
        if found {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("{url} never saw event {payload}");
        }
    }
}

async fn event_fan_out(http: &Http, urls: &[String]) -> Result<Vec<Row>> {
    use base64::Engine;
    let mut delays = Vec::new();
    let mut missed = 0usize;
    for round in 0..EVENTS {
        let payload_text = format!("bench-{round}");
        let payload = base64::engine::general_purpose::STANDARD.encode(&payload_text);
        let mut watchers = Vec::new();
        for url in urls {
            let index = event_index(http, url).await?;
            watchers.push(tokio::spawn(seen(
                http.clone(),
                url.clone(),
                index,
                payload.clone(),
            )));
        }
        // Every watcher parked before the event goes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let from = &urls[round % urls.len()];
        let fired = Instant::now();
        let (status, body) = send(
            http,
            "PUT",
            &format!("{from}/v1/event/fire/bench"),
            payload_text.into_bytes(),
        )
        .await?;
        if status != 200 {
            bail!(
                "firing an event: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        for w in watchers {
            match w.await.context("a watcher task")? {
                Ok(at) => delays.push(at.saturating_duration_since(fired)),
                Err(e) => {
                    missed += 1;
                    eprintln!("    {e:#}");
                }
            }
        }
    }
    delays.sort();
    let p99 = percentile(&delays, 99.0);
    let expected = EVENTS * urls.len();
    let rows = vec![Row::new(
        format!("event fan-out to {} agents: p99", urls.len()),
        format!(
            "{} (p50 {}, max {}; {} of {expected} delivered)",
            ms(p99),
            ms(percentile(&delays, 50.0)),
            ms(delays.last().copied().unwrap_or_default()),
            delays.len()
        ),
        "< 1 s, all delivered",
        Verdict::check(p99 < Duration::from_secs(1) && missed == 0),
    )];
    rows.iter().for_each(announce);
    Ok(rows)
}

/// Each agent's gossip counters (`weft.gossip.*_total` gauges of `/v1/agent/metrics`): (coordinate bytes sent,
/// all bytes sent).
async fn gossip_sent(http: &Http, url: &str) -> Result<(f64, f64)> {
    let (_, body) = send(http, "GET", &format!("{url}/v1/agent/metrics"), vec![]).await?;
    let metrics: serde_json::Value = serde_json::from_slice(&body)?;
    let gauge = |name: &str| {
        metrics["Gauges"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["Name"] == name)
            .and_then(|g| g["Value"].as_f64())
            .ok_or_else(|| anyhow!("{url}: no gauge {name}"))
    };
    Ok((
        gauge("weft.gossip.coordinate_sent_bytes_total")?,
        gauge("weft.gossip.sent_bytes_total")?,
    ))
}

async fn coordinate_traffic(http: &Http, urls: &[String]) -> Result<Vec<Row>> {
    let mut before = Vec::new();
    for url in urls {
        before.push(gossip_sent(http, url).await?);
    }
    let started = Instant::now();
    tokio::time::sleep(TRAFFIC_WINDOW).await;
    let mut coordinate = Vec::new();
    let mut all = Vec::new();
    for (url, (c0, a0)) in urls.iter().zip(before) {
        let (c1, a1) = gossip_sent(http, url).await?;
        let secs = started.elapsed().as_secs_f64();
        coordinate.push((c1 - c0) / secs);
        all.push((a1 - a0) / secs);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rows = vec![
        Row::new(
            "coordinate traffic per agent (max)",
            format!(
                "{:.0} B/s (mean {:.0} B/s, pings sent and pongs answered)",
                max(&coordinate),
                mean(&coordinate)
            ),
            "< 1 KB/s",
            Verdict::check(max(&coordinate) < 1024.0),
        ),
        Row::info(
            "all gossip sent per agent (mean)",
            format!("{:.0} B/s (max {:.0} B/s)", mean(&all), max(&all)),
        ),
    ];
    rows.iter().for_each(announce);
    Ok(rows)
}

async fn metrics_latency(http: &Http, url: &str, what: &str) -> Result<Row> {
    let mut took = Vec::with_capacity(METRICS_READS);
    for _ in 0..METRICS_READS {
        let started = Instant::now();
        let (status, _) = send(http, "GET", &format!("{url}/v1/agent/metrics"), vec![]).await?;
        took.push(started.elapsed());
        if status != 200 {
            bail!("/v1/agent/metrics answered {status}");
        }
    }
    took.sort();
    let p99 = percentile(&took, 99.0);
    let row = Row::new(
        format!("/v1/agent/metrics on the {what}: p99"),
        format!("{} (p50 {})", ms(p99), ms(percentile(&took, 50.0))),
        "< 1 ms",
        Verdict::check(p99 < Duration::from_millis(1)),
    );
    announce(&row);
    Ok(row)
}
