//! Weft's container deployment (`deploy/compose`) brought up for real with its own `up.sh`, exercised the way its
//! users would, and torn down with its own `down.sh`:
//! - 30 calls through the nginx ingress all answer the greeter's line, from both greeter instances;
//! - the built-in ingress gateway answers too;
//! - the dashboard's nodes page lists the six Weft nodes;
//! - one task cannot reach another task's application directly, only through its sidecar;
//! - stopping one greeter task leaves every later call answered;
//! - stopping the leader server elects another, writes and calls keep working, and the restarted server rejoins
//!   and catches up;
//! - it is secured by default: the secrets directory is the operator's alone, the dashboard's port is published on
//!   loopback only, application containers mount no secret and sidecars only their own service's token; from
//!   inside an application's network namespace every agent refuses another service's leaf, an intention write, a KV
//!   read and a snapshot with 403, the server RPC port answers nothing without a certificate, and the dashboard
//!   shows nothing without a token; the operator's calls (test proxy, KV, dashboard) work with the printed token;
//! - `down.sh` leaves no container, network, volume or secret behind (and the guard runs it when the test fails).
//!
//! Needs Docker and the images `deploy/compose/build-images.sh` builds (scripts/test builds them first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use weft_testkit::docker;
use weft_testkit::eventually_sync;
use weft_testkit::net::{free_port, http_get_as, http_get_path};

fn compose_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A /24 (its first three octets) that no Docker network uses yet.
fn free_subnet() -> Result<String> {
    let ids = Command::new("docker")
        .args(["network", "ls", "-q"])
        .output()?;
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut used = String::new();
    if !ids.is_empty() {
        let out = Command::new("docker")
            .args([
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            ])
            .args(&ids)
            .output()?;
        used = String::from_utf8_lossy(&out.stdout).to_string();
    }
    let start = std::process::id() % 200;
    for i in 0..200 {
        let prefix = format!("10.89.{}", 20 + (start + i) % 200);
        if !used.contains(&format!("{prefix}.0/")) {
            return Ok(prefix);
        }
    }
    bail!("no free 10.89.x.0/24 subnet")
}

/// One deployment of the compose project, removed by `down.sh` on drop unless the test did so already.
struct Deployment {
    env: Vec<(&'static str, String)>,
    project: String,
    subnet: String,
    ui: u16,
    ingress: u16,
    gateway: u16,
    removed: bool,
}

impl Deployment {
    fn up() -> Result<Deployment> {
        let mut d = Deployment {
            env: Vec::new(),
            project: format!("wefttest{}", std::process::id()),
            subnet: free_subnet()?,
            ui: free_port()?,
            ingress: free_port()?,
            gateway: free_port()?,
            removed: false,
        };
        d.env = vec![
            ("WEFT_PROJECT", d.project.clone()),
            ("WEFT_SUBNET", d.subnet.clone()),
            ("WEFT_UI_PORT", d.ui.to_string()),
            ("WEFT_INGRESS_PORT", d.ingress.to_string()),
            ("WEFT_GATEWAY_PORT", d.gateway.to_string()),
            ("WEFT_SKIP_BUILD", "1".into()),
            (
                "WEFT_SECRETS",
                compose_dir()
                    .join(".secrets")
                    .join(&d.project)
                    .display()
                    .to_string(),
            ),
        ];
        let out = d.script("up.sh")?;
        if !out.status.success() {
            bail!("up.sh failed:\n{}", text(&out));
        }
        Ok(d)
    }

    fn script(&self, name: &str) -> Result<Output> {
        Command::new(compose_dir().join(name))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .with_context(|| format!("cannot run {name}"))
    }

    /// `docker-compose` (or `docker compose`) on this project.
    fn compose(&self, args: &[&str]) -> Result<String> {
        let file = compose_dir().join("docker-compose.yml");
        let v2 = Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
        let mut cmd = if v2 {
            let mut c = Command::new("docker");
            c.arg("compose");
            c
        } else {
            Command::new("docker-compose")
        };
        let out = cmd
            .args(["-p", &self.project, "-f"])
            .arg(&file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()?;
        ensure!(
            out.status.success(),
            "compose {}: {}",
            args.join(" "),
            text(&out)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `docker exec` of a program in a service's container.
    fn exec(&self, service: &str, args: &[&str]) -> Result<Output> {
        let id = self.compose(&["ps", "-q", service])?;
        ensure!(!id.is_empty(), "{service} has no container");
        Ok(Command::new("docker")
            .arg("exec")
            .arg(&id)
            .args(args)
            .output()?)
    }

    /// `curl URL` inside a service's container (its network namespace).
    fn curl(&self, service: &str, url: &str) -> Result<Output> {
        self.exec(service, &["curl", "-sS", "-m", "5", url])
    }

    /// From `service`, the connection to `url` is refused: curl's exit code 7 (the target listens on its own
    /// task's loopback only); any other failure means the check itself went wrong.
    fn refused(&self, service: &str, url: &str) -> Result<()> {
        let out = self.curl(service, url)?;
        ensure!(
            out.status.code() == Some(7),
            "{service} reached {url}, or the check went wrong: {:?} {}",
            out.status.code(),
            text(&out)
        );
        Ok(())
    }

    /// From `service`, `url` answers with greeting's word from host-a.
    fn greeting_answers(&self, service: &str, url: &str) -> Result<()> {
        let out = self.curl(service, url)?;
        ensure!(
            out.status.success() && text(&out).contains("(host-a)"),
            "greeting from {service} at {url}: {}",
            text(&out)
        );
        Ok(())
    }

    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    fn secrets(&self) -> PathBuf {
        compose_dir().join(".secrets").join(&self.project)
    }

    /// The management token up.sh bootstrapped.
    fn management(&self) -> Result<String> {
        let path = self.secrets().join("management.token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("no management token at {}", path.display()))?
            .trim()
            .to_string())
    }

    /// `GET path` on host-a's published API as the operator.
    fn api(&self, path: &str) -> Result<String> {
        let (code, body) = http_get_as(self.ui, path, Some(&self.management()?))?;
        ensure!(code == 200, "GET {path}: {code} {body}");
        Ok(body)
    }

    /// `weft ARGS` in a service's container as the operator: the management token arrives on stdin.
    fn weft_admin(&self, service: &str, args: &[&str]) -> Result<Output> {
        use std::io::Write;
        let id = self.compose(&["ps", "-q", service])?;
        let mut child = Command::new("docker")
            .args(["exec", "-i", &id, "weft"])
            .args(args)
            .args(["-token-file", "/dev/stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.management()?.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// The host paths mounted into a service's container.
    fn mounts(&self, service: &str) -> Result<Vec<String>> {
        let id = self.compose(&["ps", "-q", service])?;
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .Mounts}}{{.Source}}\n{{end}}",
                &id,
            ])
            .output()?;
        Ok(text(&out)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// curl in a throw-away container that joins a service's network namespace only (the application's view of the
    /// network, with none of its files, as an attacker inside it would have): the HTTP status and body, or curl's
    /// exit code as `Err`. Needs only Docker, not root.
    fn curl_from_netns(&self, service: &str, args: &[&str]) -> Result<(u16, String), i32> {
        let id = self.compose(&["ps", "-q", service]).map_err(|_| -1)?;
        let netns = format!("container:{id}");
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                &netns,
                "--entrypoint",
                "/bin/curl",
            ])
            .args([
                "weft-local/weft:latest",
                "-sS",
                "-m",
                "5",
                "-w",
                "\n%{http_code}",
            ])
            .args(args)
            .output()
            .map_err(|_| -1)?;
        if !out.status.success() {
            return Err(out.status.code().unwrap_or(-1));
        }
        let all = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = all.rsplit_once('\n').unwrap_or(("", &all));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    /// Calls through a public port; the greeter host of each answer.
    fn calls(&self, port: u16, n: usize) -> Result<Vec<String>> {
        let mut hosts = Vec::new();
        for i in 0..n {
            let (code, body) = http_get_path(port, "/").with_context(|| format!("call {i}"))?;
            ensure!(code == 200, "call {i}: {code} {body}");
            // "From host-b: Hello (host-a) Vesta (host-c)"
            let line = body.trim();
            let host = line
                .strip_prefix("From ")
                .and_then(|rest| rest.split(':').next())
                .with_context(|| format!("call {i}: not the greeter's line: {line:?}"))?;
            ensure!(
                line.contains("(host-a)") && line.contains("(host-c)"),
                "call {i}: greeting from host-a and name from host-c: {line:?}"
            );
            hosts.push(host.to_string());
        }
        Ok(hosts)
    }

    /// The labelled Docker objects of this project still present.
    fn leftovers(&self) -> Result<Vec<String>> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut left = Vec::new();
        for what in [
            vec!["ps", "-a", "-q", "--filter", &label],
            vec!["network", "ls", "-q", "--filter", &label],
            vec!["volume", "ls", "-q", "--filter", &label],
        ] {
            let out = Command::new("docker").args(&what).output()?;
            left.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(|id| format!("{} {id}", what[0])),
            );
        }
        Ok(left)
    }

    fn down(&mut self) -> Result<()> {
        let out = self.script("down.sh")?;
        ensure!(out.status.success(), "down.sh failed:\n{}", text(&out));
        self.removed = true;
        Ok(())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.removed {
            if let Ok(logs) = self.compose(&["logs", "--tail", "20"]) {
                eprintln!("--- deployment logs before teardown\n{logs}");
            }
            let _ = self.script("down.sh");
        }
    }
}

#[test]
fn the_container_deployment_serves_the_walkthrough_and_survives_failures() -> Result<()> {
    ensure!(
        docker::available(),
        "no Docker daemon answers: the container deployment test needs Docker"
    );
    for image in ["weft", "greeter", "nginx"] {
        let ok = Command::new("docker")
            .args(["image", "inspect", &format!("weft-local/{image}:latest")])
            .output()?
            .status
            .success();
        ensure!(
            ok,
            "image weft-local/{image} is missing: run deploy/compose/build-images.sh (scripts/test does)"
        );
    }
    let mut d = Deployment::up()?;

    // The nginx ingress: every call answered, by both greeter instances.
    let hosts: BTreeSet<String> = d.calls(d.ingress, 30)?.into_iter().collect();
    ensure!(
        hosts == BTreeSet::from(["host-b".to_string(), "host-c".to_string()]),
        "both greeter instances answer through the ingress: {hosts:?}"
    );
    // The built-in ingress gateway, the other way in.
    d.calls(d.gateway, 10)?;

    secured_by_default(&d)?;

    // The dashboard's nodes page lists the six Weft nodes (for the printed token; nothing without one).
    let (code, anonymous) = http_get_path(d.ui, "/ui/dc1/nodes")?;
    ensure!(
        !anonymous.contains("data-node=\""),
        "the nodes page shows nodes without a token: {code}"
    );
    let page = d.api("/ui/dc1/nodes")?;
    let nodes: BTreeSet<String> = page
        .split("data-node=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    let six: BTreeSet<String> = [
        "server-1", "server-2", "server-3", "host-a", "host-b", "host-c",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ensure!(nodes == six, "nodes page lists {nodes:?}");

    // Each task's sidecar container runs `weft connect proxy`, which handed over to the image's weft-sidecar.
    for sidecar in ["greeting-sidecar", "greeter-1-sidecar", "ingress-sidecar"] {
        let id = d.compose(&["ps", "-q", sidecar])?;
        let pid = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Pid}}", &id])
            .output()?;
        let pid: u32 = text(&pid).trim().parse()?;
        let exe = weft_testkit::binary::executable_of(pid)?;
        ensure!(
            exe.ends_with("bin/weft-sidecar"),
            "{sidecar} runs {}",
            exe.display()
        );
    }

    // Isolation: from greeter-1's task, greeting's application port is unreachable; its sidecar upstream works.
    d.refused("greeter-1-sidecar", &format!("http://{}:9001/", d.ip(31)))?;
    // The same application does answer inside its own task, and through greeter-1's sidecar.
    d.greeting_answers("greeting-sidecar", "http://127.0.0.1:9001/")?;
    d.greeting_answers("greeter-1-sidecar", "http://127.0.0.1:9191/")?;
    // Nor can a host reach an application.
    d.refused("host-b", &format!("http://{}:9000/", d.ip(33)))?;

    // One greeter task stops: every later call is answered, by the other instance.
    d.compose(&["stop", "greeter-2-sidecar", "greeter-2"])?;
    let hosts: BTreeSet<String> = d.calls(d.ingress, 30)?.into_iter().collect();
    ensure!(hosts == BTreeSet::from(["host-b".to_string()]), "{hosts:?}");

    // The leader server stops: another is elected, writes and calls go on.
    let leader = d.api("/v1/status/leader")?;
    let index = (1..=3)
        .find(|i| leader.contains(&format!("{}:8300", d.ip(10 + i))))
        .with_context(|| format!("leader {leader} is not a server"))?;
    let old = format!("server-{index}");
    d.compose(&["stop", &old])?;
    eventually_sync(Duration::from_secs(30), || -> Result<()> {
        let now = d.api("/v1/status/leader")?;
        ensure!(now.contains(":8300") && now != leader, "leader: {now}");
        Ok(())
    })?;
    let put = d.weft_admin(
        "host-a",
        &["kv", "put", "compose/after-failover", "written"],
    )?;
    ensure!(put.status.success(), "write after failover: {}", text(&put));
    d.calls(d.ingress, 10)?;

    // It comes back: it rejoins as a voter and catches up with what was written while it was away.
    d.compose(&["start", &old])?;
    eventually_sync(Duration::from_secs(60), || -> Result<()> {
        let header = format!("X-Consul-Token: {}", d.management()?);
        let got = d.exec(
            &old,
            &[
                "curl",
                "-sS",
                "-H",
                &header,
                "localhost:8500/v1/kv/compose/after-failover?stale&raw",
            ],
        )?;
        ensure!(text(&got) == "written", "{}", text(&got));
        // Autopilot counts it healthy again: it is a voter in contact with the leader.
        let health: serde_json::Value =
            serde_json::from_str(&d.api("/v1/operator/autopilot/health")?)?;
        let back = health["Servers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["Name"] == old.as_str() && s["Healthy"] == true && s["Voter"] == true);
        ensure!(back, "{old} is not a healthy voter: {health}");
        Ok(())
    })?;
    d.calls(d.ingress, 10)?;

    // Down leaves nothing behind.
    let secrets = d.secrets();
    d.down()?;
    let left = d.leftovers()?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    ensure!(!secrets.exists(), "down.sh left {}", secrets.display());
    Ok(())
}

/// What a compromised application container can do, and what the operator still can.
fn secured_by_default(d: &Deployment) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| -> Result<u32> {
        Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
    };
    let secrets = d.secrets();
    ensure!(
        mode(&secrets)? == 0o700,
        "{} is not 0700",
        secrets.display()
    );
    for file in [
        "management.token",
        "gossip.key",
        "greeting/token",
        "host-a/key.pem",
    ] {
        let m = mode(&secrets.join(file))?;
        ensure!(m & 0o077 == 0, "{file} is readable by others: {m:o}");
    }
    // The dashboard's port is published on the host's loopback only.
    let id = d.compose(&["ps", "-q", "host-a"])?;
    let port = Command::new("docker")
        .args(["port", &id, "8500"])
        .output()?;
    let published = text(&port);
    ensure!(
        !published.is_empty()
            && published
                .lines()
                .all(|l| l.trim().starts_with("127.0.0.1:")),
        "the dashboard is published on {published:?}"
    );
    // Applications mount no secret; each sidecar only its own service's directory.
    for app in ["greeting", "name", "greeter-1", "greeter-2", "ingress"] {
        let mounts = d.mounts(app)?;
        ensure!(
            !mounts.iter().any(|m| m.contains(".secrets")),
            "{app} mounts {mounts:?}"
        );
    }
    for (sidecar, service) in [
        ("greeting-sidecar", "greeting"),
        ("greeter-1-sidecar", "greeter"),
        ("ingress-sidecar", "ingress"),
        ("gateway", "ingress-gateway"),
    ] {
        let mounted: Vec<String> = d
            .mounts(sidecar)?
            .into_iter()
            .filter(|m| m.contains(".secrets"))
            .collect();
        let own = format!("/.secrets/{}/{service}", d.project);
        ensure!(
            mounted.len() == 1 && mounted[0].ends_with(&own),
            "{sidecar} mounts {mounted:?}"
        );
    }
    // From inside greeting's network namespace, every agent refuses what an attacker would want.
    d.weft_admin("host-a", &["kv", "put", "compose/secret", "s3cret"])
        .map(|o| o.status.success())?
        .then_some(())
        .context("kv put as the operator")?;
    for host in [21, 22, 23] {
        let base = format!("http://{}:8500", d.ip(host));
        for (what, args) in [
            (
                "greeter's leaf",
                vec![format!("{base}/v1/agent/connect/ca/leaf/greeter")],
            ),
            (
                "an intention * -> *",
                vec![
                    "-X".into(),
                    "PUT".into(),
                    "-d".into(),
                    r#"{"Action": "allow"}"#.into(),
                    format!("{base}/v1/connect/intentions/exact?source=*&destination=*"),
                ],
            ),
            ("a KV read", vec![format!("{base}/v1/kv/compose/secret")]),
            ("a snapshot", vec![format!("{base}/v1/snapshot")]),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let got = d.curl_from_netns("greeting", &args);
            ensure!(
                matches!(&got, Ok((403, _))),
                "from greeting's namespace, {what} on host .{host}: {got:?}"
            );
        }
    }
    let intentions = d.api("/v1/connect/intentions")?;
    ensure!(
        !intentions.contains(r#""SourceName":"*""#),
        "an intention from * exists: {intentions}"
    );
    // The server RPC port: nothing without a certificate from the deployment's CA, TLS or not.
    for scheme in ["https", "http"] {
        let url = format!("{scheme}://{}:8300/v1/status/leader", d.ip(11));
        let got = d.curl_from_netns("greeting", &["-k", &url]);
        ensure!(
            !matches!(&got, Ok((200, _))),
            "RPC port answered {url} without a certificate: {got:?}"
        );
    }
    // The operator's own calls: the test proxy with its token file, in host-a's container.
    let id = d.compose(&["ps", "-q", "host-a"])?;
    let started = Command::new("docker")
        .args([
            "exec",
            "-d",
            &id,
            "weft",
            "connect",
            "proxy",
            "-service",
            "test",
            "-upstream",
            "greeter:8080",
            "-token-file",
            "/etc/weft/secret/test.token",
        ])
        .output()?;
    ensure!(started.status.success(), "test proxy: {}", text(&started));
    eventually_sync(Duration::from_secs(30), || -> Result<()> {
        let out = d.curl("host-a", "http://127.0.0.1:8080/")?;
        ensure!(text(&out).starts_with("From "), "{}", text(&out));
        Ok(())
    })?;
    Ok(())
}
