//! The walkthrough as a user runs it: `weft demo` comes up, `curl localhost:<test-port>` answers with the
//! greeter's line from both instances, the ingress (nginx, and Weft's own gateway) answers the same, a deny
//! intention is named in the greeter's answer, a dead greeter instance is routed around, and Ctrl-C leaves an
//! empty catalog and free ports. With `-acl`, the same walkthrough runs under default-deny ACLs: nothing answers
//! without a token, the printed management token works, and a service's own token gets only its own leaf.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_testkit::{eventually_sync, signal, weft_binary, Signal, TempDir};

struct Demo {
    child: Child,
    log: std::path::PathBuf,
    _dir: TempDir,
    http: u16,
    test: u16,
    ingress: u16,
    dns: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Ask for the orderly teardown first so no child process outlives the test.
            let _ = signal(self.child.id(), Signal::Term);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Demo {
    fn start(ingress: &str, extra: &[&str]) -> Result<Demo> {
        let dir = TempDir::new()?;
        let log = dir.path().join("demo.log");
        let out = std::fs::File::create(&log)?;
        let (http, test, ingress_port) = (free_port(), free_port(), free_port());
        let dns = free_port();
        let child = Command::new(weft_binary()?)
            .args([
                "demo",
                "-http-port",
                &http.to_string(),
                "-test-port",
                &test.to_string(),
                "-dns-port",
                &dns.to_string(),
            ])
            .args([
                "-ingress-port",
                &ingress_port.to_string(),
                "-ingress",
                ingress,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let demo = Demo {
            child,
            log,
            _dir: dir,
            http,
            test,
            ingress: ingress_port,
            dns,
        };
        eventually_sync(Duration::from_secs(120), || {
            demo.output().contains("Weft demo ready")
        })
        .with_context(|| format!("demo did not come up:\n{}", demo.output()))?;
        Ok(demo)
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Child processes of the demo whose command line contains `pattern`.
    fn children(&self, pattern: &str) -> Vec<u32> {
        let out = Command::new("pgrep")
            .args(["-P", &self.child.id().to_string(), "-f", pattern])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

fn get(port: u16) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("not HTTP: {raw:?}")
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status")?;
    Ok((code, body.trim().to_string()))
}

/// `From <host-b|host-c>: <Greeting> (host-a) <Name> (host-c)`; returns the greeter's host.
fn greeter_host(line: &str) -> Result<String> {
    let Some(rest) = line.strip_prefix("From ") else {
        bail!("bad line {line:?}")
    };
    let Some((host, words)) = rest.split_once(": ") else {
        bail!("bad line {line:?}")
    };
    if !["host-b", "host-c"].contains(&host)
        || !words.contains(" (host-a) ")
        || !words.ends_with(" (host-c)")
    {
        bail!("bad line {line:?}");
    }
    Ok(host.to_string())
}

/// 20 calls through the test proxy: all answered, by both greeter instances.
fn both_greeters_answer(port: u16) -> Result<()> {
    let mut hosts = HashSet::new();
    for _ in 0..20 {
        let (code, line) = get(port)?;
        assert_eq!(code, 200, "{line}");
        hosts.insert(greeter_host(&line)?);
    }
    assert_eq!(hosts.len(), 2, "both greeter instances answer: {hosts:?}");
    Ok(())
}

/// `weft intention create <action> -replace greeter name` against the demo's agent, with `extra` flags.
fn greeter_to_name(demo: &Demo, action: &str, extra: &[&str]) -> Result<std::process::Output> {
    let agent = format!("127.0.0.1:{}", demo.http);
    Ok(Command::new(weft_binary()?)
        .args(["intention", "create", action, "-replace", "greeter", "name"])
        .args(["-http-addr", &agent])
        .args(extra)
        .output()?)
}

/// The greeter names the refused upstream once a deny intention reaches its sidecar.
fn wait_for_refusal_by_intention(demo: &Demo) -> Result<()> {
    eventually_sync(Duration::from_secs(10), || -> Result<bool> {
        let (code, body) = get(demo.test)?;
        Ok(code == 502 && body == "name: refused by intention")
    })
}

fn walkthrough(ingress: &str) -> Result<()> {
    let demo = Demo::start(ingress, &[])?;
    let out = demo.output();
    assert!(out.contains(&format!("localhost:{}", demo.http)), "{out}");
    both_greeters_answer(demo.test)?;
    // The README's DNS line: both greeter instances, by SRV, as the demo prints it.
    let dig = format!("dig @127.0.0.1 -p {} greeter.service.consul SRV", demo.dns);
    assert!(out.contains(&dig), "{out}");
    let srv = std::process::Command::new("dig")
        .args(["@127.0.0.1", "-p", &demo.dns.to_string(), "+short"])
        .args(["greeter.service.consul", "SRV"])
        .output()?;
    let srv = String::from_utf8_lossy(&srv.stdout);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    let (code, line) = get(demo.ingress)?;
    assert_eq!(code, 200, "ingress: {line}\n{}", demo.output());
    greeter_host(&line)?;
    if ingress == "builtin" {
        // Weft's own gateway, as Consul's API describes gateways: found by the service it carries, and listing it.
        let (code, body) =
            weft_testkit::net::http_get_path(demo.http, "/v1/health/ingress/greeter?passing=1")?;
        let gateways: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(code, 200, "{body}");
        assert_eq!(gateways[0]["Service"]["Kind"], "ingress-gateway", "{body}");
        let gateway = gateways[0]["Service"]["Service"]
            .as_str()
            .unwrap_or_default();
        let (_, body) = weft_testkit::net::http_get_path(
            demo.http,
            &format!("/v1/catalog/gateway-services/{gateway}"),
        )?;
        let carried: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(carried[0]["Service"]["Name"], "greeter", "{body}");
    }

    // Deny greeter -> name: the greeter names the refused upstream; greeting still works.
    let deny = greeter_to_name(&demo, "-deny", &[])?;
    assert!(deny.status.success(), "{deny:?}");
    wait_for_refusal_by_intention(&demo)?;
    let allow = greeter_to_name(&demo, "-allow", &[])?;
    assert!(allow.status.success(), "{allow:?}");
    eventually_sync(Duration::from_secs(10), || -> Result<bool> {
        Ok(get(demo.test)?.0 == 200)
    })?;

    // Kill the greeter on host-b: every later call is answered by host-c.
    let pids = demo.children("greeter-demo greeter .*-node host-b");
    assert_eq!(pids.len(), 1, "{pids:?}");
    signal(pids[0], Signal::Kill)?;
    // Until the greeter's health check fails, a call may still reach host-b's sidecar, which then finds no
    // application and closes the connection: wait for the catalog to drop it first.
    eventually_sync(Duration::from_secs(20), || -> Result<bool> {
        let (code, body) =
            weft_testkit::net::http_get_path(demo.http, "/v1/health/connect/greeter?passing=1")?;
        let healthy: serde_json::Value = serde_json::from_str(&body)?;
        Ok(code == 200 && healthy.as_array().map(Vec::len) == Some(1))
    })
    .with_context(|| demo.output())?;
    eventually_sync(Duration::from_secs(20), || -> Result<bool> {
        let mut all = true;
        for _ in 0..5 {
            let (code, line) = get(demo.test)?;
            all &= code == 200 && greeter_host(&line)? == "host-c";
        }
        Ok(all)
    })
    .with_context(|| demo.output())?;
    for _ in 0..10 {
        let (code, line) = get(demo.test)?;
        assert_eq!((code, greeter_host(&line)?), (200, "host-c".to_string()));
    }

    stop(demo)
}

/// Ctrl-C: everything deregistered, every port free again.
fn stop(mut demo: Demo) -> Result<()> {
    signal(demo.child.id(), Signal::Int)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = demo.child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("demo did not stop:\n{}", demo.output());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = demo.output();
    assert!(status.success(), "{status:?}\n{out}");
    assert!(out.contains("Services left in the catalog: none"), "{out}");
    for port in [demo.http, demo.test, demo.ingress] {
        TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("port {port} still in use"))?;
    }
    Ok(())
}

#[test]
fn walkthrough_with_the_builtin_ingress() -> Result<()> {
    walkthrough("builtin")
}

#[test]
fn walkthrough_with_nginx() -> Result<()> {
    if !std::path::Path::new("/usr/sbin/nginx").exists() {
        // scripts/test installs nginx; a machine without it cannot run this peer.
        bail!("nginx is not installed: run ./scripts/test, which installs it");
    }
    walkthrough("nginx")
}

#[test]
fn walkthrough_with_acls() -> Result<()> {
    let demo = Demo::start("builtin", &["-acl"])?;
    let out = demo.output();
    let management = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Management token: "))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no management token printed:\n{out}"))?
        .to_string();
    let dir = std::path::Path::new(&management)
        .parent()
        .context("token dir")?
        .to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [
            management.clone(),
            dir.join("greeting.token").display().to_string(),
        ] {
            let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
    }
    let root = std::fs::read_to_string(&management)?.trim().to_string();
    // The mesh works: the test proxy and the ingress, each on its own token.
    both_greeters_answer(demo.test)?;
    assert_eq!(get(demo.ingress)?.0, 200);
    // Without a token the catalog shows nothing; with the management token, both greeters.
    let path = "/v1/health/connect/greeter?passing=1";
    let (code, anonymous) = weft_testkit::net::http_get_path(demo.http, path)?;
    assert!(
        code == 403 || anonymous.trim() == "[]",
        "{code} {anonymous}"
    );
    let (code, body) = weft_testkit::net::http_get_as(demo.http, path, Some(&root))?;
    let listed: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (code, listed.as_array().map(Vec::len)),
        (200, Some(2)),
        "{body}"
    );
    // A service's own token: its leaf, not another service's.
    let greeting = std::fs::read_to_string(dir.join("greeting.token"))?;
    let greeting = greeting.trim();
    let leaf = |service: &str| {
        weft_testkit::net::http_get_as(
            demo.http,
            &format!("/v1/agent/connect/ca/leaf/{service}"),
            Some(greeting),
        )
        .map(|(code, _)| code)
    };
    assert_eq!(leaf("greeting")?, 200);
    assert_eq!(leaf("greeter")?, 403);
    // DNS answers through the agent's dns token.
    let srv = Command::new("dig")
        .args(["@127.0.0.1", "-p", &demo.dns.to_string(), "+short"])
        .args(["greeter.service.consul", "SRV"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&srv.stdout).lines().count(), 2);
    // The CLI needs the token: refused without, done with the printed file.
    let refused = greeter_to_name(&demo, "-deny", &[])?;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403"),
        "{refused:?}"
    );
    assert_eq!(get(demo.test)?.0, 200, "the refused write changed nothing");
    let with_token = greeter_to_name(&demo, "-deny", &["-token-file", &management])?;
    assert!(with_token.status.success(), "{with_token:?}");
    wait_for_refusal_by_intention(&demo)?;
    stop(demo)
}
