//! `dns`: Weft's DNS interface against dnsmasq (Debian's `dnsmasq-base`) serving the same names, side by side in
//! one run, measured with dnsperf (Debian). 1,000 services x 3 instances are registered in a dev agent; dnsmasq gets
//! the same A records from a hosts file and the same SRV records from `srv-host` lines. dnsperf then asks each, for
//! the same time with the same clients, `<service>.service.consul A` and `_<service>._tcp.service.consul SRV`
//! for random services: queries per second and the 99th percentile latency (from dnsperf's per-query output).
//! Also the idle memory the DNS server costs the agent (an agent with `-dns-port -1` against one with DNS).
//! Targets: Weft at least 1.0x dnsmasq's queries/s with p99 no worse; under 1 MB of idle memory.

use crate::process::{self, mb, Agent, Guard};
use crate::report::{announce, Row, Verdict};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use weft_testkit::net::free_port;

#[derive(Debug, Clone)]
pub struct Config {
    pub services: usize,
    pub instances: usize,
    /// Seconds of each dnsperf run.
    pub duration: u64,
    /// dnsperf clients (sockets).
    pub clients: usize,
    pub install: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            services: 1000,
            instances: 3,
            duration: 10,
            clients: 4,
            install: false,
        }
    }
}

fn ip(service: usize, instance: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + instance,
        service / 250,
        service % 250 + 1
    )
}

pub async fn run(bin: &Path, cfg: &Config) -> Result<Vec<Row>> {
    if cfg.install && (process::which("dnsperf").is_none() || process::which("dnsmasq").is_none()) {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "dnsperf", "dnsmasq-base"])
            .status();
    }
    let Some(dnsperf) = process::which("dnsperf") else {
        bail!("dnsperf is not installed (apt-get install dnsperf, or --install)");
    };
    let mut rows = vec![memory_cost(bin).await?];
    announce(&rows[0]);

    let port = free_port()?;
    let agent = Agent::start_dev(bin, &port.to_string(), &[]).await?;
    register(&agent, cfg).await?;
    let weft_at = format!("127.0.0.1:{port}");
    let dnsmasq = start_dnsmasq(cfg)?;
    let queries = query_files(cfg)?;
    for (kind, file) in &queries {
        let w = perf(&dnsperf, &weft_at, file, cfg)?;
        let d = match &dnsmasq {
            Some((_, at)) => Some(perf(&dnsperf, at, file, cfg)?),
            None => None,
        };
        println!(
            "    {kind}: weft {:.0} q/s p99 {:.3} ms; dnsmasq {}",
            w.qps,
            w.p99_ms,
            d.as_ref().map_or("not installed".to_string(), |d| format!(
                "{:.0} q/s p99 {:.3} ms",
                d.qps, d.p99_ms
            ))
        );
        let (qps_row, p99_row) = match d {
            Some(d) => (
                Row::new(
                    format!("DNS {kind} q/s, weft vs dnsmasq"),
                    format!("{:.0} vs {:.0} = x{:.2}", w.qps, d.qps, w.qps / d.qps),
                    ">= x1.00",
                    Verdict::check(w.qps >= d.qps),
                ),
                Row::new(
                    format!("DNS {kind} p99, weft vs dnsmasq"),
                    format!("{:.3} vs {:.3} ms", w.p99_ms, d.p99_ms),
                    "weft <= dnsmasq",
                    Verdict::check(w.p99_ms <= d.p99_ms),
                ),
            ),
            None => (
                Row::new(
                    format!("DNS {kind} q/s, weft"),
                    format!("{:.0}", w.qps),
                    "dnsmasq not installed",
                    Verdict::Skipped,
                ),
                Row::info(
                    format!("DNS {kind} p99, weft"),
                    format!("{:.3} ms", w.p99_ms),
                ),
            ),
        };
        announce(&qps_row);
        rows.push(qps_row);
        rows.push(p99_row);
        if w.errors > 0 {
            rows.push(Row::info(
                format!("  weft {kind} queries without an answer"),
                w.errors.to_string(),
            ));
        }
    }
    drop(agent);
    drop(dnsmasq);
    for (_, file) in queries {
        let _ = std::fs::remove_file(file);
    }
    Ok(rows)
}

/// Idle RSS of a dev agent with DNS against one without: what the DNS server costs at rest.
async fn memory_cost(bin: &Path) -> Result<Row> {
    let mut idle = Vec::new();
    for dns in ["-1", "0"] {
        let agent = Agent::start_dev(bin, dns, &[]).await?;
        reqwest::get(format!("{}/v1/status/leader", agent.url))
            .await?
            .text()
            .await?;
        tokio::time::sleep(crate::memory::SETTLE).await;
        idle.push(agent.rss()?.rss);
    }
    let cost = idle[1].saturating_sub(idle[0]);
    println!(
        "    idle RSS without DNS {}, with DNS {}",
        mb(idle[0]),
        mb(idle[1])
    );
    Ok(Row::new(
        "DNS server's idle memory",
        mb(cost),
        "< 1.0 MB",
        Verdict::check(cost < 1_000_000),
    ))
}

/// Registers the services' instances on nodes of their own, 16 registrations in flight.
async fn register(agent: &Agent, cfg: &Config) -> Result<()> {
    let client = reqwest::Client::new();
    let mut pending = Vec::new();
    for s in 0..cfg.services {
        for i in 0..cfg.instances {
            let body = serde_json::json!({
                "Node": format!("node-{i}-{s}"), "Address": ip(s, i),
                "Service": {"ID": format!("svc-{s}-{i}"), "Service": format!("svc-{s}"), "Port": 8000 + i},
            });
            let (client, url) = (client.clone(), format!("{}/v1/catalog/register", agent.url));
            pending.push(tokio::spawn(async move {
                client
                    .put(url)
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok::<_, anyhow::Error>(())
            }));
            if pending.len() >= 16 {
                for p in pending.drain(..) {
                    p.await??;
                }
            }
        }
    }
    for p in pending {
        p.await??;
    }
    Ok(())
}

/// dnsmasq serving the same names, when installed: the guard and its address.
fn start_dnsmasq(cfg: &Config) -> Result<Option<(Guard, String)>> {
    let Some(bin) = process::which("dnsmasq") else {
        return Ok(None);
    };
    let port = free_port()?;
    let hosts = process::temp_path("dnsmasq.hosts");
    let conf = process::temp_path("dnsmasq.conf");
    let mut h = String::new();
    let mut c = format!(
        "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\naddn-hosts={}\n\
         local=/consul/\nuser=root\n",
        hosts.display()
    );
    for s in 0..cfg.services {
        for i in 0..cfg.instances {
            let _ = writeln!(
                h,
                "{} svc-{s}.service.consul node-{i}-{s}.node.dc1.consul",
                ip(s, i)
            );
            let _ = writeln!(
                c,
                "srv-host=_svc-{s}._tcp.service.consul,node-{i}-{s}.node.dc1.consul,{},1,1",
                8000 + i
            );
        }
    }
    std::fs::write(&hosts, h)?;
    std::fs::write(&conf, c)?;
    let (mut guard, stdout) =
        process::spawn("dnsmasq", Command::new(bin).args(["-k", "-C"]).arg(&conf))?;
    process::drain(stdout);
    process::also_remove(&mut guard, hosts);
    process::also_remove(&mut guard, conf);
    let at = format!("127.0.0.1:{port}");
    // Ready once it answers.
    for _ in 0..50 {
        if let Some(status) = guard.exit_status() {
            bail!("{status}: {}", process::stderr_tail(&guard));
        }
        let probe = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+short",
                "+time=1",
                "+tries=1",
            ])
            .arg("svc-0.service.consul")
            .output();
        if probe.is_ok_and(|o| !o.stdout.is_empty()) {
            return Ok(Some((guard, at)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("dnsmasq did not answer: {}", process::stderr_tail(&guard))
}

/// dnsperf's input files: random services' A names, and their RFC 2782 SRV names.
fn query_files(cfg: &Config) -> Result<Vec<(&'static str, std::path::PathBuf)>> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % cfg.services as u64) as usize
    };
    let mut a = String::new();
    let mut srv = String::new();
    for _ in 0..10_000 {
        let _ = writeln!(a, "svc-{}.service.consul A", next());
        let _ = writeln!(srv, "_svc-{}._tcp.service.consul SRV", next());
    }
    let mut files = Vec::new();
    for (kind, text) in [("A", a), ("SRV", srv)] {
        let path = process::temp_path(&format!("queries-{kind}"));
        std::fs::write(&path, text)?;
        files.push((kind, path));
    }
    Ok(files)
}

struct Perf {
    qps: f64,
    p99_ms: f64,
    errors: u64,
}

/// One dnsperf run against `at`; queries per second from its summary, p99 from its per-query lines.
fn perf(dnsperf: &Path, at: &str, file: &Path, cfg: &Config) -> Result<Perf> {
    let (host, port) = at.rsplit_once(':').context("address")?;
    let mut child = Command::new(dnsperf)
        .args(["-s", host, "-p", port, "-l", &cfg.duration.to_string()])
        .args(["-c", &cfg.clients.to_string(), "-q", "100", "-v", "-d"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run dnsperf")?;
    let stdout = child.stdout.take().context("dnsperf stdout")?;
    let mut latencies: Vec<f64> = Vec::new();
    let mut qps = None;
    let mut lost = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Queries per second:") {
            qps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("Queries lost:") {
            lost = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if t.starts_with('>') {
            // `> NOERROR svc-1.service.consul A 0.000123`: the last field is the latency in seconds.
            if let Some(l) = t
                .split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
            {
                latencies.push(l);
            }
        }
    }
    child.wait()?;
    let qps = qps.context("dnsperf printed no queries per second")?;
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Ok(Perf {
        qps,
        p99_ms: p99 * 1e3,
        errors: lost,
    })
}
