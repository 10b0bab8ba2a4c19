//! `weft demo`: the walkthrough on one machine, in one command.
//!
//! It starts a dev agent (default-deny intentions), registers greeting, name and two greeter instances with
//! sidecars, runs every sidecar as `weft connect proxy -sidecar-for`, the test proxy exactly as
//! `weft connect proxy -service test -upstream greeter:8080`, and the ingress (nginx in front of a sidecar upstream
//! when nginx is installed, Weft's own gateway otherwise). Each piece is a real process, as on real hosts. Ctrl-C
//! tears down in reverse: ingress and services (deregistered), then the agent.
//!
//! With `-acl` it runs the way the container deployment does: ACLs on with default deny, the ACL system
//! bootstrapped once (the management token in a file only the user reads), the agent given a token for its node
//! and a DNS token, and every service and proxy its own token with just its service identity.

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
    /// The agent's DNS port, UDP and TCP (`dig @127.0.0.1 -p PORT greeter.service.consul SRV`).
    #[arg(long = "dns-port", default_value_t = 8600)]
    pub dns_port: u16,
    /// Where the test proxy listens (`curl localhost:PORT`).
    #[arg(long = "test-port", default_value_t = 8080)]
    pub test_port: u16,
    /// Where the ingress listens.
    #[arg(long = "ingress-port", default_value_t = 8081)]
    pub ingress_port: u16,
    /// `auto` (nginx when installed), `nginx` or `builtin`.
    #[arg(long, default_value = "auto")]
    pub ingress: String,
    /// ACLs on, default deny: bootstraps, and gives the agent and every service a token of its own.
    #[arg(long)]
    pub acl: bool,
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
        terminate(&mut self.child);
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
    let mut left = group;
    for p in &mut left {
        terminate(&mut p.child);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left.is_empty() && Instant::now() < deadline {
        left.retain_mut(|p| matches!(p.child.try_wait(), Ok(None)));
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(left);
}

/// SIGTERM to a child still running, through kill(2) (rustix: no `kill` process, no unsafe code). A child that has
/// exited is left alone: once reaped, its PID may name another process. A failed kill(2) means it exited meanwhile,
/// which the caller's wait sees.
fn terminate(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Ports this demo has handed out (or was given): its components bind theirs a moment after they are chosen, and in
/// that moment the kernel may offer the same free port again (once, a sidecar's upstream took the ingress's).
static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Marks `port` as this demo's.
fn reserve(port: u16) {
    GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port);
}

/// A port nothing listens on now and that this demo has not handed out before.
fn free_port() -> Result<u16> {
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return Ok(port);
        }
    }
    bail!("found no free port that this demo had not used already")
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
    /// The management token, with `-acl`.
    token: Option<String>,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        self.call_as(method, path, body, self.token.as_deref())
            .await
    }

    async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.header("X-Consul-Token", t);
        }
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

/// The walkthrough's processes, started in order and stopped in reverse.
struct Demo {
    args: DemoArgs,
    weft: PathBuf,
    greeter: PathBuf,
    dir: PathBuf,
    http_addr: String,
    api: Api,
    apps: Vec<Proc>,
    sidecars: Vec<Proc>,
    ingress: Vec<Proc>,
    service_ids: Vec<String>,
    /// With `-acl`: each service's token file.
    tokens: std::collections::BTreeMap<String, PathBuf>,
}

/// The services that get a token of their own with `-acl`.
const ACL_SERVICES: [&str; 5] = ["greeting", "name", "greeter", "test", "ingress"];

/// Writes a secret readable by its owner only, from the moment the file exists.
fn write_secret(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(())
}

pub async fn run(a: DemoArgs) -> Result<i32> {
    let use_nginx = ingress_choice(&a.ingress)?;
    let mut signals = weft_sidecar::signals::Signals::install();
    let (mut demo, agent) = Demo::start_agent(a).await?;
    if demo.args.acl {
        demo.set_up_acls().await?;
    }
    demo.start_services().await?;
    demo.allow_intentions().await?;
    demo.start_sidecars()?;
    let test_proxy = demo.start_test_proxy()?;
    let ingress_kind = demo.start_ingress(use_nginx).await?;
    demo.wait_until_ready().await?;
    demo.print_ready(ingress_kind).await;
    signals.wait().await;
    println!("==> Stopping: ingress and services, then the agent");
    Ok(demo.stop(test_proxy, agent).await)
}

/// `-ingress auto|nginx|builtin`: whether nginx fronts the mesh.
fn ingress_choice(choice: &str) -> Result<bool> {
    match choice {
        "nginx" if find_nginx().is_none() => {
            bail!("-ingress nginx: nginx is not installed (apt-get install nginx-light)")
        }
        "nginx" => Ok(true),
        "builtin" => Ok(false),
        "auto" => Ok(find_nginx().is_some()),
        other => bail!("-ingress must be auto, nginx or builtin, not {other:?}"),
    }
}

impl Demo {
    /// Checks the ports and binaries, then starts the dev agent with default-deny intentions.
    async fn start_agent(args: DemoArgs) -> Result<(Demo, Proc)> {
        let weft = std::env::current_exe().context("cannot find the weft executable")?;
        let greeter = weft.with_file_name("greeter-demo");
        if !greeter.is_file() {
            bail!("greeter-demo was not found next to {}: build it with `cargo build -p greeter-demo` (same profile)", weft.display());
        }
        for (what, port) in [
            ("-http-port", args.http_port),
            ("-test-port", args.test_port),
            ("-ingress-port", args.ingress_port),
        ] {
            TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("{what} {port} is already in use"))?;
        }
        std::net::UdpSocket::bind(("127.0.0.1", args.dns_port))
            .and_then(|_| TcpListener::bind(("127.0.0.1", args.dns_port)))
            .with_context(|| format!("-dns-port {} is already in use", args.dns_port))?;
        for port in [
            args.http_port,
            args.test_port,
            args.ingress_port,
            args.dns_port,
        ] {
            reserve(port);
        }
        let dir = std::env::temp_dir().join(format!("weft-demo-{}", std::process::id()));
        {
            // The demo's tokens live here: the user's alone.
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let http_addr = format!("127.0.0.1:{}", args.http_port);
        let config = dir.join("agent.json");
        let mut settings = json!({"default_intention_policy": "deny", "connect": {"leaf_root_change_jitter": "5s"}});
        if args.acl {
            settings["acl"] = json!({"enabled": true, "default_policy": "deny"});
        }
        std::fs::write(&config, settings.to_string())?;
        let acl_note = if args.acl {
            ", ACLs on with default deny"
        } else {
            ""
        };
        println!(
            "==> Starting the Weft dev agent on {http_addr} (default-deny intentions{acl_note})"
        );
        let mut agent_args = s(&["agent", "-dev", "-node", "weft-demo", "-http-port"]);
        agent_args.extend([args.http_port.to_string(), "-dns-port".into()]);
        agent_args.extend([args.dns_port.to_string(), "-config-file".into()]);
        agent_args.push(config.display().to_string());
        let agent = Proc::spawn("agent", &weft, &agent_args, &dir)?;
        let api = Api {
            base: format!("http://{http_addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            token: None,
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
        let demo = Demo {
            args,
            weft,
            greeter,
            dir,
            http_addr,
            api,
            apps: Vec::new(),
            sidecars: Vec::new(),
            ingress: Vec::new(),
            service_ids: Vec::new(),
            tokens: std::collections::BTreeMap::new(),
        };
        Ok((demo, agent))
    }

    /// `-acl`: bootstraps (the management token to `<dir>/management.token`), gives the agent a token for its node
    /// and one for DNS, and every service a token with its service identity (`<dir>/<service>.token`).
    async fn set_up_acls(&mut self) -> Result<()> {
        println!("==> ACLs: bootstrapping, then a token for the agent and one per service");
        let deadline = Instant::now() + Duration::from_secs(15);
        let management = loop {
            // The leader sets the ACL system up just after it is elected: bootstrap may be early.
            match self.api.call(Method::PUT, "/v1/acl/bootstrap", None).await {
                Ok(v) => match v["SecretID"].as_str() {
                    Some(secret) => break secret.to_string(),
                    None => bail!("the bootstrap answer holds no SecretID"),
                },
                Err(e) if Instant::now() > deadline => return Err(e.context("ACL bootstrap")),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        write_secret(&self.dir.join("management.token"), &management)?;
        self.api.token = Some(management);
        let agent = self
            .create_token(
                "agent token for weft-demo",
                json!({"NodeIdentities": [{"NodeName": "weft-demo", "Datacenter": "dc1"}]}),
            )
            .await?;
        let dns = self
            .create_token(
                "DNS token",
                json!({"TemplatedPolicies": [{"TemplateName": "builtin/dns"}]}),
            )
            .await?;
        for (kind, secret) in [("agent", agent), ("dns", dns)] {
            self.api
                .call(
                    Method::PUT,
                    &format!("/v1/agent/token/{kind}"),
                    Some(json!({ "Token": secret })),
                )
                .await?;
        }
        for service in ACL_SERVICES {
            let secret = self
                .create_token(
                    &format!("token for {service}"),
                    json!({"ServiceIdentities": [{"ServiceName": service}]}),
                )
                .await?;
            let file = self.dir.join(format!("{service}.token"));
            write_secret(&file, &secret)?;
            self.tokens.insert(service.to_string(), file);
        }
        Ok(())
    }

    /// A new token with `grants`; answers its secret.
    async fn create_token(&self, description: &str, grants: Value) -> Result<String> {
        let mut body = grants;
        body["Description"] = json!(description);
        let v = self
            .api
            .call(Method::PUT, "/v1/acl/token", Some(body))
            .await?;
        v["SecretID"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the token answer holds no SecretID"))
    }

    /// The secret of `service`'s token, with `-acl`.
    fn token_of(&self, service: &str) -> Result<Option<String>> {
        match self.tokens.get(service) {
            None => Ok(None),
            Some(file) => Ok(Some(std::fs::read_to_string(file)?.trim().to_string())),
        }
    }

    /// greeting and name, then two greeters with their upstreams, each registered with a sidecar.
    async fn start_services(&mut self) -> Result<()> {
        for (id, role, node) in [
            ("greeting-1", "greeting", "host-a"),
            ("name-1", "name", "host-c"),
        ] {
            let port = free_port()?;
            let args = s(&[role, "-listen", &format!("127.0.0.1:{port}"), "-node", node]);
            self.apps
                .push(Proc::spawn(id, &self.greeter, &args, &self.dir)?);
            let token = self.token_of(role)?;
            register(&self.api, token.as_deref(), id, role, port, &[]).await?;
            self.service_ids.push(id.to_string());
        }
        for (id, node) in [("greeter-1", "host-b"), ("greeter-2", "host-c")] {
            let (port, greeting_up, name_up) = (free_port()?, free_port()?, free_port()?);
            let args = s(&[
                "greeter",
                "-listen",
                &format!("127.0.0.1:{port}"),
                "-node",
                node,
                "-greeting-upstream",
                &format!("127.0.0.1:{greeting_up}"),
                "-name-upstream",
                &format!("127.0.0.1:{name_up}"),
            ]);
            self.apps
                .push(Proc::spawn(id, &self.greeter, &args, &self.dir)?);
            let upstreams = [("greeting", greeting_up), ("name", name_up)];
            let token = self.token_of("greeter")?;
            register(&self.api, token.as_deref(), id, "greeter", port, &upstreams).await?;
            self.service_ids.push(id.to_string());
        }
        Ok(())
    }

    async fn allow_intentions(&self) -> Result<()> {
        for (src, dst) in [
            ("test", "greeter"),
            ("ingress", "greeter"),
            ("greeter", "greeting"),
            ("greeter", "name"),
        ] {
            self.api
                .call(
                    Method::PUT,
                    &format!("/v1/connect/intentions/exact?source={src}&destination={dst}"),
                    Some(json!({"SourceType": "consul", "Action": "allow", "Description": "weft demo"})),
                )
                .await?;
        }
        Ok(())
    }

    /// `weft connect proxy` (or `ingress`) with these arguments, the agent's address and, with `-acl`, the
    /// token file of `service`.
    fn weft_proxy(&self, kind: &str, name: &str, service: &str, args: &[String]) -> Result<Proc> {
        let mut argv = s(&["connect", kind]);
        argv.extend(args.iter().cloned());
        argv.extend(s(&["-http-addr", &self.http_addr]));
        if let Some(file) = self.tokens.get(service) {
            argv.extend(["-token-file".to_string(), file.display().to_string()]);
        }
        Proc::spawn(name, &self.weft, &argv, &self.dir)
    }

    fn proxy(&self, name: &str, service: &str, args: &[&str]) -> Result<Proc> {
        self.weft_proxy("proxy", name, service, &s(args))
    }

    fn start_sidecars(&mut self) -> Result<()> {
        for id in &self.service_ids {
            // greeting-1 -> greeting, greeter-2 -> greeter.
            let service = id.rsplit_once('-').map_or(id.as_str(), |(name, _)| name);
            let args = ["-sidecar-for", id, "-drain-timeout", "2s"];
            self.sidecars
                .push(self.proxy(&format!("{id}-sidecar"), service, &args)?);
        }
        Ok(())
    }

    /// The test proxy, exactly as `weft connect proxy -service test -upstream greeter:8080`.
    fn start_test_proxy(&self) -> Result<Proc> {
        let upstream = format!("greeter:{}", self.args.test_port);
        let args = [
            "-service",
            "test",
            "-upstream",
            &upstream,
            "-drain-timeout",
            "2s",
        ];
        self.proxy("test-proxy", "test", &args)
    }

    /// nginx in front of a sidecar upstream, or Weft's own gateway; answers which.
    async fn start_ingress(&mut self, use_nginx: bool) -> Result<&'static str> {
        let listen = format!("127.0.0.1:{}", self.args.ingress_port);
        if !use_nginx {
            // As with Consul's gateways, the listeners are the `ingress-gateway` config entry's.
            let entry = json!({
                "Kind": "ingress-gateway", "Name": "ingress",
                "Listeners": [{"Port": self.args.ingress_port, "Protocol": "tcp", "Services": [{"Name": "greeter"}]}],
            });
            self.api
                .call(Method::PUT, "/v1/config", Some(entry))
                .await
                .context("writing the ingress-gateway config entry")?;
            let argv = s(&["-service", "ingress", "-register", "-address", "127.0.0.1"]);
            let gateway = self.weft_proxy("ingress", "ingress-gateway", "ingress", &argv)?;
            self.ingress.push(gateway);
            return Ok("Weft's ingress gateway");
        }
        let upstream = free_port()?;
        let target = format!("greeter:{upstream}");
        let proxy = self.proxy(
            "ingress-proxy",
            "ingress",
            &["-service", "ingress", "-upstream", &target],
        )?;
        self.ingress.push(proxy);
        let nginx_dir = self.dir.join("nginx");
        std::fs::create_dir_all(&nginx_dir)?;
        let conf = NGINX_TEMPLATE
            .replace(
                "{{USER}}",
                if running_as_root() { "user root;" } else { "" },
            )
            .replace("{{DIR}}", &nginx_dir.display().to_string())
            .replace("{{LISTEN}}", &listen)
            .replace("{{UPSTREAM}}", &format!("127.0.0.1:{upstream}"));
        let conf_file = nginx_dir.join("nginx.conf");
        std::fs::write(&conf_file, conf)?;
        let nginx = find_nginx().ok_or_else(|| anyhow!("nginx disappeared"))?;
        let argv = s(&[
            "-p",
            &nginx_dir.display().to_string(),
            "-c",
            &conf_file.display().to_string(),
        ]);
        self.ingress
            .push(Proc::spawn("nginx", &nginx, &argv, &self.dir)?);
        Ok("nginx in front of a Weft sidecar upstream")
    }

    /// Every service healthy with its sidecar, and a first answer through the mesh.
    async fn wait_until_ready(&self) -> Result<()> {
        println!("==> Waiting for every service and sidecar to pass its checks (sidecar checks run every 10 s)");
        for (service, want) in [("greeting", 1), ("name", 1), ("greeter", 2)] {
            let path = format!("/v1/health/connect/{service}?passing=1");
            wait_for(
                Duration::from_secs(60),
                &format!("{service} to be healthy"),
                || async {
                    self.api
                        .call(Method::GET, &path, None)
                        .await
                        .map(|v| v.as_array().map(Vec::len) == Some(want))
                        .unwrap_or(false)
                },
            )
            .await
            .with_context(|| format!("logs are in {}", self.dir.display()))?;
        }
        let plain = plain_client()?;
        let test_url = format!("http://localhost:{}/", self.args.test_port);
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
        .await
    }

    async fn print_ready(&self, ingress_kind: &str) {
        let (http, test) = (self.args.http_port, self.args.test_port);
        let test_url = format!("http://localhost:{test}/");
        println!();
        println!("    Dashboard:  http://localhost:{http}/ui/dc1/services");
        println!("    API:        http://localhost:{http}/v1/health/service/greeter?pretty");
        println!(
            "    DNS:        dig @127.0.0.1 -p {} greeter.service.consul SRV",
            self.args.dns_port
        );
        println!("    Test proxy: {test_url}   (weft connect proxy -service test -upstream greeter:{test})");
        println!(
            "    Ingress:    http://localhost:{}/   ({ingress_kind})",
            self.args.ingress_port
        );
        println!("    Logs:       {}", self.dir.display());
        if let Some(file) = self.tokens.get("test") {
            let dir = self.dir.display();
            println!("    ACLs:       on, default deny; every service and proxy has its own token ({dir}/<service>.token)");
            println!(
                "    Management token: {dir}/management.token   (sign in to the dashboard with it;"
            );
            println!("                weft commands take -token-file {dir}/management.token)");
            println!("    Test proxy token: {}", file.display());
        }
        println!();
        if let Ok(plain) = plain_client() {
            for _ in 0..4 {
                match plain.get(&test_url).send().await {
                    Ok(r) => println!(
                        "    $ curl localhost:{test}\n    {}",
                        r.text().await.unwrap_or_default().trim()
                    ),
                    Err(e) => println!("    $ curl localhost:{test}\n    error: {e}"),
                }
            }
        }
        println!();
        let token_flag = if self.tokens.is_empty() {
            String::new()
        } else {
            format!(
                " -token-file {}",
                self.dir.join("management.token").display()
            )
        };
        println!("    Deny one edge and watch the greeter name it:  weft intention create -deny -replace greeter name{token_flag}");
        println!("==> Weft demo ready. Press Ctrl-C to stop.");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    /// Ingress first, then services (deregistered), the proxies and apps, then the agent; answers the exit code
    /// (1 when services were left in the catalog).
    async fn stop(self, test_proxy: Proc, agent: Proc) -> i32 {
        stop_all(self.ingress);
        for id in &self.service_ids {
            let path = format!("/v1/agent/service/deregister/{id}");
            if let Err(e) = self.api.call(Method::PUT, &path, None).await {
                eprintln!("    could not deregister {id}: {e}");
            }
        }
        stop_all(
            std::iter::once(test_proxy)
                .chain(self.sidecars)
                .chain(self.apps)
                .collect(),
        );
        let left = self
            .api
            .call(Method::GET, "/v1/catalog/services", None)
            .await
            .unwrap_or(Value::Null);
        let names: Vec<&String> = left
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "consul").collect())
            .unwrap_or_default();
        let listed = if names.is_empty() {
            "none".to_string()
        } else {
            format!("{names:?}")
        };
        println!("==> Services left in the catalog: {listed}");
        agent.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("==> Weft demo stopped");
        if names.is_empty() {
            0
        } else {
            1
        }
    }
}

/// No pooled connections: each sample call is a fresh connection, as `curl` makes.
fn plain_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?)
}

/// Registers one service instance with a sidecar and an HTTP check, and the upstreams its sidecar opens (with
/// `-acl`, with the service's own token, which the agent then keeps it in sync with).
async fn register(
    api: &Api,
    token: Option<&str>,
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
    let token = token.or(api.token.as_deref());
    api.call_as(Method::PUT, "/v1/agent/service/register", Some(body), token)
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

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once() {
        reserve(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let port = free_port().unwrap_or_else(|e| panic!("{e}"));
            assert!(seen.insert(port), "{port} handed out twice");
            assert_ne!(port, 1);
        }
    }
}
