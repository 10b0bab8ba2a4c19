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
//! ```
//!
//! The `weft` binary is `$WEFT_BIN`, else `release/weft` in the benchmark's own target directory. Every process
//! started is killed when its scenario ends, also on error. The exit code is 0 when every scenario ran (whatever
//! the verdicts), 1 when one failed to run (or a peer of `mesh` failed), 2 on bad usage.

mod blocking;
mod catalog;
mod cluster;
mod memory;
mod mesh;
mod process;
mod report;
mod startup;

use anyhow::{bail, Context, Result};
use report::{print_table, Row, Verdict};
use std::path::Path;

const USAGE: &str = "\
usage: weft-bench <scenario> [options]

scenarios:
  all         dev-agent, then mesh
  dev-agent   the four below, one after another
  memory      1. idle resident memory of `weft agent -dev` (target <= 15 MB)
  startup     2. spawn -> /v1/status/leader answered (target <= 100 ms)
  catalog     3. 10k services x 2 instances, then catalog/health reads (target p99 <= 2 ms)
  blocking    4. 1,000 blocking queries woken by one write (target all within 50 ms)
  cluster     three Weft servers against a three-member etcd (KV writes at 1/16/64 clients), failover time,
              propagation between client agents, client agent memory, a server holding 10k x 5 instances
  mesh        sidecar pair (wrk -> upstream proxy -> mTLS -> public proxy -> backend) against no proxy,
              nginx stream, HAProxy and stunnel pairs: req/s, latency, new connections, bulk MB/s, RSS

options:
  --runs N       start-up runs (default 20)
  --services N   services registered by `catalog` (default 10000)
  --reads N      reads measured by `catalog` (default 20000)
  --readers N    concurrent reading clients in `catalog` (default 4)
  --writers N    registrations in flight in `catalog` (default 32)
  --watchers N   blocking queries in `blocking` (default 1000)
  --close        `blocking` queries send `Connection: close` (default: kept alive, as Consul's clients do)

mesh options:
  --duration S        seconds of each keep-alive and new-connection run (default 10)
  --connections N     concurrent connections of the load generator (default 32)
  --threads N         wrk threads (default 2)
  --bulk-mib N        size of the bulk body in MiB (default 64)
  --bulk-runs N       bulk transfers per topology (default 10)
  --only LIST         topologies to run, comma-separated: direct,weft,nginx,haproxy,stunnel (default all)
  --install           apt-get install what is missing (nginx-light libnginx-mod-stream haproxy stunnel4 wrk)
  --peer-resumption   leave the peers' TLS session resumption on (default off everywhere, as in Weft)
  --builtin-load      use the built-in load generator even when wrk is installed

The weft binary is $WEFT_BIN, else target/release/weft (build it with `cargo build --release -p weft`); `mesh`
runs its two `connect proxy` processes from $WEFT_PROXY_BIN when set (a candidate proxy build).";

struct Options {
    scenario: String,
    runs: usize,
    catalog: catalog::Config,
    watchers: usize,
    close: bool,
    mesh: mesh::Config,
}

fn parse_args() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let Some(scenario) = args.next() else {
        bail!("no scenario given");
    };
    let mut opts = Options {
        scenario,
        runs: 20,
        catalog: catalog::Config::default(),
        watchers: 1000,
        close: false,
        mesh: mesh::Config::default(),
    };
    while let Some(flag) = args.next() {
        // Switches take no value.
        let switch = match flag.as_str() {
            "--close" => Some(&mut opts.close),
            "--install" => Some(&mut opts.mesh.install),
            "--peer-resumption" => Some(&mut opts.mesh.peer_resumption),
            "--builtin-load" => Some(&mut opts.mesh.builtin_load),
            _ => None,
        };
        if let Some(on) = switch {
            *on = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        if flag == "--only" {
            opts.mesh.only = Some(mesh::parse_only(&value)?);
            continue;
        }
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag}: {value:?} is not a number"))?;
        if n == 0 {
            bail!("{flag} must be at least 1");
        }
        match flag.as_str() {
            "--runs" => opts.runs = n,
            "--services" => opts.catalog.services = n,
            "--reads" => opts.catalog.reads = n,
            "--readers" => opts.catalog.readers = n,
            "--writers" => opts.catalog.writers = n,
            "--watchers" => opts.watchers = n,
            "--duration" => opts.mesh.duration = std::time::Duration::from_secs(n as u64),
            "--connections" => opts.mesh.connections = n,
            "--threads" => opts.mesh.threads = n,
            "--bulk-mib" => opts.mesh.bulk_mib = n as u64,
            "--bulk-runs" => opts.mesh.bulk_runs = n,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(opts)
}

#[tokio::main]
async fn main() {
    // reqwest may be built with rustls and no provider (see Cargo.toml); plain-HTTP clients still need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = match parse_args() {
        Ok(o)
            if [
                "all",
                "dev-agent",
                "memory",
                "startup",
                "catalog",
                "blocking",
                "mesh",
                "cluster",
            ]
            .contains(&o.scenario.as_str()) =>
        {
            o
        }
        Ok(o) => {
            eprintln!("unknown scenario {:?}\n\n{USAGE}", o.scenario);
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("{e:#}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let bin = match process::weft_bin() {
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
    let all = opts.scenario == "dev-agent" || opts.scenario == "all";
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
    if all || opts.scenario == "memory" {
        println!("\n== 1. idle memory");
        record("memory", memory::run(bin).await);
    }
    if all || opts.scenario == "startup" {
        println!("\n== 2. spawn to leader ({} runs)", opts.runs);
        record("startup", startup::run(bin, opts.runs).await);
    }
    if all || opts.scenario == "catalog" {
        let c = &opts.catalog;
        println!(
            "\n== 3. {} services x 2 instances, {} reads by {} clients",
            c.services, c.reads, c.readers
        );
        record("catalog", catalog::run(bin, c).await);
    }
    if all || opts.scenario == "blocking" {
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
    if opts.scenario == "mesh" || opts.scenario == "all" {
        println!("\n== mesh: sidecar pair against no proxy and nginx / HAProxy / stunnel pairs");
        let result = mesh::run(bin, &opts.mesh).await.map(|(r, table)| {
            tables.push(table);
            r
        });
        record("mesh", result);
    }
    if opts.scenario == "cluster" {
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
    for table in &tables {
        print!("{table}");
    }
    print_table(&rows);
    failed || rows.iter().any(|r| r.verdict == Verdict::Error)
}
