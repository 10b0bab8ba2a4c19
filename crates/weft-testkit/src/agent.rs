//! [`DevAgent`]: one real `weft agent -dev` process on an ephemeral HTTP port, owned by one test.
//!
//! The agent is started with `-http-port 0` and a unique `-node` name; its address is read from the
//! `HTTP API: http://...` banner line on stdout. The child is SIGKILLed on drop so a failing (panicking) test never
//! leaves an agent behind; `stop_gracefully` exercises the real SIGTERM path instead.

use crate::binary::weft_binary;
use crate::http::{Http, Response};
use crate::output::OutputLog;
use crate::signal::{signal, Signal};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long an agent may take to print its HTTP banner.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERMed agent may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The banner line carrying the HTTP address.
const BANNER: &str = "HTTP API: http://";
const DNS_BANNER: &str = "DNS: udp+tcp://";

static NODE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A node name no other agent of this or a concurrent test run uses.
pub fn unique_node_name() -> String {
    format!(
        "weft-test-{}-{}",
        std::process::id(),
        NODE_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for starting a [`DevAgent`].
#[derive(Debug, Clone, Default)]
pub struct DevAgentBuilder {
    node: Option<String>,
    /// Leave out `-dev`: a cluster server or client agent (the caller passes `-data-dir` and friends).
    clustered: bool,
    args: Vec<OsString>,
    config_files: Vec<PathBuf>,
}

impl DevAgentBuilder {
    /// The node name (default: a unique `weft-test-<pid>-<n>`).
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node = Some(name.into());
        self
    }

    /// Starts a cluster member instead of a dev agent: `-dev` is left out.
    pub fn clustered(mut self) -> Self {
        self.clustered = true;
        self
    }

    /// Adds `-config-file <path>`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_files.push(path.into());
        self
    }

    /// Adds one extra argument after `agent -dev -http-port 0 -node <name>`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Spawns the agent and waits (up to 10 s) for its HTTP banner.
    pub fn start(self) -> Result<DevAgent> {
        let bin = weft_binary()?;
        // Everything that can fail comes before the spawn, so a failure cannot orphan the child.
        let http = Http::new()?;
        let node = self.node.unwrap_or_else(unique_node_name);
        let mut cmd = Command::new(&bin);
        cmd.arg("agent");
        if !self.clustered {
            cmd.arg("-dev");
        }
        cmd.args(["-http-port", "0", "-node"]).arg(&node);
        // DNS on a free port too, unless the test chooses (parallel agents must not all take 8600).
        if !self.args.iter().any(|a| a == "-dns-port") {
            cmd.args(["-dns-port", "0"]);
        }
        for f in &self.config_files {
            cmd.arg("-config-file").arg(f);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let output = OutputLog::new();
        let (tx, rx) = channel();
        if let Some(stdout) = child.stdout.take() {
            output.drain(stdout, "stdout", Some(tx));
        }
        if let Some(stderr) = child.stderr.take() {
            output.drain(stderr, "stderr", None);
        }
        // From here on the child is owned by `agent`, so any early return kills it.
        let mut agent = DevAgent {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dns: None,
            node,
            output,
            http,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(DNS_BANNER) {
                        agent.dns = line[at + DNS_BANNER.len()..].trim().parse().ok();
                    }
                    if let Some(at) = line.find(BANNER) {
                        let url = line[at + BANNER.len()..].trim();
                        agent.addr = url.parse().with_context(|| {
                            format!("cannot parse the agent's HTTP address from {line:?}")
                        })?;
                        return Ok(agent);
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!(
                    "weft agent did not print its HTTP address within {START_TIMEOUT:?}; output:\n{}",
                    agent.output.recent()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = agent.wait_for_exit(Duration::from_secs(2)).ok();
                    bail!(
                        "weft agent closed stdout before printing its HTTP address (exit: {status:?}); output:\n{}",
                        agent.output.recent()
                    )
                }
            }
        }
    }
}

/// A running `weft agent -dev`; killed (SIGKILL) and reaped on drop.
pub struct DevAgent {
    child: Child,
    addr: SocketAddr,
    /// Where its DNS listens (UDP and TCP), from its banner.
    dns: Option<SocketAddr>,
    node: String,
    output: OutputLog,
    http: Http,
}

impl DevAgent {
    /// Starts an agent with the defaults (`agent -dev -http-port 0 -node <unique>`).
    pub fn start() -> Result<DevAgent> {
        DevAgent::builder().start()
    }

    pub fn builder() -> DevAgentBuilder {
        DevAgentBuilder::default()
    }

    /// The HTTP API's address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the agent's DNS listens (UDP and TCP); `None` when it serves none.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns
    }

    /// `http://127.0.0.1:PORT` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The node name the agent was started with.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The agent's last lines of stdout and stderr.
    pub fn recent_output(&self) -> String {
        self.output.recent()
    }

    /// Whether the agent printed a line containing `needle` (among its last 20,000).
    pub fn said(&self, needle: &str) -> bool {
        self.output.contains(needle)
    }

    /// Waits (up to 20 s) until the leader has set ACLs up: the `management` token resolves.
    pub async fn wait_for_acls(&self, management: &str) -> Result<()> {
        crate::eventually(Duration::from_secs(20), async || -> Result<bool> {
            let r = self
                .get(&format!("/v1/acl/token/self?token={management}"))
                .await?;
            Ok(r.status == 200)
        })
        .await
    }

    /// The raw HTTP client, bound to nothing: pass full URLs (see [`DevAgent::url`]).
    pub fn http(&self) -> &Http {
        &self.http
    }

    pub async fn get(&self, path: &str) -> Result<Response> {
        self.http.request("GET", &self.url(path), None).await
    }

    pub async fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Result<Response> {
        self.http
            .request("PUT", &self.url(path), Some(body.into()))
            .await
    }

    /// PUT with `value` serialized as the JSON body.
    pub async fn put_json(&self, path: &str, value: &serde_json::Value) -> Result<Response> {
        self.put(path, serde_json::to_vec(value)?).await
    }

    /// PUT with no body at all.
    pub async fn put_empty(&self, path: &str) -> Result<Response> {
        self.http.request("PUT", &self.url(path), None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Response> {
        self.http.request("DELETE", &self.url(path), None).await
    }

    /// Any method, any body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        self.http.request(method, &self.url(path), body).await
    }

    /// Whether the process has exited (without waiting).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .context("cannot poll the agent process")
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "weft agent (pid {}) still running after {timeout:?}; output:\n{}",
                    self.pid(),
                    self.output.recent()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends `sig` (SIGTERM, SIGHUP, ...) to the agent.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        signal(self.pid(), sig).context("cannot signal the weft agent")
    }

    /// Sends SIGTERM and waits up to 5 s for the agent to exit; returns its exit status (the caller asserts on it).
    pub fn stop_gracefully(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::Term)?;
        self.wait_for_exit(STOP_TIMEOUT)
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
