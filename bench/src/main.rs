//! `weft-bench`: benchmarks that start real `weft` processes and print each figure next to its target with
//! PASS/MISS. A program run by hand, not a test:
//!
//! ```text
//! cargo build --release -p weft -p weft-bench
//! target/release/weft-bench dev-agent          # all four scenarios
//! target/release/weft-bench memory|startup|catalog|blocking
//! ```
//!
//! The `weft` binary is `$WEFT_BIN`, else `release/weft` in the benchmark's own target directory. Every process
//! started is killed when its scenario ends, also on error. The exit code is 0 when every scenario ran (whatever
//! the verdicts), 1 when one failed to run, 2 on bad usage.

mod blocking;
mod catalog;
mod memory;
mod process;
mod report;
mod startup;

use anyhow::{bail, Context, Result};
use report::{print_table, Row, Verdict};
use std::path::Path;

const USAGE: &str = "\
usage: weft-bench <scenario> [options]

scenarios:
  dev-agent   all four below, one after another
  memory      1. idle resident memory of `weft agent -dev` (target <= 15 MB)
  startup     2. spawn -> /v1/status/leader answered (target <= 100 ms)
  catalog     3. 10k services x 2 instances, then catalog/health reads (target p99 <= 2 ms)
  blocking    4. 1,000 blocking queries woken by one write (target all within 50 ms)

options:
  --runs N       start-up runs (default 20)
  --services N   services registered by `catalog` (default 10000)
  --reads N      reads measured by `catalog` (default 20000)
  --readers N    concurrent reading clients in `catalog` (default 4)
  --writers N    registrations in flight in `catalog` (default 32)
  --watchers N   blocking queries in `blocking` (default 1000)
  --close        `blocking` queries send `Connection: close` (default: kept alive, as Consul's clients do)

The weft binary is $WEFT_BIN, else target/release/weft (build it with `cargo build --release -p weft`).";

struct Options {
    scenario: String,
    runs: usize,
    catalog: catalog::Config,
    watchers: usize,
    close: bool,
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
    };
    while let Some(flag) = args.next() {
        if flag == "--close" {
            opts.close = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
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
            if ["dev-agent", "memory", "startup", "catalog", "blocking"]
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
    let all = opts.scenario == "dev-agent";
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
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
    print_table(&rows);
    failed
}
