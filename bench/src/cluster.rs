//! `cluster`: a three-server Weft cluster on loopback against a three-member etcd cluster (Debian's etcd-server)
//! started by the same run.
//!
//! 1. KV writes at 1, 16 and 64 concurrent clients, each through one keep-alive HTTP/1.1 connection per client to
//!    the leader (Weft: `PUT /v1/kv/<key>`; etcd: `POST /v3/kv/put` on its JSON gateway): writes/s, p50, p99.
//! 2. Failover: SIGKILL of the Weft leader, then the time to the first acknowledged write through another server.
//! 3. Propagation: a registration on one client agent, seen by a blocking watcher on another client agent.
//! 4. Memory: an idle client agent; a server holding 10,000 services x 5 instances.

use crate::process::{self, spawn, Agent, Guard, Rss};
use crate::report::{announce, percentile, Row, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::{Duration, Instant};
use weft_testkit::net::free_port;

pub(crate) type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub struct Config {
    /// Seconds of writing per concurrency level and system.
    pub seconds: u64,
    pub services: usize,
    pub instances: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seconds: 5,
            services: 10_000,
            instances: 5,
        }
    }
}

pub(crate) struct WeftMember {
    /// None while killed.
    agent: Option<Agent>,
    rpc: String,
    args: Vec<String>,
}

impl WeftMember {
    pub(crate) fn url(&self) -> Result<&str> {
        self.agent
            .as_ref()
            .map(|a| a.url.as_str())
            .ok_or_else(|| anyhow!("member {} is not running", self.rpc))
    }

    fn pid(&self) -> Result<u32> {
        self.agent
            .as_ref()
            .map(|a| a.guard.pid())
            .ok_or_else(|| anyhow!("member {} is not running", self.rpc))
    }
}

/// Removes a directory when dropped (after the processes using it are gone).
pub(crate) struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn http_client() -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http()
}

pub(crate) async fn send(
    http: &Http,
    method: &str,
    url: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes)> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))?;
    let resp = http.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Starts three servers (and `clients` client agents) and waits for a leader.
pub(crate) async fn start_weft(bin: &Path, clients: usize) -> Result<(Vec<WeftMember>, Cleanup)> {
    let dir = process::temp_path("cluster");
    let cleanup = Cleanup(dir.clone());
    let mut serf_ports = Vec::new();
    for _ in 0..3 + clients {
        serf_ports.push(free_udp_port()?);
    }
    let join: Vec<String> = serf_ports[..3]
        .iter()
        .flat_map(|p| ["-retry-join".to_string(), format!("127.0.0.1:{p}")])
        .collect();
    let mut members = Vec::new();
    for (i, serf) in serf_ports.iter().enumerate() {
        let server = i < 3;
        let rpc_port = free_port()?;
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-http-port".into(),
            "0".into(),
            "-dns-port".into(),
            "0".into(),
            "-node".into(),
            format!("bench-{i}"),
            "-bind".into(),
            "127.0.0.1".into(),
            "-server-port".into(),
            rpc_port.to_string(),
            "-serf-lan-port".into(),
            serf.to_string(),
            "-data-dir".into(),
            dir.join(format!("m{i}")).display().to_string(),
        ];
        if server {
            args.extend(["-server".into(), "-bootstrap-expect".into(), "3".into()]);
        }
        args.extend(join.iter().cloned());
        let agent = Agent::start_with(bin, &args).await?;
        members.push(WeftMember {
            agent: Some(agent),
            rpc: format!("127.0.0.1:{rpc_port}"),
            args,
        });
    }
    wait_for_weft_leader(&members).await?;
    Ok((members, cleanup))
}

fn free_udp_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// The index of the member that leads, once every running member names it.
async fn wait_for_weft_leader(members: &[WeftMember]) -> Result<usize> {
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for m in members.iter().filter(|m| m.agent.is_some()) {
            let Ok(url) = m.url() else { continue };
            if let Ok((200, body)) =
                send(&http, "GET", &format!("{url}/v1/status/leader"), vec![]).await
            {
                seen.push(String::from_utf8_lossy(&body).trim_matches('"').to_string());
            }
        }
        if let Some(first) = seen.first() {
            if !first.is_empty() && seen.iter().all(|s| s == first) {
                if let Some(i) = members
                    .iter()
                    .position(|m| &m.rpc == first && m.agent.is_some())
                {
                    return Ok(i);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the Weft cluster elected no leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Etcd {
    _guards: Vec<Guard>,
    clients: Vec<String>,
    _cleanup: Cleanup,
}

async fn start_etcd() -> Result<Etcd> {
    let bin = process::which("etcd")
        .ok_or_else(|| anyhow!("etcd is not installed (apt-get install etcd-server)"))?;
    let dir = process::temp_path("etcd");
    let cleanup = Cleanup(dir.clone());
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_>>()?;
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_>>()?;
    let initial = (0..3)
        .map(|i| format!("e{i}=http://127.0.0.1:{}", peers[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut guards = Vec::new();
    for i in 0..3 {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args([
            "--name".to_string(),
            format!("e{i}"),
            "--data-dir".into(),
            dir.join(format!("e{i}")).display().to_string(),
            "--listen-client-urls".into(),
            format!("http://127.0.0.1:{}", clients[i]),
            "--advertise-client-urls".into(),
            format!("http://127.0.0.1:{}", clients[i]),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{}", peers[i]),
            "--initial-advertise-peer-urls".into(),
            format!("http://127.0.0.1:{}", peers[i]),
            "--initial-cluster".into(),
            initial.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--log-level".into(),
            "error".into(),
        ]);
        let (guard, stdout) = spawn(&format!("etcd-{i}"), &mut cmd)?;
        process::drain(stdout);
        guards.push(guard);
    }
    let urls: Vec<String> = clients
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    // The leader is the member whose status names itself.
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for url in &urls {
            if let Ok((200, body)) = send(
                &http,
                "POST",
                &format!("{url}/v3/maintenance/status"),
                b"{}".to_vec(),
            )
            .await
            {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if v["leader"].is_string() && v["leader"] == v["header"]["member_id"] {
                    let mut ordered = vec![url.clone()];
                    ordered.extend(urls.iter().filter(|u| *u != url).cloned());
                    return Ok(Etcd {
                        _guards: guards,
                        clients: ordered,
                        _cleanup: cleanup,
                    });
                }
            }
        }
        if Instant::now() > deadline {
            bail!("etcd elected no leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Load {
    writes_per_s: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// `clients` tasks, each writing in a loop for `seconds`, one connection each.
async fn write_load<F>(clients: usize, seconds: u64, request: F) -> Load
where
    F: Fn(usize, usize) -> (String, String, Vec<u8>) + Send + Sync + Clone + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let http: Http = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            let mut samples = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let (method, url, body) = request(c, n);
                n += 1;
                let t = Instant::now();
                match send(&http, &method, &url, body).await {
                    Ok((200, _)) => samples.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((s, e)) = t.await {
            all.extend(s);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Load {
        writes_per_s: all.len() as f64 / elapsed,
        p50: percentile(&all, 50.0),
        p99: percentile(&all, 99.0),
        errors,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(bin: &Path, cfg: &Config) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut push = |row: Row| {
        announce(&row);
        rows.push(row);
    };
    let (mut weft, _weft_dir) = start_weft(bin, 2).await?;
    let etcd = start_etcd().await.context("etcd")?;
    let leader = wait_for_weft_leader(&weft).await?;
    let weft_url = weft[leader].url()?.to_string();
    let etcd_url = etcd.clients[0].clone();
    let value = vec![b'x'; 64];

    // 1. KV writes, side by side.
    for clients in [1usize, 16, 64] {
        let url = weft_url.clone();
        let v = value.clone();
        let w = write_load(clients, cfg.seconds, move |c, n| {
            (
                "PUT".into(),
                format!("{url}/v1/kv/bench/{c}/{}", n % 100),
                v.clone(),
            )
        })
        .await;
        let url = etcd_url.clone();
        let v = value.clone();
        let e = write_load(clients, cfg.seconds, move |c, n| {
            let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
            let body = format!(
                "{{\"key\":\"{}\",\"value\":\"{}\"}}",
                encode(format!("bench/{c}/{}", n % 100).as_bytes()),
                encode(&v)
            );
            ("POST".into(), format!("{url}/v3/kv/put"), body.into_bytes())
        })
        .await;
        let ratio = w.writes_per_s / e.writes_per_s.max(0.001);
        push(Row::new(
            format!("KV writes/s, {clients} client(s)"),
            format!(
                "weft {:.0} | etcd {:.0} (x{ratio:.2}; errors {}/{})",
                w.writes_per_s, e.writes_per_s, w.errors, e.errors
            ),
            ">= etcd",
            Verdict::check(w.writes_per_s >= e.writes_per_s),
        ));
        push(Row::new(
            format!("KV write p50/p99, {clients} client(s)"),
            format!(
                "weft {}/{} | etcd {}/{}",
                ms(w.p50),
                ms(w.p99),
                ms(e.p50),
                ms(e.p99)
            ),
            "<= etcd",
            Verdict::check(w.p50 <= e.p50 && w.p99 <= e.p99),
        ));
    }
    drop(etcd);

    // 3. Propagation: register on client agent A, watched on client agent B.
    let (a, b) = (3, 4);
    let http = http_client();
    let mut samples = Vec::new();
    for n in 0..50 {
        let name = format!("prop-{n}");
        let watch_url = format!("{}/v1/catalog/service/{name}", weft[b].url()?);
        let (_, _) = send(&http, "GET", &watch_url, vec![]).await?;
        let index = {
            let req = hyper::Request::get(&watch_url).body(Full::new(Bytes::new()))?;
            let resp = http.request(req).await?;
            resp.headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
        };
        let watcher_http = http.clone();
        let blocking = format!("{watch_url}?index={index}&wait=10s");
        let watcher = tokio::spawn(async move {
            loop {
                match send(&watcher_http, "GET", &blocking, vec![]).await {
                    Ok((200, body)) if body.len() > 2 => return Some(Instant::now()),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        let body = format!("{{\"Name\":\"{name}\",\"Port\":80}}");
        send(
            &http,
            "PUT",
            &format!("{}/v1/agent/service/register", weft[a].url()?),
            body.into_bytes(),
        )
        .await?;
        if let Ok(Some(seen)) = watcher.await {
            samples.push(seen.saturating_duration_since(t));
        }
    }
    samples.sort();
    let p99 = percentile(&samples, 99.0);
    push(Row::new(
        "propagation: register -> watcher on another agent",
        format!(
            "p50 {} p99 {} ({} samples)",
            ms(percentile(&samples, 50.0)),
            ms(p99),
            samples.len()
        ),
        "p99 < 100 ms",
        Verdict::check(p99 < Duration::from_millis(100) && samples.len() == 50),
    ));

    // 4a. An idle client agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = Rss::of(weft[a].pid()?)?;
    push(Row::new(
        "client agent idle RSS",
        rss.describe(),
        "<= 15 MB",
        Verdict::check(rss.rss <= 15_000_000),
    ));

    // 2. Failover, three times.
    let mut failovers = Vec::new();
    for _ in 0..3 {
        let leader = wait_for_weft_leader(&weft).await?;
        let other = (leader + 1) % 3;
        let url = format!("{}/v1/kv/failover", weft[other].url()?);
        let killed_args = weft[leader].args.clone();
        let old = weft[leader].agent.take();
        let t = Instant::now();
        drop(old);
        let fast: Http = Client::builder(TokioExecutor::new()).build_http();
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                send(&fast, "PUT", &url, b"1".to_vec()),
            )
            .await;
            if let Ok(Ok((200, _))) = attempt {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("no write was acknowledged within 30 s of killing the leader");
            }
        }
        failovers.push(t.elapsed());
        weft[leader].agent = Some(Agent::start_with(bin, &killed_args).await?);
        wait_for_weft_leader(&weft).await?;
        // Failover is measured from a settled cluster: the restarted server first catches up (without pre-vote,
        // a server rejoining mid-election can still call one).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    failovers.sort();
    let worst = *failovers.last().unwrap_or(&Duration::ZERO);
    push(Row::new(
        "failover: kill -9 leader -> first acked write",
        failovers
            .iter()
            .map(|d| ms(*d))
            .collect::<Vec<_>>()
            .join(", "),
        "< 1 s",
        Verdict::check(worst < Duration::from_secs(1)),
    ));

    // 4b. A server holding services x instances.
    let leader = wait_for_weft_leader(&weft).await?;
    let url = weft[leader].url()?.to_string();
    let total = cfg.services * cfg.instances;
    let started = Instant::now();
    let per = cfg.instances;
    let load = {
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let counter = counter.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let http: Http = Client::builder(TokioExecutor::new()).build_http();
                loop {
                    let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let (svc, inst) = (i / per, i % per);
                    let body = format!(
                        "{{\"Node\":\"host-{inst}\",\"Address\":\"10.0.{inst}.1\",\"Service\":{{\"ID\":\"svc-{svc}-{inst}\",\"Service\":\"svc-{svc}\",\"Port\":{}}}}}",
                        8000 + inst
                    );
                    let _ = send(&http, "PUT", &format!("{url}/v1/catalog/register"), body.into_bytes()).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        started.elapsed()
    };
    let rss = Rss::of(weft[leader].pid()?)?;
    push(Row::info(
        format!(
            "server RSS with {} services x {} instances",
            cfg.services, cfg.instances
        ),
        format!(
            "{} (registered in {:.1} s, {:.0}/s)",
            rss.describe(),
            load.as_secs_f64(),
            total as f64 / load.as_secs_f64()
        ),
    ));
    Ok(rows)
}
