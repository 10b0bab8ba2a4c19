//! ACLs: what enforcement costs, measured against the same build with ACLs off in the same run.
//!
//! Two dev agents run side by side: one with ACLs off, one with `acl { enabled = true default_policy = "deny" }`
//! and a token whose policy allows what the load does (so every request is resolved and checked, and the token is
//! cached after its first use, as a real client's would be). Rounds alternate between the two agents (off, on,
//! off, on, off, on) so that neither always runs on a warmer machine; each figure is the best of its three rounds.
//! Throughput on a 2-core machine that also runs the load generator moves by several percent from round to round,
//! so each agent's CPU time per request (utime + stime from /proc over the round) is printed too: it is what
//! enforcement costs the agent, and it does not depend on how the cores were shared.
//!
//! - API reads: `GET /v1/kv/bench/key` and `GET /v1/health/service/web` (a list, filtered item by item), from
//!   concurrent clients over kept-alive connections for a fixed time. Target: at least 0.95x of ACLs off.
//! - API writes: `PUT /v1/kv/bench/<n>`. Target: at least 0.95x.
//! - Leaf issuance: new leaves for distinct services (`GET /v1/agent/connect/ca/leaf/leaf-<n>`), each signed on
//!   the token's authority. Target: at least 0.9x.
//! - Scale: 1,000 policies and 10,000 tokens held by the ACL agent: its memory growth, and the p99 of a request
//!   whose token is resolved for the first time (compiled from the store) and of the same request once cached.

use crate::process::{mb, Agent};
use crate::report::{announce, ms, Row, Summary, Verdict};
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOT: &str = "5b1e0c9d-8a7f-4e6d-9c5b-4a3f2e1d0c9b";
const CLIENTS: usize = 8;
const ROUND: Duration = Duration::from_secs(4);
const LEAVES: usize = 150;
const POLICIES: usize = 1_000;
const TOKENS: usize = 10_000;
const PROBES: usize = 2_000;

/// One agent under load, with the token its requests carry. Both agents get the same token header, so that both
/// parse the same request bytes and the load generator (on the same two cores) does the same work for each: the
/// ratio is then what enforcement costs, not what sending one more header costs the client. With ACLs off the
/// agent ignores the token, as a Consul client's token is ignored by an agent without ACLs.
struct Target {
    agent: Agent,
    token: Option<String>,
}

impl Target {
    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let req = client.request(method, format!("{}{path}", self.agent.url));
        match &self.token {
            Some(t) => req.header("x-consul-token", t),
            None => req,
        }
    }
}

async fn expect_ok(req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
    let resp = req.send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!("{what}: {status} {}", resp.text().await.unwrap_or_default());
    }
    Ok(resp)
}

/// Requests per second that `CLIENTS` concurrent loops of `one` sustain for [`ROUND`].
async fn throughput<F, Fut>(one: F) -> Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + ROUND;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (one, done) = (one.clone(), done.clone());
        tasks.spawn(async move {
            let mut n = c * 1_000_000;
            while Instant::now() < deadline {
                one(n).await?;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / ROUND.as_secs_f64())
}

async fn start_targets(bin: &Path) -> Result<(Target, Target)> {
    let off = Agent::start_dev(bin, "0", &[]).await?;
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}" }} }}
           default_intention_policy = "allow""#
    );
    let on = Agent::start_dev(bin, "0", &["-hcl", &acl]).await?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .get(format!("{}/v1/acl/token/self", on.url))
            .header("x-consul-token", ROOT)
            .send()
            .await?;
        if r.status().is_success() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the ACL agent did not set ACLs up within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rules = r#"key_prefix "" { policy = "write" }  service_prefix "" { policy = "write" }
                   node_prefix "" { policy = "write" }"#;
    let root = |req: reqwest::RequestBuilder| req.header("x-consul-token", ROOT);
    expect_ok(
        root(client.put(format!("{}/v1/acl/policy", on.url)))
            .json(&json!({"Name": "bench", "Rules": rules})),
        "creating the bench policy",
    )
    .await?;
    let token: serde_json::Value = expect_ok(
        root(client.put(format!("{}/v1/acl/token", on.url)))
            .json(&json!({"Policies": [{"Name": "bench"}]})),
        "creating the bench token",
    )
    .await?
    .json()
    .await?;
    let token = token["SecretID"]
        .as_str()
        .ok_or_else(|| anyhow!("no SecretID in the token answer"))?
        .to_string();
    Ok((
        Target {
            agent: off,
            token: Some(token.clone()),
        },
        Target {
            agent: on,
            token: Some(token),
        },
    ))
}

/// Puts the data the reads find: a key and a service with two instances.
async fn seed(t: &Target, client: &reqwest::Client) -> Result<()> {
    expect_ok(
        t.request(client, reqwest::Method::PUT, "/v1/kv/bench/key")
            .body("value"),
        "seeding a key",
    )
    .await?;
    for n in 1..=2 {
        let body = json!({"Node": format!("bench-node-{n}"), "Address": "10.0.0.1",
                          "Service": {"Service": "web", "ID": "web", "Port": 80}});
        expect_ok(
            t.request(client, reqwest::Method::PUT, "/v1/catalog/register")
                .json(&body),
            "registering web",
        )
        .await?;
    }
    Ok(())
}

/// A process's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 on: utime is field 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: no field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// For off and on: the best throughput of three rounds, and the least agent CPU time per request (clock ticks),
/// alternating off, on, off, on, off, on.
async fn compare<F, Fut>(
    off: &Arc<Target>,
    on: &Arc<Target>,
    load: F,
) -> Result<([f64; 2], [f64; 2])>
where
    F: Fn(Arc<Target>, reqwest::Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut best = [0f64; 2];
    let mut cpu = [f64::MAX; 2];
    for _ in 0..3 {
        for (i, target) in [off, on].into_iter().enumerate() {
            let client = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(CLIENTS * 2)
                .build()?;
            let pid = target.agent.guard.pid();
            let ticks = cpu_ticks(pid)?;
            let (t, l) = (target.clone(), load.clone());
            let rate = throughput(move |n| l(t.clone(), client.clone(), n)).await?;
            let used = cpu_ticks(pid)?.saturating_sub(ticks) as f64;
            best[i] = best[i].max(rate);
            let requests = rate * ROUND.as_secs_f64();
            if requests > 0.0 {
                cpu[i] = cpu[i].min(used / requests);
            }
        }
    }
    Ok((best, cpu))
}

/// The agent's CPU time per request, ACLs on against off, as a throughput-like ratio (off's cost over on's).
fn cpu_row(figure: &str, cpu: [f64; 2]) -> Row {
    let tick_us = 1e6 / 100.0; // Linux reports /proc times in USER_HZ (100) ticks.
    let (off, on) = (cpu[0] * tick_us, cpu[1] * tick_us);
    let ratio = if on > 0.0 { off / on } else { 0.0 };
    Row::new(
        figure,
        format!("{on:.1} vs {off:.1} us/req (x{ratio:.3})"),
        ">= x0.95".to_string(),
        Verdict::check(ratio >= 0.95),
    )
}

fn ratio_row(figure: &str, off: f64, on: f64, unit: &str, floor: f64) -> Row {
    let ratio = if off > 0.0 { on / off } else { 0.0 };
    Row::new(
        figure,
        format!("{on:.0} vs {off:.0} {unit} (x{ratio:.3})"),
        format!(">= x{floor}"),
        Verdict::check(ratio >= floor),
    )
}

pub async fn run(bin: &Path) -> Result<Vec<Row>> {
    let (off, on) = start_targets(bin).await?;
    let client = reqwest::Client::new();
    seed(&off, &client).await?;
    seed(&on, &client).await?;
    let (off, on) = (Arc::new(off), Arc::new(on));
    let mut rows = Vec::new();

    let ([r_off, r_on], r_cpu) = compare(
        &off,
        &on,
        |t: Arc<Target>, c: reqwest::Client, n: usize| async move {
            let path = if n.is_multiple_of(2) {
                "/v1/kv/bench/key"
            } else {
                "/v1/health/service/web"
            };
            let resp = t.request(&c, reqwest::Method::GET, path).send().await?;
            if !resp.status().is_success() {
                bail!("GET {path}: {}", resp.status());
            }
            resp.bytes().await?;
            Ok(())
        },
    )
    .await?;
    rows.push(ratio_row(
        "API reads, ACLs on vs off",
        r_off,
        r_on,
        "req/s",
        0.95,
    ));
    announce(&rows[rows.len() - 1]);
    rows.push(cpu_row("  agent CPU per read, on vs off", r_cpu));
    announce(&rows[rows.len() - 1]);

    let ([w_off, w_on], w_cpu) = compare(
        &off,
        &on,
        |t: Arc<Target>, c: reqwest::Client, n: usize| async move {
            let path = format!("/v1/kv/bench/w-{}", n % 512);
            let resp = t
                .request(&c, reqwest::Method::PUT, &path)
                .body("v")
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("PUT {path}: {}", resp.status());
            }
            resp.bytes().await?;
            Ok(())
        },
    )
    .await?;
    rows.push(ratio_row(
        "API writes, ACLs on vs off",
        w_off,
        w_on,
        "req/s",
        0.95,
    ));
    announce(&rows[rows.len() - 1]);
    rows.push(cpu_row("  agent CPU per write, on vs off", w_cpu));
    announce(&rows[rows.len() - 1]);

    let mut leaf_rates = [0f64; 2];
    for round in 0..2 {
        for (i, t) in [&off, &on].into_iter().enumerate() {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for c in 0..CLIENTS {
                let (t, client) = (t.clone(), client.clone());
                tasks.spawn(async move {
                    for n in (c..LEAVES).step_by(CLIENTS) {
                        let path = format!("/v1/agent/connect/ca/leaf/leaf-{round}-{n}");
                        expect_ok(t.request(&client, reqwest::Method::GET, &path), "leaf").await?;
                    }
                    Ok::<_, anyhow::Error>(())
                });
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
            let rate = LEAVES as f64 / started.elapsed().as_secs_f64();
            leaf_rates[i] = leaf_rates[i].max(rate);
        }
    }
    rows.push(ratio_row(
        "Leaf issuance, ACLs on vs off",
        leaf_rates[0],
        leaf_rates[1],
        "leaves/s",
        0.9,
    ));
    announce(&rows[rows.len() - 1]);

    rows.extend(scale(&on).await?);
    Ok(rows)
}

/// 1,000 policies and 10,000 tokens: memory, and first and cached resolution.
async fn scale(on: &Target) -> Result<Vec<Row>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS * 2)
        .build()?;
    let before = on.agent.rss()?;
    let url = on.agent.url.clone();
    let (maker, base) = (client.clone(), url.clone());
    let make = move |kind: &'static str, body: serde_json::Value| {
        let (client, url) = (maker.clone(), base.clone());
        async move {
            let resp = expect_ok(
                client
                    .put(format!("{url}/v1/acl/{kind}"))
                    .header("x-consul-token", ROOT)
                    .json(&body),
                kind,
            )
            .await?;
            Ok::<_, anyhow::Error>(resp.json::<serde_json::Value>().await?)
        }
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let make = make.clone();
        tasks.spawn(async move {
            for n in (c..POLICIES).step_by(CLIENTS) {
                let rules = format!(r#"key "bench/k-{n}" {{ policy = "read" }}  service_prefix "svc-{n}" {{ policy = "write" }}"#);
                make("policy", json!({"Name": format!("p-{n}"), "Rules": rules})).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let make = make.clone();
        tasks.spawn(async move {
            let mut secrets = Vec::new();
            for n in (c..TOKENS).step_by(CLIENTS) {
                let t = make(
                    "token",
                    json!({"Policies": [{"Name": format!("p-{}", n % POLICIES)}],
                           "ServiceIdentities": [{"ServiceName": format!("s-{n}")}]}),
                )
                .await?;
                secrets.push(t["SecretID"].as_str().unwrap_or_default().to_string());
            }
            Ok::<_, anyhow::Error>(secrets)
        });
    }
    let mut secrets = Vec::new();
    while let Some(r) = tasks.join_next().await {
        secrets.extend(r??);
    }
    println!(
        "    {POLICIES} policies and {TOKENS} tokens created in {}",
        ms(started.elapsed())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = on.agent.rss()?;
    // First use of each probe token (the server compiles it), then the same tokens again (cached).
    let mut times = [Vec::with_capacity(PROBES), Vec::with_capacity(PROBES)];
    for pass in times.iter_mut() {
        for (n, secret) in secrets
            .iter()
            .step_by(TOKENS / PROBES)
            .enumerate()
            .take(PROBES)
        {
            let t0 = Instant::now();
            let resp = client
                .get(format!("{url}/v1/kv/bench/k-{n}"))
                .header("x-consul-token", secret)
                .send()
                .await?;
            resp.bytes().await?;
            pass.push(t0.elapsed());
        }
    }
    let first = Summary::of(&mut times[0]);
    let cached = Summary::of(&mut times[1]);
    let rows = vec![
        Row::info(
            format!("ACL agent holding {POLICIES} policies, {TOKENS} tokens: RSS"),
            format!(
                "{} (+{} over {})",
                mb(after.rss),
                mb(after.rss.saturating_sub(before.rss)),
                mb(before.rss)
            ),
        ),
        Row::info(
            "  token resolution, first use (compiled), p99",
            format!("{} (p50 {})", ms(first.p99), ms(first.p50)),
        ),
        Row::info(
            "  token resolution, cached, p99",
            format!("{} (p50 {})", ms(cached.p99), ms(cached.p50)),
        ),
    ];
    rows.iter().for_each(announce);
    Ok(rows)
}
