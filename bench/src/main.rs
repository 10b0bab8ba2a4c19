//! `weft-bench`: benchmarks that start real `weft` processes and print each figure next to its target with
//! PASS/MISS. A program run by hand, not a test:
//!
//! ```text
//! cargo build --release -p weft -p weft-bench
//! target/release/weft-bench dev-agent          # the four dev-agent scenarios
//! target/release/weft-bench memory|startup|catalog|blocking
//! target/release/weft-bench mesh [--install]   # sidecar pair vs no proxy, nginx, HAProxy, stunnel
//! target/release/weft-bench all                # dev-agent, then mesh
//! target/release/weft-bench cluster [--install] # 3 servers vs 3-member etcd, failover, propagation, memory
//! target/release/weft-bench dns [--install]     # DNS against dnsmasq with dnsperf: q/s, p99, idle memory
//! target/release/weft-bench acl                 # ACLs on (cached token) vs off: reads, writes, leaves; 10k tokens
//! target/release/weft-bench surface             # 50 agents: event fan-out, coordinate traffic, /v1/agent/metrics
//! target/release/weft-bench dev-agent --baseline OLD/weft   # also run an earlier build: both side by side
//! target/release/weft-bench blocking --baseline OLD/weft --rounds 8   # taking turns at going first; median ratios
//! ```
//!
//! The `weft` binary is `$WEFT_BIN`, else `release/weft` in the benchmark's own target directory. Every process
//! started is killed when its scenario ends, also on error. The exit code is 0 when every scenario ran (whatever
//! the verdicts), 1 when one failed to run (or a peer of `mesh` failed), 2 on bad usage.

mod acl;
mod blocking;
mod catalog;
mod cluster;
mod dns;
mod memory;
mod mesh;
mod process;
mod report;
mod startup;
mod surface;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use report::{print_table, Row, Verdict};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use weft_testkit::Profile;

/// Benchmarks that start real `weft` processes and print each figure next to its target with PASS/MISS.
#[derive(Parser, Debug)]
#[command(
    name = "weft-bench",
    // A flag given twice takes its last value, as it did before clap.
    args_override_self = true,
    after_help = "The weft binary is $WEFT_BIN, else target/release/weft (build it with `cargo build --release -p \
                  weft`); `mesh` runs its two `connect proxy` processes from $WEFT_PROXY_BIN when set (a candidate \
                  proxy build)."
)]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Start-up runs.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = 20)]
    runs: usize,
    /// Services registered by `catalog`.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>,
          default_value_t = catalog::Config::default().services)]
    services: usize,
    /// Reads measured by `catalog`.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>,
          default_value_t = catalog::Config::default().reads)]
    reads: usize,
    /// Concurrent reading clients in `catalog`.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>,
          default_value_t = catalog::Config::default().readers)]
    readers: usize,
    /// Registrations in flight in `catalog`.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>,
          default_value_t = catalog::Config::default().writers)]
    writers: usize,
    /// Blocking queries in `blocking`.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = 1000)]
    watchers: usize,
    /// `blocking` queries send `Connection: close` (default: kept alive, as Consul's clients do).
    #[arg(long)]
    close: bool,
    /// Seconds of each keep-alive and new-connection run.
    #[arg(long, value_name = "S", value_parser = at_least_one::<u64>, help_heading = "Mesh options",
          default_value_t = mesh::Config::default().duration.as_secs())]
    duration: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, help_heading = "Mesh options",
          default_value_t = mesh::Config::default().connections)]
    connections: usize,
    /// wrk threads.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, help_heading = "Mesh options",
          default_value_t = mesh::Config::default().threads)]
    threads: usize,
    /// Size of the bulk body in MiB.
    #[arg(long = "bulk-mib", value_name = "N", value_parser = at_least_one::<u64>, help_heading = "Mesh options",
          default_value_t = mesh::Config::default().bulk_mib)]
    bulk_mib: u64,
    /// Bulk transfers per topology.
    #[arg(long = "bulk-runs", value_name = "N", value_parser = at_least_one::<usize>, help_heading = "Mesh options",
          default_value_t = mesh::Config::default().bulk_runs)]
    bulk_runs: usize,
    /// Topologies to run, comma-separated: direct,weft,nginx,haproxy,stunnel (default all).
    // `::std::vec::Vec`, not `Vec`: clap would otherwise collect one item per `--only` instead of taking the
    // parsed list as the value.
    #[arg(long, value_name = "LIST", value_parser = mesh::parse_only, help_heading = "Mesh options")]
    only: Option<::std::vec::Vec<String>>,
    /// apt-get install what is missing (nginx-light libnginx-mod-stream haproxy stunnel4 wrk; etcd-server for
    /// `cluster`).
    #[arg(long, help_heading = "Mesh options")]
    install: bool,
    /// Turn the peers' TLS session resumption off (default on everywhere, as in Weft).
    #[arg(long = "no-peer-resumption", help_heading = "Mesh options")]
    no_peer_resumption: bool,
    /// Also run the chosen scenarios with this earlier `weft` build, and print both builds' figures side by side
    /// with their ratios.
    #[arg(long, value_name = "WEFT_BIN")]
    baseline: Option<std::path::PathBuf>,
    /// With `--baseline`: measure both builds this many times, taking turns at going first (the build measured
    /// first in a pair tends to do worse), and print each figure's ratio per round and their median.
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = 1)]
    rounds: usize,
    /// Use the built-in load generator even when wrk is installed.
    #[arg(long = "builtin-load", help_heading = "Mesh options")]
    builtin_load: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// The four dev-agent scenarios (below), then mesh
    All,
    /// The four below, one after another
    DevAgent,
    /// 1. Idle resident memory of `weft agent -dev` (target <= 15 MB)
    Memory,
    /// 2. Spawn -> /v1/status/leader answered (target <= 100 ms)
    Startup,
    /// 3. 10k services x 2 instances, then catalog/health reads (target p99 <= 2 ms)
    Catalog,
    /// 4. 1,000 blocking queries woken by one write (target all within 50 ms)
    Blocking,
    /// Three Weft servers against a three-member etcd (KV writes at 1/16/64 clients), failover time, propagation
    /// between client agents, client agent memory, a server holding 10k x 5 instances
    Cluster,
    /// DNS with 1,000 services x 3 instances against dnsmasq serving the same names (dnsperf): q/s, p99, memory
    Dns,
    /// ACLs on (a cached token) against off, in one run: API reads and writes, leaf issuance; 1,000 policies and
    /// 10,000 tokens: memory and token resolution p99
    Acl,
    /// 50 agents on loopback: event fan-out p99, coordinate traffic per agent, /v1/agent/metrics latency
    Surface,
    /// Sidecar pair (wrk -> upstream proxy -> mTLS -> public proxy -> backend) against no proxy, nginx stream,
    /// HAProxy and stunnel pairs: req/s, latency, new connections, bulk MB/s, RSS
    Mesh,
}

/// A count or a duration in seconds: a whole number, 1 or more.
fn at_least_one<T: FromStr + PartialOrd + From<u8>>(value: &str) -> Result<T, String> {
    let n: T = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))?;
    if n < T::from(1) {
        return Err("must be at least 1".to_string());
    }
    Ok(n)
}

struct Options {
    scenario: Scenario,
    baseline: Option<std::path::PathBuf>,
    rounds: usize,
    runs: usize,
    catalog: catalog::Config,
    watchers: usize,
    close: bool,
    mesh: mesh::Config,
}

impl From<Args> for Options {
    fn from(a: Args) -> Options {
        Options {
            scenario: a.scenario,
            baseline: a.baseline.clone(),
            rounds: a.rounds,
            runs: a.runs,
            catalog: catalog::Config {
                services: a.services,
                writers: a.writers,
                reads: a.reads,
                readers: a.readers,
            },
            watchers: a.watchers,
            close: a.close,
            mesh: mesh::Config {
                duration: Duration::from_secs(a.duration),
                connections: a.connections,
                threads: a.threads,
                bulk_mib: a.bulk_mib,
                bulk_runs: a.bulk_runs,
                install: a.install,
                peer_resumption: !a.no_peer_resumption,
                builtin_load: a.builtin_load,
                only: a.only,
            },
        }
    }
}

#[tokio::main]
async fn main() {
    // reqwest may be built with rustls and no provider (see Cargo.toml); plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bad usage exits with 2 (clap's code for a usage error).
    let opts = Options::from(Args::parse());
    let bin = match weft_testkit::weft_binary_of(Profile::Release) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    };
    let failed = run(&bin, &opts).await;
    std::process::exit(i32::from(failed));
}

/// Runs the chosen scenarios and prints the table; true if one failed to run.
async fn run(bin: &Path, opts: &Options) -> bool {
    println!("weft binary: {}", bin.display());
    if cfg!(debug_assertions) {
        println!("warning: this benchmark is a debug build; its own overhead inflates the latencies (use --release)");
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "machine: {} cores, load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if let (Some(old), true) = (&opts.baseline, opts.rounds > 1) {
        return rounds(old, bin, opts).await;
    }
    let baseline = match &opts.baseline {
        Some(old) => {
            println!("\n#### baseline build: {}", old.display());
            let measured = measure(old, opts).await;
            println!("\n#### this build: {}", bin.display());
            Some(measured)
        }
        None => None,
    };
    let (rows, tables, failed) = measure(bin, opts).await;
    for table in &tables {
        print!("{table}");
    }
    print_table(&rows);
    if let Some((base_rows, _, _)) = &baseline {
        report::print_comparison(base_rows, &rows);
    }
    failed || rows.iter().any(|r| r.verdict == Verdict::Error)
}

/// `opts.rounds` pairs of measurements of `old` and `bin`, the baseline first in odd rounds and second in even
/// ones; prints every round's comparison, then the median ratio per figure. True if a scenario failed to run.
async fn rounds(old: &Path, bin: &Path, opts: &Options) -> bool {
    let mut pairs = Vec::new();
    let mut failed = false;
    for round in 1..=opts.rounds {
        let baseline_first = round % 2 == 1;
        println!(
            "\n#### round {round} of {}: {} first",
            opts.rounds,
            if baseline_first {
                "baseline"
            } else {
                "this build"
            }
        );
        let (first, second) = if baseline_first {
            (old, bin)
        } else {
            (bin, old)
        };
        let (a, _, fa) = measure(first, opts).await;
        let (b, _, fb) = measure(second, opts).await;
        let (base, this) = if baseline_first { (a, b) } else { (b, a) };
        report::print_comparison(&base, &this);
        failed |= fa || fb;
        pairs.push((base, this));
    }
    report::print_median_ratios(&pairs);
    failed
}

/// Runs the chosen scenarios with `bin`: their rows, the tables some print, and whether one failed to run.
async fn measure(bin: &Path, opts: &Options) -> (Vec<Row>, Vec<String>, bool) {
    let all = matches!(opts.scenario, Scenario::DevAgent | Scenario::All);
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    let mut tables: Vec<String> = Vec::new();
    let mut record = |name: &str, result: Result<Vec<Row>>| match result {
        Ok(r) => rows.extend(r),
        Err(e) => {
            eprintln!("scenario {name} failed: {e:#}");
            let first = format!("{e:#}");
            let first: String = first
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(100)
                .collect();
            rows.push(Row::new(
                name,
                format!("failed: {first}"),
                "-",
                Verdict::Error,
            ));
            failed = true;
        }
    };
    if all || opts.scenario == Scenario::Memory {
        println!("\n== 1. idle memory");
        record("memory", memory::run(bin).await);
    }
    if all || opts.scenario == Scenario::Startup {
        println!("\n== 2. spawn to leader ({} runs)", opts.runs);
        record("startup", startup::run(bin, opts.runs).await);
    }
    if all || opts.scenario == Scenario::Catalog {
        let c = &opts.catalog;
        println!(
            "\n== 3. {} services x 2 instances, {} reads by {} clients",
            c.services, c.reads, c.readers
        );
        record("catalog", catalog::run(bin, c).await);
    }
    if all || opts.scenario == Scenario::Blocking {
        let conn = if opts.close {
            "Connection: close"
        } else {
            "kept-alive connections"
        };
        println!(
            "\n== 4. {} blocking queries ({conn}), one write",
            opts.watchers
        );
        record(
            "blocking",
            blocking::run(bin, opts.watchers, opts.close).await,
        );
    }
    if matches!(opts.scenario, Scenario::Mesh | Scenario::All) {
        println!("\n== mesh: sidecar pair against no proxy and nginx / HAProxy / stunnel pairs");
        let result = mesh::run(bin, &opts.mesh).await.map(|(r, table)| {
            tables.push(table);
            r
        });
        record("mesh", result);
    }
    if opts.scenario == Scenario::Dns {
        println!("\n== dns: 1,000 services x 3 instances, Weft against dnsmasq (dnsperf)");
        let cfg = dns::Config {
            install: opts.mesh.install,
            ..dns::Config::default()
        };
        record("dns", dns::run(bin, &cfg).await);
    }
    if opts.scenario == Scenario::Acl {
        println!("\n== acl: ACLs on against off (API reads and writes, leaves), then 1,000 policies and 10,000 tokens");
        record("acl", acl::run(bin).await);
    }
    if opts.scenario == Scenario::Surface {
        println!("\n== surface: 3 servers + 47 client agents: event fan-out, coordinate traffic, agent metrics");
        record("surface", surface::run(bin).await);
    }
    if opts.scenario == Scenario::Cluster {
        if opts.mesh.install && process::which("etcd").is_none() {
            let _ = std::process::Command::new("apt-get")
                .args(["install", "-y", "etcd-server"])
                .status();
        }
        println!("\n== cluster: three Weft servers against a three-member etcd, failover, propagation, memory");
        record(
            "cluster",
            cluster::run(bin, &cluster::Config::default()).await,
        );
    }
    (rows, tables, failed)
}
