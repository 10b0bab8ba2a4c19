//! `GET /v1/agent/self`: how this agent is configured and how it is doing, in Consul's shape. `Config` and
//! `DebugConfig` come from the runtime configuration the agent was built with ([`SelfInfo`]); `Member` is this
//! agent's own gossip identity; `Stats` uses Consul's key names and, as Consul does, string values.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::{json, Map, Value};
use weft_server::{MemberStatus, Mode};
use weft_types::VERSION;

/// What the composition root tells the API about the configuration.
#[derive(Debug, Clone, Default)]
pub struct SelfInfo {
    /// The runtime configuration with secrets replaced by `"hidden"` (Consul's `DebugConfig`).
    pub debug_config: Value,
    pub serf_lan_port: u16,
    pub bootstrap_expect: u32,
    /// Whether gossip is encrypted.
    pub encrypted: bool,
}

/// This agent as a gossip member: its real identity when it gossips, else (dev mode) what it would announce.
pub(crate) fn member(ctx: &Ctx) -> Value {
    if let Some(me) = ctx.state.agent.server().local_member() {
        return with_id(crate::agent::member_json(&me), ctx);
    }
    let cfg = ctx.state.agent.config();
    let info = &ctx.state.self_info;
    with_id(
        json!({
            "Name": cfg.node_name,
            "Addr": cfg.advertise_addr,
            "Port": info.serf_lan_port,
            "Tags": {
                "role": if cfg.server { "consul" } else { "node" },
                "dc": cfg.datacenter,
                "build": format!("{VERSION}:weft"),
                "port": cfg.server_port.to_string(),
                "expect": info.bootstrap_expect.to_string(),
                "vsn": "2", "vsn_min": "2", "vsn_max": "3", "raft_vsn": "3", "segment": "",
            },
            "Status": 1,
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
        }),
        ctx,
    )
}

fn with_id(mut member: Value, ctx: &Ctx) -> Value {
    if let Some(tags) = member.get_mut("Tags").and_then(Value::as_object_mut) {
        tags.insert("id".into(), json!(ctx.state.agent.config().node_id));
        if ctx.state.agent.config().server && ctx.state.self_info.bootstrap_expect == 0 {
            tags.insert("bootstrap".into(), json!("1"));
        }
    }
    member
}

/// `GET /v1/agent/host` (operator:read, as Consul): memory, CPUs, host and kernel, and the data dir's disk.
pub async fn host(ctx: Ctx) -> Result<Reply, ApiError> {
    let dir = ctx.state.agent.config().state_dir.clone();
    let report = tokio::task::spawn_blocking(move || weft_agent::host::report(dir.as_deref()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ctx.json(&report))
}

pub async fn self_(ctx: Ctx) -> Result<Reply, ApiError> {
    let cfg = ctx.state.agent.config();
    let config = weft_types::agent_self::AgentSelfConfig {
        datacenter: cfg.datacenter.clone(),
        primary_datacenter: cfg.datacenter.clone(),
        node_name: cfg.node_name.clone(),
        node_id: cfg.node_id.clone(),
        revision: "weft".into(),
        server: cfg.server,
        version: VERSION.into(),
        build_date: String::new(),
    };
    let body = json!({
        "Config": config,
        "DebugConfig": ctx.state.self_info.debug_config,
        // This agent's LAN coordinate (the origin until its first round trip, and in dev mode).
        "Coord": ctx.state.agent.server().gossip().map(|g| g.coordinate()).unwrap_or_default(),
        "Member": member(&ctx),
        "Stats": stats(&ctx),
        "Meta": {"consul-network-segment": ""},
    });
    Ok(ctx.json(&body))
}

fn stats(ctx: &Ctx) -> Value {
    let agent = &ctx.state.agent;
    let cfg = agent.config();
    let server = agent.server();
    let checks = agent.checks();
    let ttl_checks = checks.iter().filter(|c| c.definition.ttl.is_some()).count();
    // Consul's "monitors" are the checks that run a program.
    let monitors = checks
        .iter()
        .filter(|c| matches!(c.check_type.as_str(), "script" | "docker"))
        .count();
    json!({
        "agent": {
            "services": agent.services().len().to_string(),
            "checks": checks.len().to_string(),
            "check_ttls": ttl_checks.to_string(),
            "check_monitors": monitors.to_string(),
        },
        "build": {"prerelease": "", "revision": "weft", "version": VERSION},
        "consul": consul_stats(ctx),
        "raft": raft_stats(ctx),
        "serf_lan": serf_stats(ctx),
        "limits": limit_stats(ctx),
        "runtime": {
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "version": format!("weft {VERSION}"),
            // Consul counts goroutines; Weft's closest equivalent is the runtime's live tasks.
            "goroutines": tokio::runtime::Handle::current().metrics().num_alive_tasks().to_string(),
            "cpu_count": std::thread::available_parallelism().map_or(1, |n| n.get()).to_string(),
            "max_procs": tokio::runtime::Handle::current().metrics().num_workers().to_string(),
        },
    })
    .as_object()
    .map(|m| {
        let mut m = m.clone();
        if !cfg.server {
            // Consul's client agents have no raft section.
            m.remove("raft");
        }
        if server.members().is_none() {
            m.remove("serf_lan");
        }
        Value::Object(m)
    })
    .unwrap_or_default()
}

/// Weft's own section: connections refused by the per-client limits and RPC handshakes that failed or timed out.
fn limit_stats(ctx: &Ctx) -> Value {
    let http = &ctx.state.http_connections;
    let mut stats = json!({
        "http_conns_open": http.open().to_string(),
        "http_conns_refused": http.refused().to_string(),
    });
    if let (Some(rpc), Some(map)) = (&ctx.state.rpc_connections, stats.as_object_mut()) {
        map.insert("rpc_conns_open".into(), rpc.open().to_string().into());
        map.insert("rpc_conns_refused".into(), rpc.refused().to_string().into());
        map.insert(
            "rpc_handshakes_failed".into(),
            rpc.handshakes_failed().to_string().into(),
        );
    }
    stats
}

fn consul_stats(ctx: &Ctx) -> Value {
    let cfg = ctx.state.agent.config();
    let server = ctx.state.agent.server();
    let leader_addr = server.leader().unwrap_or_default();
    let mut m = Map::new();
    m.insert("server".into(), json!(cfg.server.to_string()));
    if cfg.server {
        m.insert("leader".into(), json!(server.is_leader().to_string()));
        m.insert("leader_addr".into(), json!(leader_addr));
        m.insert(
            "bootstrap".into(),
            json!((ctx.state.self_info.bootstrap_expect == 0).to_string()),
        );
    } else {
        m.insert(
            "known_servers".into(),
            json!(known_servers(ctx).to_string()),
        );
    }
    m.insert("known_datacenters".into(), json!("1"));
    m.insert("acl".into(), json!("disabled"));
    Value::Object(m)
}

fn known_servers(ctx: &Ctx) -> usize {
    match ctx.state.agent.server().mode() {
        Mode::Client(replica) => replica.servers().len(),
        _ => 0,
    }
}

fn raft_stats(ctx: &Ctx) -> Value {
    let server = ctx.state.agent.server();
    match server.raft_stats() {
        Some(stats) => json!(stats),
        // Dev mode: a single in-memory server, leader from the first instant, every write applied at once.
        None => {
            let index = server.read().last_index().to_string();
            json!({
                "state": "Leader", "term": "1", "last_log_index": index, "applied_index": index,
                "commit_index": index, "num_peers": "0", "last_contact": "0", "protocol_version": "3",
            })
        }
    }
}

fn serf_stats(ctx: &Ctx) -> Value {
    let Some(members) = ctx.state.agent.server().members() else {
        return json!({});
    };
    let count = |status: MemberStatus| members.iter().filter(|m| m.status == status).count();
    json!({
        "members": members.len().to_string(),
        "failed": count(MemberStatus::Failed).to_string(),
        "left": count(MemberStatus::Left).to_string(),
        "encrypted": ctx.state.self_info.encrypted.to_string(),
        "health_score": "0",
        "event_queue": "0",
        "query_queue": "0",
        "intent_queue": "0",
        "coordinate_resets": "0",
    })
}
