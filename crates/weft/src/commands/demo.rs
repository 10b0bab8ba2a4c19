//! `weft demo`: the walkthrough on one machine, in one command.
//!
//! It starts a dev agent (default-deny intentions), registers greeting, name and two greeter instances with
//! sidecars, runs every sidecar as `weft connect proxy -sidecar-for`, the test proxy exactly as
//! `weft connect proxy -service test -upstream greeter:8080`, and the ingress (nginx in front of a sidecar upstream
//! when nginx is installed, Weft's own gateway otherwise). Each piece is a real process, as on real hosts. Ctrl-C
//! tears down in reverse: ingress and services (deregistered), then the agent.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX_TEMPLATE: &str = include_str!("../../../../deploy/nginx/weft-ingress.conf.template");

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The agent's HTTP API and dashboard port.
    #[arg(long = "http-port", default_value_t = 8500)]
    pub http_port: u16,
    /// Where the test proxy listens (`curl localhost:PORT`).
    #[arg(long = "test-port", default_value_t = 8080)]
    pub test_port: u16,
    /// Where the ingress listens.
    #[arg(long = "ingress-port", default_value_t = 8081)]
    pub ingress_port: u16,
    /// `auto` (nginx when installed), `nginx` or `builtin`.
    #[arg(long, default_value = "auto")]
    pub ingress: String,
}

/// A child process, stopped on drop.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(name: &str, bin: &Path, args: &[String], log_dir: &Path) -> Result<Proc> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", bin.display()))?;
        Ok(Proc { child })
    }

    /// SIGTERM, then SIGKILL after a grace period.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops a group at once: SIGTERM to all, then SIGKILL to whatever is still running after the grace period.
fn stop_all(group: Vec<Proc>) {
    for p in &group {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = group;
    while !left.is_empty() && Instant::now() < deadline {
        left.retain_mut(|p| matches!(p.child.try_wait(), Ok(None)));
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(left);
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|x| x.to_string()).collect()
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn find_nginx() -> Option<PathBuf> {
    [
        "/usr/sbin/nginx",
        "/usr/bin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/bin/nginx",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| anyhow!("agent: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("agent answered {status} to {path}: {}", text.trim());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

pub async fn run(a: DemoArgs) -> Result<i32> {
    let weft = std::env::current_exe().context("cannot find the weft executable")?;
    let greeter = weft.with_file_name("greeter-demo");
    if !greeter.is_file() {
        bail!("greeter-demo was not found next to {}: build it with `cargo build -p greeter-demo` (same profile)", weft.display());
    }
    let use_nginx = match a.ingress.as_str() {
        "nginx" => {
            if find_nginx().is_none() {
                bail!("-ingress nginx: nginx is not installed (apt-get install nginx-light)");
            }
            true
        }
        "builtin" => false,
        "auto" => find_nginx().is_some(),
        other => bail!("-ingress must be auto, nginx or builtin, not {other:?}"),
    };
    for (what, port) in [
        ("-http-port", a.http_port),
        ("-test-port", a.test_port),
        ("-ingress-port", a.ingress_port),
    ] {
        TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("{what} {port} is already in use"))?;
    }
    let dir = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let logs = dir.clone();
    let http_addr = format!("127.0.0.1:{}", a.http_port);
    let config = dir.join("agent.json");
    std::fs::write(
        &config,
        json!({"acl": {"default_policy": "deny"}, "connect": {"leaf_root_change_jitter": "5s"}})
            .to_string(),
    )?;

    let mut signals = weft_sidecar::signals::Signals::install();
    println!("==> Starting the Weft dev agent on {http_addr} (default-deny intentions)");
    let agent = Proc::spawn(
        "agent",
        &weft,
        &s(&[
            "agent",
            "-dev",
            "-node",
            "weft-demo",
            "-http-port",
            &a.http_port.to_string(),
            "-config-file",
        ])
        .into_iter()
        .chain([config.display().to_string()])
        .collect::<Vec<_>>(),
        &logs,
    )?;
    let api = Api {
        base: format!("http://{http_addr}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
    };
    wait_for(
        Duration::from_secs(15),
        "the agent to elect itself leader",
        || async {
            api.call(Method::GET, "/v1/status/leader", None)
                .await
                .map(|v| v.as_str().is_some_and(|l| !l.is_empty()))
                .unwrap_or(false)
        },
    )
    .await?;

    // Services and their sidecars.
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    let mut service_ids = Vec::new();
    let backends = [
        ("greeting-1", "greeting", "host-a"),
        ("name-1", "name", "host-c"),
    ];
    for (id, role, node) in backends {
        let port = free_port()?;
        apps.push(Proc::spawn(
            id,
            &greeter,
            &s(&[role, "-listen", &format!("127.0.0.1:{port}"), "-node", node]),
            &logs,
        )?);
        register(&api, id, role, port, &[]).await?;
        service_ids.push(id.to_string());
    }
    for (id, node) in [("greeter-1", "host-b"), ("greeter-2", "host-c")] {
        let (port, greeting_up, name_up) = (free_port()?, free_port()?, free_port()?);
        apps.push(Proc::spawn(
            id,
            &greeter,
            &s(&[
                "greeter",
                "-listen",
                &format!("127.0.0.1:{port}"),
                "-node",
                node,
                "-greeting-upstream",
                &format!("127.0.0.1:{greeting_up}"),
                "-name-upstream",
                &format!("127.0.0.1:{name_up}"),
            ]),
            &logs,
        )?);
        register(
            &api,
            id,
            "greeter",
            port,
            &[("greeting", greeting_up), ("name", name_up)],
        )
        .await?;
        service_ids.push(id.to_string());
    }
    for (src, dst) in [
        ("test", "greeter"),
        ("ingress", "greeter"),
        ("greeter", "greeting"),
        ("greeter", "name"),
    ] {
        api.call(
            Method::PUT,
            &format!("/v1/connect/intentions/exact?source={src}&destination={dst}"),
            Some(json!({"SourceType": "consul", "Action": "allow", "Description": "weft demo"})),
        )
        .await?;
    }
    for id in &service_ids {
        sidecars.push(Proc::spawn(
            &format!("{id}-sidecar"),
            &weft,
            &s(&[
                "connect",
                "proxy",
                "-sidecar-for",
                id,
                "-http-addr",
                &http_addr,
                "-drain-timeout",
                "2s",
            ]),
            &logs,
        )?);
    }
    let test_proxy = Proc::spawn(
        "test-proxy",
        &weft,
        &s(&[
            "connect",
            "proxy",
            "-service",
            "test",
            "-upstream",
            &format!("greeter:{}", a.test_port),
            "-http-addr",
            &http_addr,
            "-drain-timeout",
            "2s",
        ]),
        &logs,
    )?;

    // Ingress.
    let mut ingress = Vec::new();
    let ingress_kind = if use_nginx {
        let upstream = free_port()?;
        ingress.push(Proc::spawn(
            "ingress-proxy",
            &weft,
            &s(&[
                "connect",
                "proxy",
                "-service",
                "ingress",
                "-upstream",
                &format!("greeter:{upstream}"),
                "-http-addr",
                &http_addr,
            ]),
            &logs,
        )?);
        let nginx_dir = dir.join("nginx");
        std::fs::create_dir_all(&nginx_dir)?;
        let conf = NGINX_TEMPLATE
            .replace(
                "{{USER}}",
                if running_as_root() { "user root;" } else { "" },
            )
            .replace("{{DIR}}", &nginx_dir.display().to_string())
            .replace("{{LISTEN}}", &format!("127.0.0.1:{}", a.ingress_port))
            .replace("{{UPSTREAM}}", &format!("127.0.0.1:{upstream}"));
        let conf_file = nginx_dir.join("nginx.conf");
        std::fs::write(&conf_file, conf)?;
        let nginx = find_nginx().ok_or_else(|| anyhow!("nginx disappeared"))?;
        ingress.push(Proc::spawn(
            "nginx",
            &nginx,
            &s(&[
                "-p",
                &nginx_dir.display().to_string(),
                "-c",
                &conf_file.display().to_string(),
            ]),
            &logs,
        )?);
        "nginx in front of a Weft sidecar upstream"
    } else {
        ingress.push(Proc::spawn(
            "ingress-gateway",
            &weft,
            &s(&[
                "connect",
                "ingress",
                "-service",
                "ingress",
                "-register",
                "-http",
                &format!("127.0.0.1:{}=greeter", a.ingress_port),
                "-http-addr",
                &http_addr,
            ]),
            &logs,
        )?);
        "Weft's ingress gateway"
    };

    println!("==> Waiting for every service and sidecar to pass its checks (sidecar checks run every 10 s)");
    for (service, want) in [("greeting", 1), ("name", 1), ("greeter", 2)] {
        wait_for(
            Duration::from_secs(60),
            &format!("{service} to be healthy"),
            || async {
                api.call(
                    Method::GET,
                    &format!("/v1/health/connect/{service}?passing=1"),
                    None,
                )
                .await
                .map(|v| v.as_array().map(Vec::len) == Some(want))
                .unwrap_or(false)
            },
        )
        .await
        .with_context(|| format!("logs are in {}", logs.display()))?;
    }
    // No pooled connections: each sample call is a fresh connection, as `curl` makes.
    let plain = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?;
    let test_url = format!("http://localhost:{}/", a.test_port);
    let ingress_url = format!("http://localhost:{}/", a.ingress_port);
    wait_for(
        Duration::from_secs(30),
        "the first answer through the mesh",
        || async {
            plain
                .get(&test_url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await?;
    println!();
    println!(
        "    Dashboard:  http://localhost:{}/ui/dc1/services",
        a.http_port
    );
    println!(
        "    API:        http://localhost:{}/v1/health/service/greeter?pretty",
        a.http_port
    );
    println!(
        "    Test proxy: {test_url}   (weft connect proxy -service test -upstream greeter:{})",
        a.test_port
    );
    println!("    Ingress:    {ingress_url}   ({ingress_kind})");
    println!("    Logs:       {}", logs.display());
    println!();
    for _ in 0..4 {
        match plain.get(&test_url).send().await {
            Ok(r) => println!(
                "    $ curl localhost:{}\n    {}",
                a.test_port,
                r.text().await.unwrap_or_default().trim()
            ),
            Err(e) => println!("    $ curl localhost:{}\n    error: {e}", a.test_port),
        }
    }
    println!();
    println!("    Deny one edge and watch the greeter name it:  weft intention create -deny -replace greeter name");
    println!("==> Weft demo ready. Press Ctrl-C to stop.");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    signals.wait().await;
    println!("==> Stopping: ingress and services, then the agent");
    stop_all(ingress);
    for id in &service_ids {
        if let Err(e) = api
            .call(
                Method::PUT,
                &format!("/v1/agent/service/deregister/{id}"),
                None,
            )
            .await
        {
            eprintln!("    could not deregister {id}: {e}");
        }
    }
    stop_all(
        std::iter::once(test_proxy)
            .chain(sidecars)
            .chain(apps)
            .collect(),
    );
    let left = api
        .call(Method::GET, "/v1/catalog/services", None)
        .await
        .unwrap_or(Value::Null);
    let names: Vec<&String> = left
        .as_object()
        .map(|m| m.keys().filter(|k| *k != "consul").collect())
        .unwrap_or_default();
    println!(
        "==> Services left in the catalog: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            format!("{names:?}")
        }
    );
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
    println!("==> Weft demo stopped");
    Ok(if names.is_empty() { 0 } else { 1 })
}

/// Registers one service instance with a sidecar and an HTTP check, and the upstreams its sidecar opens.
async fn register(
    api: &Api,
    id: &str,
    name: &str,
    port: u16,
    upstreams: &[(&str, u16)],
) -> Result<()> {
    let upstreams: Vec<Value> = upstreams
        .iter()
        .map(|(dest, p)| json!({"DestinationName": dest, "LocalBindPort": p}))
        .collect();
    let body = json!({
        "ID": id, "Name": name, "Port": port, "Address": "127.0.0.1",
        "Check": {"Name": format!("{name} answers"), "HTTP": format!("http://127.0.0.1:{port}/"), "Interval": "2s",
                  "Status": "passing"},
        "Connect": {"SidecarService": {"Port": free_port()?, "Proxy": {"Upstreams": upstreams}}},
    });
    api.call(Method::PUT, "/v1/agent/service/register", Some(body))
        .await
        .map(|_| ())
}

async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}
