//! The walkthrough's call path under load: ingress -> greeter sidecar -> greeter -> greeting and name sidecars
//! (three mutual-TLS hops per request), against the same three services wired directly (no mesh). Prints
//! requests/s and p50/p99 latency for both, the ratio, and the mesh's added latency per hop.
//!
//! `cargo build --release -p weft -p greeter-demo -p weft-bench && /var/cache/weft/target/release/walkthrough`
//! (options: `--requests N`, `--clients N`). Everything runs on 127.0.0.1 and stops by itself.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_testkit::net::free_port;
use weft_testkit::{signal, Signal};

/// The walkthrough's call path under load, through the mesh and wired directly.
#[derive(Parser, Debug)]
#[command(name = "walkthrough", args_override_self = true)]
struct Args {
    /// GETs in total, for each of the two topologies.
    #[arg(long, value_name = "N", default_value = "3000")]
    requests: NonZeroUsize,
    /// Concurrent keep-alive clients.
    #[arg(long, value_name = "N", default_value = "4")]
    clients: NonZeroUsize,
}

/// A child process: Ctrl-C (SIGINT) when dropped, so `weft demo` tears down its own children, then SIGKILL after
/// 20 s.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // An error means it has already exited (not reaped yet, so the PID is still its own).
        let _ = signal(self.0.id(), Signal::Int);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binaries() -> Result<(PathBuf, PathBuf)> {
    let weft = match std::env::var_os("WEFT_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.with_file_name("weft"),
    };
    let greeter = weft.with_file_name("greeter-demo");
    if !weft.is_file() || !greeter.is_file() {
        bail!(
            "build first: cargo build --release -p weft -p greeter-demo ({} / {})",
            weft.display(),
            greeter.display()
        );
    }
    Ok((weft, greeter))
}

fn spawn(bin: &PathBuf, args: &[String], log: &PathBuf) -> Result<Guard> {
    let out = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    Ok(Guard(child))
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` keep-alive clients, `requests` GETs in total, all answers must be 200.
async fn load(url: &str, requests: usize, clients: usize) -> Result<Figures> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(10))
        .build()?;
    // Warm up.
    for _ in 0..20 {
        http.get(url).send().await?.error_for_status()?;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url) = (http.clone(), url.to_string());
        let n = requests / clients + usize::from(c < requests % clients);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let r = http.get(&url).send().await?;
                let status = r.status();
                let body = r.text().await?;
                if !status.is_success() {
                    bail!("{status}: {body}");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| anyhow!("load task: {e}"))??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Figures {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

async fn wait_http(url: &str, timeout: Duration) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer within {timeout:?}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bad usage exits with 2 (clap's code for a usage error).
    let args = Args::parse();
    let (requests, clients) = (args.requests.get(), args.clients.get());
    let (weft, greeter) = binaries()?;
    let dir = std::env::temp_dir().join(format!("weft-walkthrough-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // No mesh: the greeter calls greeting and name directly.
    let (g, n, gr) = (free_port()?, free_port()?, free_port()?);
    let _greeting = spawn(
        &greeter,
        &s(&[
            "greeting",
            "-listen",
            &format!("127.0.0.1:{g}"),
            "-node",
            "host-a",
        ]),
        &dir.join("g.log"),
    )?;
    let _name = spawn(
        &greeter,
        &s(&[
            "name",
            "-listen",
            &format!("127.0.0.1:{n}"),
            "-node",
            "host-c",
        ]),
        &dir.join("n.log"),
    )?;
    let _greeter = spawn(
        &greeter,
        &s(&[
            "greeter",
            "-listen",
            &format!("127.0.0.1:{gr}"),
            "-node",
            "host-b",
            "-greeting-upstream",
            &format!("127.0.0.1:{g}"),
            "-name-upstream",
            &format!("127.0.0.1:{n}"),
        ]),
        &dir.join("gr.log"),
    )?;
    let direct_url = format!("http://127.0.0.1:{gr}/");
    wait_http(&direct_url, Duration::from_secs(10)).await?;
    let direct = load(&direct_url, requests, clients)
        .await
        .context("no-mesh load")?;

    // The mesh: weft demo with the built-in ingress gateway.
    let (http, test, ingress) = (free_port()?, free_port()?, free_port()?);
    let demo = spawn(
        &weft,
        &s(&[
            "demo",
            "-http-port",
            &http.to_string(),
            "-test-port",
            &test.to_string(),
            "-ingress-port",
            &ingress.to_string(),
            "-ingress",
            "builtin",
        ]),
        &dir.join("demo.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(dir.join("demo.log"))
        .unwrap_or_default()
        .contains("Weft demo ready")
    {
        if Instant::now() > deadline {
            bail!(
                "weft demo did not come up; see {}",
                dir.join("demo.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mesh_url = format!("http://127.0.0.1:{ingress}/");
    let mesh = load(&mesh_url, requests, clients)
        .await
        .context("mesh load")?;
    drop(demo);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("walkthrough path, {requests} requests over {clients} keep-alive clients (each greeter call makes two upstream calls)");
    println!(
        "{:<44} | {:>10} | {:>10} | {:>10}",
        "topology", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} | {:>10.0} | {:>10.3} | {:>10.3}",
        "no mesh (greeter -> greeting, name)",
        direct.rps,
        ms(direct.p50),
        ms(direct.p99)
    );
    println!(
        "{:<44} | {:>10.0} | {:>10.3} | {:>10.3}",
        "mesh (ingress -> 3 mTLS hops)",
        mesh.rps,
        ms(mesh.p50),
        ms(mesh.p99)
    );
    println!(
        "mesh / no mesh: throughput x{:.2}, p50 x{:.2}, p99 x{:.2}",
        mesh.rps / direct.rps,
        ms(mesh.p50) / ms(direct.p50),
        ms(mesh.p99) / ms(direct.p99)
    );
    // On the critical path a request crosses the ingress hop, then the greeting and name hops in parallel.
    println!(
        "added latency per hop (p50, two hops on the critical path): {:.3} ms",
        (ms(mesh.p50) - ms(direct.p50)) / 2.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
