//! Scenario `mesh`: Weft's sidecar pair against the physical limit and against the proxies people would otherwise
//! put in the same place. One topology at a time, everything on 127.0.0.1:
//!
//! ```text
//! load generator -> upstream side -> (mutual TLS) -> public side -> backend
//! ```
//!
//! * `direct`: the load generator talks to the backend itself (no proxy: the physical limit);
//! * `weft`: `weft agent -dev`, the backend registered with `Connect.SidecarService` (an explicit free port),
//!   `weft connect proxy -sidecar-for backend` and `weft connect proxy -service loadgen -upstream backend:<port>`,
//!   measured once `/v1/health/connect/backend?passing=1` lists the sidecar;
//! * `nginx`, `haproxy`, `stunnel`: the same pair built from each (see [`peers`]).
//!
//! The backend is one small HTTP/1.1 keep-alive server in this process, the same for every topology. For each
//! topology: the proxies' resident memory once set up (idle, before any request), a sanity request, then
//! keep-alive load (`wrk -t2 -c32 -d10s --latency`, or the built-in generator without wrk), new-connection load
//! (the same with `Connection: close`, so every request pays a full mutual-TLS handshake through the pair), and
//! bulk transfers (a 64 MiB body, 10 times, each on a fresh connection). Memory (VmRSS, per process and summed per
//! side, nginx's master and workers together) is sampled every 100 ms during the loads; CPU time (utime + stime of
//! the proxy processes) is read around each load, and the context switches of their threads are counted during the
//! keep-alive run.
//!
//! The machine may be shared: before each topology the scenario waits (up to a minute) until processes outside the
//! benchmark use less than a tenth of it, and for each load it reports how much of the machine they used meanwhile
//! (a row of the table, and a WARNING from 5% on). `$WEFT_PROXY_BIN` runs the two proxies from another binary (a
//! candidate build); otherwise `weft connect proxy` runs them, which hands over to the weft-sidecar beside weft
//! (`cargo build --release -p weft -p weft-sidecar`) when there is one.
//!
//! Goals printed against: Weft ahead of every measured peer on each figure, and at most 5 MB resident per idle
//! sidecar. A peer that is not installed is SKIPPED with a note (`--install` installs the Debian packages).

mod backend;
mod load;
mod peers;
mod sys;

use crate::process::{self, mb, Agent, Guard, Rss};
use crate::report::{announce, ms, Row, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use load::{Generator, LoadResult, Spec};
use peers::{Kind, Tools};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_testkit::net::free_port;
use weft_testkit::TempDir;

/// At most this much resident memory per idle Weft sidecar.
pub const SIDECAR_TARGET: u64 = 5_000_000;
/// Every topology, in the order they run and are printed.
pub const TOPOLOGIES: [&str; 5] = ["direct", "weft", "nginx", "haproxy", "stunnel"];
const SETTLE: Duration = Duration::from_secs(2);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(40);

pub struct Config {
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub bulk_mib: u64,
    pub bulk_runs: usize,
    pub install: bool,
    pub peer_resumption: bool,
    pub builtin_load: bool,
    pub only: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            duration: Duration::from_secs(10),
            connections: 32,
            threads: 2,
            bulk_mib: 64,
            bulk_runs: 10,
            install: false,
            peer_resumption: true,
            builtin_load: false,
            only: None,
        }
    }
}

impl Config {
    fn wanted(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == name))
    }
}

/// Runs the scenario; returns the verdict rows and the side-by-side table (printed before the final table).
/// Ctrl-C stops it with every process it started.
pub async fn run(bin: &Path, cfg: &Config) -> Result<(Vec<Row>, String)> {
    tokio::select! {
        r = run_inner(bin, cfg) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (every process started was stopped)"),
    }
}

/// Memory of one side (one proxy of the pair; for nginx the master and its workers).
#[derive(Clone, Debug, Default)]
struct SideFig {
    label: &'static str,
    pids: Vec<u32>,
    idle: Vec<Rss>,
    idle_pss: Vec<u64>,
    /// During the keep-alive run.
    load: Sampled,
    /// During any of the three loads.
    peak: Sampled,
    after: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
struct Sampled {
    per_pid_max: Vec<u64>,
    sum_max: u64,
    threads_max: u64,
}

#[derive(Clone, Debug, Default)]
struct Figures {
    keepalive: LoadResult,
    newconn: LoadResult,
    bulk: Vec<f64>,
    sides: Vec<SideFig>,
    cpu_keepalive: Duration,
    cpu_newconn: Duration,
    cpu_bulk: Duration,
    /// Bytes carried by all the bulk transfers together.
    bulk_bytes: u64,
    /// Context switches of the proxies' threads during the keep-alive run.
    csw_keepalive: u64,
    /// CPU used by processes outside the benchmark during each load (keep-alive, new connections, bulk), as a
    /// share of the machine: another user's build would skew the figures.
    interference: [f64; 3],
}

impl Figures {
    fn bulk_median(&self) -> Option<f64> {
        let mut v = self.bulk.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }

    /// Milliseconds of the proxies' CPU per megabyte (10^6 bytes) carried in the bulk transfers.
    fn cpu_per_bulk_mb(&self) -> Option<f64> {
        (!self.sides.is_empty() && self.bulk_bytes > 0)
            .then(|| self.cpu_bulk.as_secs_f64() * 1e3 / (self.bulk_bytes as f64 / 1e6))
    }

    fn idle_sum(&self) -> Option<u64> {
        (!self.sides.is_empty()).then(|| {
            self.sides
                .iter()
                .map(|s| s.idle.iter().map(|r| r.rss).sum::<u64>())
                .sum()
        })
    }

    fn load_sum(&self) -> Option<u64> {
        (!self.sides.is_empty()).then(|| self.sides.iter().map(|s| s.load.sum_max).sum())
    }
}

enum Column {
    Measured(Box<Figures>),
    Skipped(String),
    Failed(String),
}

struct Setup {
    entry: SocketAddr,
    sides: Vec<(&'static str, Vec<u32>)>,
    /// Processes of the topology that are not proxies (Weft's agent): their CPU is not counted as interference.
    others: Vec<u32>,
    path: String,
    config_note: String,
    /// What keeps the topology running (a peer pair, Weft's processes): dropping it stops every process.
    _holder: Option<Box<dyn std::any::Any>>,
}

async fn run_inner(bin: &Path, cfg: &Config) -> Result<(Vec<Row>, String)> {
    let wanted_peers: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| cfg.wanted(k.name()))
        .collect();
    let mut tools = Tools::find();
    let missing = tools.missing_packages(&wanted_peers);
    if !missing.is_empty() {
        if cfg.install {
            println!("    installing {} (--install)", missing.join(" "));
            match peers::install(&missing).await {
                Ok(()) => {
                    tools = Tools::find();
                    println!(
                        "    note: apt may have started the packages' own system services (nginx, haproxy, \
                         stunnel4); this benchmark neither uses nor stops them"
                    );
                }
                Err(e) => println!("    note: installing failed: {e:#}"),
            }
        } else {
            println!(
                "    note: not installed: {} — run with --install to install them \
                 (`apt-get install -y {}`, as root); the peers missing are SKIPPED",
                missing.join(" "),
                missing.join(" ")
            );
        }
    }
    let generator = match (&tools.wrk, cfg.builtin_load) {
        (Some(wrk), false) => Generator::Wrk(wrk.clone()),
        (Some(_), true) => Generator::Builtin,
        (None, _) => {
            println!("    note: wrk not installed: using the built-in load generator");
            Generator::Builtin
        }
    };
    let bulk_bytes = cfg.bulk_mib * 1024 * 1024;
    let backend = backend::start(bulk_bytes).await?;
    let certs_dir = TempDir::new()?;
    let certs = peers::Certs::generate(certs_dir.path())?;
    let spec = |addr: SocketAddr, close: bool| Spec {
        addr,
        connections: cfg.connections,
        threads: cfg.threads,
        duration: cfg.duration,
        close,
    };
    let example = spec(backend.addr, false);
    println!(
        "    backend: hyper HTTP/1.1 on {} ({} byte answer; /bulk {} MiB)",
        backend.addr,
        backend::HELLO.len(),
        cfg.bulk_mib
    );
    println!("    keep-alive load: {}", generator.describe(&example));
    println!(
        "    new-connection load: {}",
        generator.describe(&spec(backend.addr, true))
    );
    println!(
        "    bulk: {} x GET /bulk ({} MiB), each on a fresh connection",
        cfg.bulk_runs, cfg.bulk_mib
    );

    let mut columns: Vec<(&'static str, Column)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for name in TOPOLOGIES {
        if !cfg.wanted(name) {
            continue;
        }
        println!("\n  -- {name}");
        let setup = match name {
            "direct" => Ok(Setup {
                entry: backend.addr,
                sides: Vec::new(),
                others: Vec::new(),
                path: format!("load generator -> backend {}", backend.addr),
                config_note: "no proxy: the physical limit".into(),
                _holder: None,
            }),
            "weft" => start_weft(bin, backend.addr).await,
            peer => {
                let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == peer) else {
                    continue;
                };
                match tools.peer(kind) {
                    Err(why) => {
                        let why = format!("{why} (run with --install)");
                        println!("    SKIPPED: {why}");
                        columns.push((name, Column::Skipped(why)));
                        continue;
                    }
                    Ok(_) => {
                        let spec = peers::PairSpec {
                            certs: &certs,
                            backend: backend.addr,
                            resumption: cfg.peer_resumption,
                        };
                        peers::start_pair(kind, &tools, &spec)
                            .await
                            .map(|pair| Setup {
                                entry: pair.entry,
                                sides: vec![
                                    ("upstream", pair.upstream.pids.clone()),
                                    ("public", pair.public.pids.clone()),
                                ],
                                others: Vec::new(),
                                path: format!(
                                    "load generator -> {name} upstream side {} -> mTLS -> {name} public side -> backend {}",
                                    pair.entry, backend.addr
                                ),
                                config_note: pair.config_note.clone(),
                                _holder: Some(Box::new(pair)),
                            })
                    }
                }
            }
        };
        let column = match setup {
            Err(e) => {
                println!("    ERROR setting up: {e:#}");
                Column::Failed(format!("set-up failed: {e:#}"))
            }
            Ok(setup) => {
                println!("    {}", setup.path);
                println!("    configuration: {}", setup.config_note);
                notes.push(format!("{name}: {}", setup.config_note));
                let measured = measure(&setup, cfg, &generator, &spec, bulk_bytes).await;
                drop(setup);
                match measured {
                    Ok(f) => Column::Measured(Box::new(f)),
                    Err(e) => {
                        println!("    ERROR: {e:#}");
                        Column::Failed(format!("{e:#}"))
                    }
                }
            }
        };
        columns.push((name, column));
        // Let the closed connections of one topology clear before the next starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(backend);
    let table = side_by_side(&columns, cfg, &generator, &example, &notes);
    let rows = verdicts(&columns, cfg);
    Ok((rows, table))
}

/// Sampler: a thread reading VmRSS and thread counts of each side's processes every 100 ms, and the context
/// switches of each of their threads (a thread that starts and ends between two samples, as stunnel's
/// per-connection threads may, is missed: the count is a lower bound for such peers).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<Sampled>, u64)>,
}

impl Sampler {
    fn start(sides: &[(&'static str, Vec<u32>)]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let pids: Vec<Vec<u32>> = sides.iter().map(|(_, p)| p.clone()).collect();
        let flag = stop.clone();
        let all: Vec<u32> = pids.iter().flatten().copied().collect();
        let handle = std::thread::spawn(move || {
            // Per thread: (count when first seen, 0 for threads born since the start; count last seen).
            let mut switches: std::collections::HashMap<u32, (u64, u64)> =
                sys::context_switches(&all)
                    .into_iter()
                    .map(|(tid, n)| (tid, (n, n)))
                    .collect();
            let mut out: Vec<Sampled> = pids
                .iter()
                .map(|p| Sampled {
                    per_pid_max: vec![0; p.len()],
                    ..Sampled::default()
                })
                .collect();
            loop {
                let last = flag.load(Ordering::Relaxed);
                for (side, sampled) in pids.iter().zip(out.iter_mut()) {
                    let (mut sum, mut threads) = (0, 0);
                    for (i, pid) in side.iter().enumerate() {
                        if let Ok(r) = Rss::of(*pid) {
                            sampled.per_pid_max[i] = sampled.per_pid_max[i].max(r.rss);
                            sum += r.rss;
                            threads += r.threads;
                        }
                    }
                    sampled.sum_max = sampled.sum_max.max(sum);
                    sampled.threads_max = sampled.threads_max.max(threads);
                }
                for (tid, n) in sys::context_switches(&all) {
                    switches.entry(tid).or_insert((0, n)).1 = n;
                }
                if last {
                    let total = switches.values().map(|(first, last)| last - first).sum();
                    return (out, total);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Sampler { stop, handle }
    }

    /// Per side, the memory figures; and the context switches of all the threads since the start.
    fn finish(self) -> (Vec<Sampled>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn merge(a: &Sampled, b: &Sampled) -> Sampled {
    Sampled {
        per_pid_max: a
            .per_pid_max
            .iter()
            .zip(&b.per_pid_max)
            .map(|(x, y)| *x.max(y))
            .collect(),
        sum_max: a.sum_max.max(b.sum_max),
        threads_max: a.threads_max.max(b.threads_max),
    }
}

fn describe_load(what: &str, r: &LoadResult, cpu: Option<Duration>, csw: Option<u64>) -> String {
    let mut s = format!("{what}: {:.0} req/s", r.rps);
    if let (Some(p50), Some(p99)) = (r.p50, r.p99) {
        s.push_str(&format!(", p50 {} / p99 {}", ms(p50), ms(p99)));
    }
    s.push_str(&format!(
        ", {} requests in {:.1} s",
        r.requests,
        r.elapsed.as_secs_f64()
    ));
    if let Some(cpu) = cpu {
        s.push_str(&format!(
            "; proxies' CPU {:.2} s = {:.1} us/request",
            cpu.as_secs_f64(),
            per_request_us(cpu, r.requests)
        ));
    }
    if let Some(csw) = csw {
        s.push_str(&format!(
            ", {:.2} context switches/request",
            csw as f64 / r.requests.max(1) as f64
        ));
    }
    if r.errors > 0 {
        s.push_str(&format!("; ERRORS: {}", r.error_note));
    }
    s
}

/// CPU counters taken around a load, to tell how much of the machine other processes used meanwhile.
struct Meter {
    at: Instant,
    machine: Duration,
    known: Duration,
    reaped: Duration,
}

impl Meter {
    fn start(known: &[u32]) -> Meter {
        Meter {
            at: Instant::now(),
            machine: sys::machine_cpu(),
            known: sys::cpu(known),
            reaped: sys::reaped_children_cpu(),
        }
    }

    /// The share of the machine's cores used by processes that are not part of the benchmark since `start`.
    fn other_share(&self, known: &[u32]) -> f64 {
        let machine = sys::machine_cpu().saturating_sub(self.machine);
        let ours = sys::cpu(known).saturating_sub(self.known)
            + sys::reaped_children_cpu().saturating_sub(self.reaped);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        machine.saturating_sub(ours).as_secs_f64()
            / (self.at.elapsed().as_secs_f64() * cores).max(1e-9)
    }
}

/// Waits (up to a minute) until processes outside the benchmark use less than a tenth of the machine.
async fn wait_quiet(known: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = false;
    loop {
        let meter = Meter::start(known);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let other = meter.other_share(known);
        if other < 0.10 {
            return;
        }
        if Instant::now() > deadline {
            println!(
                "    WARNING: other processes keep {:.0}% of the machine busy; measuring anyway",
                other * 100.0
            );
            return;
        }
        if !said {
            println!(
                "    waiting for the machine to be quiet (other processes use {:.0}% of it)",
                other * 100.0
            );
            said = true;
        }
    }
}

fn warn_interference(what: &str, share: f64) {
    if share >= 0.05 {
        println!(
            "    WARNING: during {what}, processes outside the benchmark used {:.0}% of the machine: the figures \
             are skewed (rerun on a quiet machine)",
            share * 100.0
        );
    }
}

fn per_request_us(cpu: Duration, requests: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

async fn measure(
    setup: &Setup,
    cfg: &Config,
    generator: &Generator,
    spec: &dyn Fn(SocketAddr, bool) -> Spec,
    bulk_bytes: u64,
) -> Result<Figures> {
    let all_pids: Vec<u32> = setup
        .sides
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let known: Vec<u32> = all_pids
        .iter()
        .chain(&setup.others)
        .copied()
        .chain([std::process::id()])
        .collect();
    let mut fig = Figures::default();
    // Idle: set up, settled, nothing sent through yet.
    tokio::time::sleep(SETTLE).await;
    wait_quiet(&known).await;
    for (label, pids) in &setup.sides {
        let idle = pids
            .iter()
            .map(|p| Rss::of(*p))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{label} side ended"))?;
        for (pid, r) in pids.iter().zip(&idle) {
            println!(
                "    idle {label} side pid {pid} ({}): {}",
                sys::comm(*pid).unwrap_or_default(),
                r.describe()
            );
        }
        let idle_pss = pids.iter().map(|p| sys::pss(*p).unwrap_or(0)).collect();
        fig.sides.push(SideFig {
            label,
            pids: pids.clone(),
            idle,
            idle_pss,
            ..SideFig::default()
        });
    }
    // Sanity: one request through, answered by the backend (retried briefly: Weft's upstream side learns the
    // healthy instance through a blocking query).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = load::get_once(setup.entry, "/").await;
        match outcome {
            Ok(a) if a.status == 200 && a.body == backend::HELLO => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(a) => bail!(
                "sanity request through {} answered {} {:?}",
                setup.entry,
                a.status,
                String::from_utf8_lossy(&a.body)
            ),
            Err(e) => bail!("sanity request through {} failed: {e:#}", setup.entry),
        }
    }

    // Keep-alive load.
    let sampler = Sampler::start(&setup.sides);
    let meter = Meter::start(&known);
    let cpu0 = sys::cpu(&all_pids);
    let self0 = sys::cpu(&[std::process::id()]);
    fig.keepalive = load::run(generator, &spec(setup.entry, false)).await?;
    fig.cpu_keepalive = sys::cpu(&all_pids).saturating_sub(cpu0);
    fig.interference[0] = meter.other_share(&known);
    let self_cpu = sys::cpu(&[std::process::id()]).saturating_sub(self0);
    let (ka, csw) = sampler.finish();
    fig.csw_keepalive = csw;
    println!(
        "    {}",
        describe_load(
            "keep-alive",
            &fig.keepalive,
            (!all_pids.is_empty()).then_some(fig.cpu_keepalive),
            (!all_pids.is_empty()).then_some(fig.csw_keepalive)
        )
    );
    let who = match generator {
        Generator::Wrk(_) => "the backend",
        Generator::Builtin => "the backend and the built-in load generator",
    };
    println!(
        "      (this process, i.e. {who}: {:.2} s CPU = {:.1} us/request)",
        self_cpu.as_secs_f64(),
        per_request_us(self_cpu, fig.keepalive.requests)
    );
    warn_interference("the keep-alive run", fig.interference[0]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // New connection per request.
    let sampler = Sampler::start(&setup.sides);
    let meter = Meter::start(&known);
    let cpu0 = sys::cpu(&all_pids);
    fig.newconn = load::run(generator, &spec(setup.entry, true)).await?;
    fig.cpu_newconn = sys::cpu(&all_pids).saturating_sub(cpu0);
    fig.interference[1] = meter.other_share(&known);
    let (nc, _) = sampler.finish();
    println!(
        "    {}",
        describe_load(
            "new connections",
            &fig.newconn,
            (!all_pids.is_empty()).then_some(fig.cpu_newconn),
            None
        )
    );
    warn_interference("the new-connection run", fig.interference[1]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Bulk.
    let sampler = Sampler::start(&setup.sides);
    let meter = Meter::start(&known);
    let cpu0 = sys::cpu(&all_pids);
    fig.bulk = load::bulk(setup.entry, bulk_bytes, cfg.bulk_runs).await?;
    fig.cpu_bulk = sys::cpu(&all_pids).saturating_sub(cpu0);
    fig.bulk_bytes = bulk_bytes * fig.bulk.len() as u64;
    fig.interference[2] = meter.other_share(&known);
    let (bulk, _) = sampler.finish();
    println!(
        "    bulk MB/s: {}{}",
        fig.bulk
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        if all_pids.is_empty() {
            String::new()
        } else {
            format!(
                "; proxies' CPU {:.2} s = {:.2} ms per MB",
                fig.cpu_bulk.as_secs_f64(),
                fig.cpu_per_bulk_mb().unwrap_or(0.0)
            )
        }
    );

    warn_interference("the bulk transfers", fig.interference[2]);
    for (i, side) in fig.sides.iter_mut().enumerate() {
        let empty = Sampled::default();
        side.load = ka.get(i).cloned().unwrap_or_default();
        side.peak = merge(
            &merge(&side.load, nc.get(i).unwrap_or(&empty)),
            bulk.get(i).unwrap_or(&empty),
        );
    }
    tokio::time::sleep(SETTLE).await;
    for side in &mut fig.sides {
        side.after = side
            .pids
            .iter()
            .map(|p| Rss::of(*p).map(|r| r.rss).unwrap_or(0))
            .collect();
        println!(
            "    {} side RSS: idle {}, keep-alive max {} ({} threads), peak any load {}, {} s after load {}",
            side.label,
            mb(side.idle.iter().map(|r| r.rss).sum()),
            mb(side.load.sum_max),
            side.load.threads_max,
            mb(side.peak.sum_max),
            SETTLE.as_secs(),
            mb(side.after.iter().sum())
        );
    }
    Ok(fig)
}

/// Weft's topology: the agent, the backend's sidecar and the load generator's proxy.
struct WeftMesh {
    // Fields drop in order: the proxies before the agent.
    _upstream: Guard,
    _public: Guard,
    _agent: Agent,
}

/// Reads a proxy's stdout until `==> Proxy loaded config and ready to serve` (then keeps draining it).
fn ready_line(stdout: std::process::ChildStdout) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("ready to serve") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx
}

async fn start_weft(bin: &Path, backend: SocketAddr) -> Result<Setup> {
    let agent = Agent::start(bin).await?;
    let client = reqwest::Client::new();
    let sidecar_port = free_port()?;
    let upstream_port = free_port()?;
    let registration = serde_json::json!({
        "ID": "backend", "Name": "backend", "Address": "127.0.0.1", "Port": backend.port(),
        "Connect": {"SidecarService": {"Port": sidecar_port}},
    });
    let resp = client
        .put(format!("{}/v1/agent/service/register", agent.url))
        .json(&registration)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!(
            "registering the backend: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    // `$WEFT_PROXY_BIN` runs the proxies instead of the weft binary (to measure a candidate proxy build).
    let proxy_bin = std::env::var_os("WEFT_PROXY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| bin.to_path_buf());
    if proxy_bin != bin {
        println!(
            "    proxies run from WEFT_PROXY_BIN={}",
            proxy_bin.display()
        );
    }
    let mut public_cmd = std::process::Command::new(&proxy_bin);
    public_cmd.args([
        "connect",
        "proxy",
        "-sidecar-for",
        "backend",
        "-http-addr",
        &agent.addr,
    ]);
    let (mut public, out) = process::spawn("weft-sidecar", &mut public_cmd)?;
    let public_ready = ready_line(out);
    let mut upstream_cmd = std::process::Command::new(&proxy_bin);
    upstream_cmd.args([
        "connect",
        "proxy",
        "-service",
        "loadgen",
        "-upstream",
        &format!("backend:{upstream_port}"),
        "-http-addr",
        &agent.addr,
    ]);
    let (mut upstream, out) = process::spawn("weft-upstream", &mut upstream_cmd)?;
    let upstream_ready = ready_line(out);
    // Each waits for its line, or for its stdout to close (the proxy ended).
    let both = async {
        let _ = public_ready.await;
        let _ = upstream_ready.await;
    };
    let timed_out = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .is_err();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ended = public.exit_status().or_else(|| upstream.exit_status());
    if timed_out || ended.is_some() {
        let why = ended.unwrap_or_else(|| "still running".into());
        bail!(
            "the proxies did not become ready (no 'ready to serve' line; {why}); sidecar log:\n{}\nupstream log:\n{}",
            process::stderr_tail(&public),
            process::stderr_tail(&upstream)
        );
    }
    // The sidecar's listening check runs every 10 s: wait until the sidecar is listed as passing.
    let started = Instant::now();
    let url = format!("{}/v1/health/connect/backend?passing=1", agent.url);
    loop {
        let listed = match client.get(&url).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if listed > 0 {
            break;
        }
        if let Some(status) = public.exit_status().or_else(|| upstream.exit_status()) {
            bail!(
                "{status}; sidecar log:\n{}\nupstream log:\n{}",
                process::stderr_tail(&public),
                process::stderr_tail(&upstream)
            );
        }
        if started.elapsed() > HEALTH_TIMEOUT {
            bail!(
                "{url} listed no passing instance within {HEALTH_TIMEOUT:?}; sidecar log:\n{}",
                process::stderr_tail(&public)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "    sidecar passing after {:.1} s (its listening check runs every 10 s)",
        started.elapsed().as_secs_f64()
    );
    if !sys::listening(upstream_port) || !sys::listening(sidecar_port) {
        bail!("the proxies are not listening on 127.0.0.1:{upstream_port} and :{sidecar_port}");
    }
    let agent_rss = agent.rss()?;
    println!(
        "    agent (control plane, not counted below): {}",
        agent_rss.describe()
    );
    let sides = vec![
        ("upstream", vec![upstream.pid()]),
        ("public", vec![public.pid()]),
    ];
    let entry = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    Ok(Setup {
        entry,
        sides,
        others: vec![agent.guard.pid()],
        path: format!(
            "load generator -> weft connect proxy -service loadgen -upstream backend:{upstream_port} -> mTLS -> \
             weft connect proxy -sidecar-for backend (127.0.0.1:{sidecar_port}) -> backend {backend}"
        ),
        config_note: "`weft agent -dev`; `weft connect proxy -sidecar-for backend` and `-service loadgen \
                      -upstream backend:PORT` (run by weft-sidecar, one thread, when it sits beside weft or is \
                      $WEFT_PROXY_BIN; TLS 1.3 only; each connection a stream of a pooled mTLS HTTP/2 tunnel, the intention \
                      checked per stream)"
            .into(),
        _holder: Some(Box::new(WeftMesh {
            _upstream: upstream,
            _public: public,
            _agent: agent,
        })),
    })
}

type Getter = Box<dyn Fn(&Figures) -> Option<f64>>;
type Shower = Box<dyn Fn(&Figures) -> Option<String>>;

/// How one figure is read from a column, shown, and compared.
struct Metric {
    label: String,
    get: Getter,
    show: Shower,
    higher_better: bool,
    /// Ratio rows: to Weft, and (for traffic figures) to direct.
    vs_weft: bool,
    vs_direct: bool,
}

fn mb_parts(values: &[u64]) -> String {
    let total: u64 = values.iter().sum();
    if values.len() <= 1 {
        mb(total)
    } else {
        format!(
            "{} ({})",
            mb(total),
            values
                .iter()
                .map(|v| format!("{:.1}", *v as f64 / 1e6))
                .collect::<Vec<_>>()
                .join("+")
        )
    }
}

fn metrics(cfg: &Config) -> Vec<Metric> {
    let mut m: Vec<Metric> = Vec::new();
    let traffic = |label: &str,
                   get: fn(&Figures) -> Option<f64>,
                   show: fn(f64) -> String,
                   higher_better: bool| Metric {
        label: label.to_string(),
        get: Box::new(get),
        show: Box::new(move |f| get(f).map(show)),
        higher_better,
        vs_weft: true,
        vs_direct: true,
    };
    let rate = |v: f64| format!("{v:.0}");
    let lat = |v: f64| format!("{v:.3} ms");
    m.push(traffic(
        "keep-alive req/s",
        |f| Some(f.keepalive.rps),
        rate,
        true,
    ));
    m.push(traffic(
        "keep-alive latency p50",
        |f| f.keepalive.p50.map(|d| d.as_secs_f64() * 1e3),
        lat,
        false,
    ));
    m.push(traffic(
        "keep-alive latency p99",
        |f| f.keepalive.p99.map(|d| d.as_secs_f64() * 1e3),
        lat,
        false,
    ));
    m.push(traffic(
        "new-connection req/s",
        |f| Some(f.newconn.rps),
        rate,
        true,
    ));
    m.push(traffic(
        &format!(
            "bulk MB/s (median of {} x {} MiB)",
            cfg.bulk_runs, cfg.bulk_mib
        ),
        Figures::bulk_median,
        |v| format!("{v:.0}"),
        true,
    ));
    let cpu = |label: &str, get: fn(&Figures) -> Option<f64>| Metric {
        label: label.to_string(),
        get: Box::new(get),
        show: Box::new(move |f| get(f).map(|v| format!("{v:.1} us"))),
        higher_better: false,
        vs_weft: true,
        vs_direct: false,
    };
    m.push(cpu("proxies' CPU per keep-alive request", |f| {
        (!f.sides.is_empty()).then(|| per_request_us(f.cpu_keepalive, f.keepalive.requests))
    }));
    m.push(cpu("proxies' CPU per new connection", |f| {
        (!f.sides.is_empty()).then(|| per_request_us(f.cpu_newconn, f.newconn.requests))
    }));
    m.push(Metric {
        label: "proxies' CPU per bulk MB".into(),
        get: Box::new(|f| f.cpu_per_bulk_mb()),
        show: Box::new(|f| f.cpu_per_bulk_mb().map(|v| format!("{v:.2} ms"))),
        higher_better: false,
        vs_weft: true,
        vs_direct: false,
    });
    m.push(Metric {
        label: "proxies' context switches per k-a request".into(),
        get: Box::new(|f| {
            (!f.sides.is_empty())
                .then(|| f.csw_keepalive as f64 / f.keepalive.requests.max(1) as f64)
        }),
        show: Box::new(|f| {
            (!f.sides.is_empty()).then(|| {
                format!(
                    "{:.2}",
                    f.csw_keepalive as f64 / f.keepalive.requests.max(1) as f64
                )
            })
        }),
        higher_better: false,
        vs_weft: true,
        vs_direct: false,
    });
    type Pick = fn(&SideFig) -> Vec<u64>;
    let side = |label: &str, index: usize, pick: Pick, ratio: bool| Metric {
        label: label.to_string(),
        get: Box::new(move |f: &Figures| {
            f.sides
                .get(index)
                .map(|s| pick(s).iter().sum::<u64>() as f64)
        }),
        show: Box::new(move |f: &Figures| f.sides.get(index).map(|s| mb_parts(&pick(s)))),
        higher_better: false,
        vs_weft: ratio,
        vs_direct: false,
    };
    let sum = |label: &str, get: fn(&Figures) -> Option<u64>| Metric {
        label: label.to_string(),
        get: Box::new(move |f| get(f).map(|v| v as f64)),
        show: Box::new(move |f| get(f).map(mb)),
        higher_better: false,
        vs_weft: true,
        vs_direct: false,
    };
    let idle: Pick = |s| s.idle.iter().map(|r| r.rss).collect();
    let load: Pick = |s| s.load.per_pid_max.clone();
    m.push(side("RSS idle, upstream side", 0, idle, false));
    m.push(side("RSS idle, public side", 1, idle, false));
    m.push(sum("RSS idle, pair", Figures::idle_sum));
    m.push(sum("  PSS idle, pair (shared pages split)", |f| {
        (!f.sides.is_empty()).then(|| f.sides.iter().flat_map(|s| s.idle_pss.iter()).sum())
    }));
    m.push(side("RSS keep-alive max, upstream side", 0, load, false));
    m.push(side("RSS keep-alive max, public side", 1, load, false));
    m.push(sum("RSS keep-alive max, pair", Figures::load_sum));
    m.push(sum("RSS peak during any load, pair", |f| {
        (!f.sides.is_empty()).then(|| f.sides.iter().map(|s| s.peak.sum_max).sum())
    }));
    m.push(sum("RSS 2 s after load, pair", |f| {
        (!f.sides.is_empty()).then(|| f.sides.iter().map(|s| s.after.iter().sum::<u64>()).sum())
    }));
    m.push(Metric {
        label: "threads, pair: idle / keep-alive max".into(),
        get: Box::new(|_| None),
        show: Box::new(|f| {
            (!f.sides.is_empty()).then(|| {
                let idle: u64 = f
                    .sides
                    .iter()
                    .flat_map(|s| s.idle.iter().map(|r| r.threads))
                    .sum();
                let load: u64 = f.sides.iter().map(|s| s.load.threads_max).sum();
                format!("{idle} / {load}")
            })
        }),
        higher_better: false,
        vs_weft: false,
        vs_direct: false,
    });
    m.push(Metric {
        label: "other processes' CPU: k-a / new / bulk".into(),
        get: Box::new(|_| None),
        show: Box::new(|f| {
            Some(
                f.interference
                    .iter()
                    .map(|s| format!("{:.0}%", s * 100.0))
                    .collect::<Vec<_>>()
                    .join(" / "),
            )
        }),
        higher_better: false,
        vs_weft: false,
        vs_direct: false,
    });
    m.push(Metric {
        label: "errors: keep-alive / new conn.".into(),
        get: Box::new(|_| None),
        show: Box::new(|f| Some(format!("{} / {}", f.keepalive.errors, f.newconn.errors))),
        higher_better: false,
        vs_weft: false,
        vs_direct: false,
    });
    m
}

fn find_measured<'a>(columns: &'a [(&'static str, Column)], name: &str) -> Option<&'a Figures> {
    columns.iter().find_map(|(n, c)| match c {
        Column::Measured(f) if *n == name => Some(f.as_ref()),
        _ => None,
    })
}

fn side_by_side(
    columns: &[(&'static str, Column)],
    cfg: &Config,
    generator: &Generator,
    example: &Spec,
    notes: &[String],
) -> String {
    let weft = find_measured(columns, "weft");
    let direct = find_measured(columns, "direct");
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    let header: Vec<String> = columns.iter().map(|(n, _)| n.to_string()).collect();
    let status: Vec<String> = columns
        .iter()
        .map(|(_, c)| match c {
            Column::Measured(_) => "measured".into(),
            Column::Skipped(_) => "SKIPPED".into(),
            Column::Failed(_) => "ERROR".into(),
        })
        .collect();
    lines.push(("status".into(), status));
    for metric in metrics(cfg) {
        let cells = columns
            .iter()
            .map(|(_, c)| match c {
                Column::Measured(f) => (metric.show)(f).unwrap_or_else(|| "-".into()),
                _ => String::new(),
            })
            .collect();
        lines.push((metric.label.clone(), cells));
        let ratio_row = |label: &str, base: Option<&Figures>| {
            let base = base.and_then(|b| (metric.get)(b)).filter(|b| *b > 0.0)?;
            let cells = columns
                .iter()
                .map(|(_, c)| match c {
                    Column::Measured(f) => (metric.get)(f)
                        .map(|v| format!("{:.2}x", v / base))
                        .unwrap_or_else(|| "-".into()),
                    _ => String::new(),
                })
                .collect();
            Some((format!("  ratio to {label}"), cells))
        };
        if metric.vs_weft {
            lines.extend(ratio_row("weft", weft));
        }
        if metric.vs_direct {
            lines.extend(ratio_row("direct", direct));
        }
    }
    let w0 = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(6);
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            lines
                .iter()
                .map(|(_, c)| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(8)
        })
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "\nmesh: load generator -> upstream side -> mTLS -> public side -> backend, all on 127.0.0.1\n\
         load: {}; new connections: same with `Connection: close`; bulk: {} x {} MiB\n\
         ratio = this column / the reference column (req/s and MB/s: higher is better; latency, CPU and RSS: \
         lower is better)\n\n",
        generator.describe(example),
        cfg.bulk_runs,
        cfg.bulk_mib
    ));
    let row = |label: &str, cells: &[String]| {
        let mut s = format!("{label:<w0$}");
        for (cell, w) in cells.iter().zip(&widths) {
            s.push_str(&format!(" | {cell:>w$}"));
        }
        s.push('\n');
        s
    };
    out.push_str(&row("figure", &header));
    let rule = format!(
        "{}-+-{}",
        "-".repeat(w0),
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    out.push_str(&rule);
    out.push('\n');
    for (label, cells) in &lines {
        out.push_str(&row(label, cells));
    }
    out.push_str(&rule);
    out.push('\n');
    for note in notes {
        out.push_str(&format!("  {note}\n"));
    }
    for (name, c) in columns {
        match c {
            Column::Skipped(why) => out.push_str(&format!("  {name}: SKIPPED: {why}\n")),
            Column::Failed(why) => out.push_str(&format!(
                "  {name}: ERROR: {}\n",
                why.lines().next().unwrap_or("")
            )),
            Column::Measured(_) => {}
        }
    }
    out
}

fn verdicts(columns: &[(&'static str, Column)], cfg: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    let peers: Vec<(&str, &Figures)> = columns
        .iter()
        .filter(|(n, _)| *n != "weft" && *n != "direct")
        .filter_map(|(n, c)| match c {
            Column::Measured(f) => Some((*n, f.as_ref())),
            _ => None,
        })
        .collect();
    let weft = match columns.iter().find(|(n, _)| *n == "weft") {
        Some((_, Column::Measured(f))) => Some(f.as_ref()),
        Some((_, Column::Failed(e))) => {
            let first: String = e.lines().next().unwrap_or("").chars().take(100).collect();
            rows.push(Row::new(
                "mesh: weft",
                format!("failed: {first}"),
                "-",
                Verdict::Error,
            ));
            None
        }
        _ => None,
    };
    if let Some(w) = weft {
        for metric in metrics(cfg) {
            let wanted = [
                "keep-alive req/s",
                "keep-alive latency p50",
                "keep-alive latency p99",
                "new-connection req/s",
                "bulk MB/s",
                "RSS idle, pair",
                "RSS keep-alive max, pair",
            ];
            if !wanted.iter().any(|p| metric.label.starts_with(p)) {
                continue;
            }
            let Some(wv) = (metric.get)(w) else { continue };
            let show = |f: &Figures| (metric.show)(f).unwrap_or_default();
            let short = metric.label.split(" (").next().unwrap_or(&metric.label);
            let figure = format!("mesh: weft vs peers, {short}");
            let target = if metric.higher_better {
                "weft >= every peer"
            } else {
                "weft <= every peer"
            };
            let best = peers
                .iter()
                .filter_map(|(n, f)| (metric.get)(f).map(|v| (*n, *f, v)))
                .reduce(|a, b| {
                    let b_better = if metric.higher_better {
                        b.2 > a.2
                    } else {
                        b.2 < a.2
                    };
                    if b_better {
                        b
                    } else {
                        a
                    }
                });
            let row = match best {
                None => Row::new(figure, "no peer measured", target, Verdict::Skipped),
                Some((name, f, v)) => {
                    let ok = if metric.higher_better {
                        wv >= v
                    } else {
                        wv <= v
                    };
                    let ratio = if v > 0.0 { wv / v } else { 0.0 };
                    // Run-to-run spread on a shared 2-core machine is about this much.
                    let close = if (ratio - 1.0).abs() < 0.05 {
                        ", within 5%"
                    } else {
                        ""
                    };
                    Row::new(
                        figure,
                        format!(
                            "weft {} vs {name} {} ({ratio:.2}x{close})",
                            show(w),
                            show(f)
                        ),
                        target,
                        Verdict::check(ok),
                    )
                }
            };
            rows.push(row);
        }
        let idle_max = w
            .sides
            .iter()
            .map(|s| s.idle.iter().map(|r| r.rss).sum::<u64>())
            .max()
            .unwrap_or(0);
        rows.push(Row::new(
            "mesh: weft RSS per idle sidecar (larger of 2)",
            mb(idle_max),
            format!("<= {}", mb(SIDECAR_TARGET)),
            Verdict::check(idle_max <= SIDECAR_TARGET),
        ));
        if let Some(d) = find_measured(columns, "direct") {
            rows.push(Row::info(
                "mesh: weft / direct, keep-alive | new conn. | bulk",
                format!(
                    "{:.2}x | {:.2}x | {:.2}x",
                    w.keepalive.rps / d.keepalive.rps.max(1e-9),
                    w.newconn.rps / d.newconn.rps.max(1e-9),
                    w.bulk_median().unwrap_or(0.0) / d.bulk_median().unwrap_or(0.0).max(1e-9)
                ),
            ));
        }
        if w.keepalive.errors + w.newconn.errors > 0 {
            rows.push(Row::new(
                "mesh: weft errors under load",
                format!("{} {}", w.keepalive.error_note, w.newconn.error_note),
                "0",
                Verdict::Miss,
            ));
        }
    }
    for (name, c) in columns {
        match c {
            Column::Skipped(why) => rows.push(Row::new(
                format!("mesh: {name}"),
                why.clone(),
                "- (peer)",
                Verdict::Skipped,
            )),
            Column::Failed(why) if *name != "weft" => {
                let first: String = why.lines().next().unwrap_or("").chars().take(100).collect();
                rows.push(Row::new(
                    format!("mesh: {name}"),
                    format!("failed: {first}"),
                    "- (peer)",
                    Verdict::Error,
                ));
            }
            _ => {}
        }
    }
    rows.iter().for_each(announce);
    rows
}

/// Parses `--only a,b,c` against the known topologies.
pub fn parse_only(value: &str) -> Result<Vec<String>> {
    let list: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for name in &list {
        if !TOPOLOGIES.contains(&name.as_str()) {
            return Err(anyhow!(
                "unknown topology {name:?} (known: {})",
                TOPOLOGIES.join(", ")
            ));
        }
    }
    if list.is_empty() {
        bail!("needs at least one topology");
    }
    Ok(list)
}
