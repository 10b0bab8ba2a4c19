//! `GET /v1/agent/metrics`: the agent's counters, timings and gauges in Consul's JSON, or with
//! `?format=prometheus` in Prometheus' text format (Weft serves it without `telemetry.prometheus_retention_time`,
//! which Consul requires). Gauges of the state and the process are read when asked.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use weft_server::metrics::Metrics;

/// Reads the gauges that describe the moment: the state's sizes, Raft and leadership, the process.
fn refresh_gauges(ctx: &Ctx, m: &Metrics) {
    let server = ctx.state.agent.server();
    {
        let s = server.read();
        let (mut nodes, mut instances) = (0u64, 0u64);
        let mut names = std::collections::BTreeSet::new();
        for node in s.nodes() {
            nodes += 1;
            for svc in s.node_services(&node.node) {
                instances += 1;
                names.insert(svc.service.clone());
            }
        }
        m.gauge("consul.state.nodes", vec![], nodes as f64);
        m.gauge("consul.state.services", vec![], names.len() as f64);
        m.gauge("consul.state.service_instances", vec![], instances as f64);
        m.gauge("consul.raft.applied_index", vec![], s.last_index() as f64);
        if ctx.state.agent.config().server {
            m.gauge(
                "consul.state.kv_entries",
                vec![],
                s.kv_list("").count() as f64,
            );
        }
    }
    if ctx.state.agent.config().server {
        m.gauge(
            "consul.server.isLeader",
            vec![],
            f64::from(u8::from(server.is_leader())),
        );
        if server.is_leader() {
            let health = server.autopilot_health();
            let healthy = health.iter().all(|h| h.healthy);
            m.gauge(
                "consul.autopilot.healthy",
                vec![],
                f64::from(u8::from(healthy)),
            );
        }
    }
    // Gossip traffic since start, as it goes on the wire (Weft's names: totals, where Consul's memberlist counters
    // count per interval), the coordinate probes apart.
    if let Some(gossip) = server.gossip() {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = gossip.stats();
        for (name, value) in [
            ("weft.gossip.sent_bytes_total", &stats.sent_bytes),
            ("weft.gossip.received_bytes_total", &stats.received_bytes),
            (
                "weft.gossip.coordinate_sent_bytes_total",
                &stats.coordinate_sent_bytes,
            ),
            (
                "weft.gossip.coordinate_received_bytes_total",
                &stats.coordinate_received_bytes,
            ),
        ] {
            m.gauge(name, vec![], value.load(Relaxed) as f64);
        }
    }
    // Go's runtime gauges, by their nearest Rust equivalents: resident memory for sys_bytes, live tasks for
    // goroutines.
    if let Some(rss) = resident_bytes() {
        m.gauge("consul.runtime.sys_bytes", vec![], rss as f64);
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        m.gauge(
            "consul.runtime.num_goroutines",
            vec![],
            rt.metrics().num_alive_tasks() as f64,
        );
    }
}

/// This process's resident memory (`VmRSS`), Linux only.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub async fn metrics(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let m = ctx.state.agent.server().metrics();
    refresh_gauges(&ctx, m);
    match ctx.param("format") {
        None | Some("") => Ok(ctx.json(&m.json())),
        Some("prometheus") => {
            let mut r = Reply::text(StatusCode::OK, m.prometheus());
            r.set("content-type", "text/plain; version=0.0.4; charset=utf-8");
            Ok(r)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid format {other:?}: only \"prometheus\" (or none, for JSON)"
        ))),
    }
}
