//! Check runners: one task per check, probing on its interval and reporting through `Inner::set_check_status`,
//! plus the reaper behind `DeregisterCriticalServiceAfter`. Tasks hold a weak handle, so a dropped agent stops them.

use crate::{AgentError, Inner, REAP_INTERVAL};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weft_types::{CheckDefinition, CheckKind, CheckStatus};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn spawn(
    agent: Weak<Inner>,
    id: String,
    kind: CheckKind,
    def: CheckDefinition,
) -> Option<AbortHandle> {
    tokio::runtime::Handle::try_current().ok()?;
    let handle = match kind {
        CheckKind::Ttl(ttl) => tokio::spawn(run_ttl(agent, id, ttl)),
        CheckKind::Http { url, interval } => tokio::spawn(run_http(agent, id, url, interval, def)),
        CheckKind::Tcp { address, interval } => {
            tokio::spawn(run_tcp(agent, id, address, interval, def))
        }
        CheckKind::Udp { address, interval } => {
            tokio::spawn(run_udp(agent, id, address, interval, def))
        }
        CheckKind::AliasService(service) => tokio::spawn(run_alias(agent, id, service)),
        CheckKind::Script { args, interval } => tokio::spawn(run_command(
            agent,
            id,
            interval,
            def,
            move |timeout, limit| {
                let args = args.clone();
                async move { run_script_once(&args, timeout, limit).await }
            },
        )),
        CheckKind::Docker {
            container,
            shell,
            args,
            interval,
        } => tokio::spawn(run_command(
            agent,
            id,
            interval,
            def,
            move |timeout, limit| {
                let (container, shell, args) = (container.clone(), shell.clone(), args.clone());
                async move {
                    crate::docker_check::probe(&container, &shell, &args, timeout, limit).await
                }
            },
        )),
        CheckKind::Grpc { target, interval } => {
            tokio::spawn(run_grpc(agent, id, target, interval, def))
        }
        CheckKind::H2Ping { target, interval } => {
            tokio::spawn(run_h2ping(agent, id, target, interval, def))
        }
        CheckKind::Manual => return None,
    };
    Some(handle.abort_handle())
}

/// Runs `probe` every `interval` and records its verdict, until the agent is gone.
async fn every<F, Fut>(agent: Weak<Inner>, id: String, interval: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (CheckStatus, String)>,
{
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let (status, output) = probe().await;
        let Some(inner) = agent.upgrade() else { return };
        report(&inner, &id, status, &output).await;
    }
}

async fn report(agent: &Arc<Inner>, id: &str, status: CheckStatus, output: &str) {
    if let Err(e) = agent.set_check_status(id, status, output).await {
        tracing::warn!(check = %id, error = %e, "could not record check result");
    }
}

async fn run_ttl(agent: Weak<Inner>, id: String, ttl: Duration) {
    loop {
        let Some(inner) = agent.upgrade() else { return };
        let deadline = inner.local().checks.get(&id).and_then(|c| c.ttl_deadline);
        let Some(deadline) = deadline else { return };
        let now = Instant::now();
        if now >= deadline {
            report(&inner, &id, CheckStatus::Critical, "TTL expired").await;
            drop(inner);
            // Nothing to do until an update pushes the deadline; look again one TTL later.
            tokio::time::sleep(ttl).await;
        } else {
            drop(inner);
            tokio::time::sleep_until(deadline).await;
        }
    }
}

async fn run_http(
    agent: Weak<Inner>,
    id: String,
    url: String,
    interval: Duration,
    def: CheckDefinition,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = timeout_of(&def, DEFAULT_TIMEOUT);
    let redirects = if def.disable_redirects {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::limited(10)
    };
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(redirects)
        .tls_danger_accept_invalid_certs(def.tls_skip_verify);
    if def.http.starts_with("http://") {
        // Plain HTTP needs no trust roots: a host without a CA bundle (a scratch container) must not fail.
        builder = builder.tls_certs_only(Vec::new());
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            if let Some(inner) = agent.upgrade() {
                report(
                    &inner,
                    &id,
                    CheckStatus::Critical,
                    &format!("cannot build HTTP client: {e}"),
                )
                .await;
            }
            return;
        }
    };
    let method_name = if def.method.is_empty() {
        "GET".to_string()
    } else {
        def.method.to_uppercase()
    };
    let method =
        reqwest::Method::from_bytes(method_name.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let mut request = client
            .request(method.clone(), &url)
            .header("User-Agent", "Weft Health Check");
        for (name, values) in &def.header {
            for value in values {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        if !def.body.is_empty() {
            request = request.body(def.body.clone());
        }
        let (status, output) = match request.send().await {
            Ok(resp) => {
                let code = resp.status();
                let body = read_at_most(resp, output_limit(def.output_max_size)).await;
                let status = if code.is_success() {
                    CheckStatus::Passing
                } else if code.as_u16() == 429 {
                    CheckStatus::Warning
                } else {
                    CheckStatus::Critical
                };
                (
                    status,
                    format!("HTTP {method_name} {url}: {code} Output: {body}"),
                )
            }
            Err(e) => (CheckStatus::Critical, format!("Get \"{url}\": {e}")),
        };
        let Some(inner) = agent.upgrade() else { return };
        let max = def.output_max_size;
        report(&inner, &id, status, &crate::truncate_output(&output, max)).await;
    }
}

/// The check's `Timeout`, or `default` when it sets none.
fn timeout_of(def: &CheckDefinition, default: Duration) -> Duration {
    def.timeout.filter(|t| !t.is_zero()).unwrap_or(default)
}

/// The most of a check's output kept (Consul's `check_output_max_size`, 4 KB by default).
fn output_limit(max: usize) -> usize {
    if max == 0 {
        4096
    } else {
        max.min(MAX_OUTPUT)
    }
}

/// The most output any check keeps, whatever its `OutputMaxSize` asks: a registrant must not make the agent buffer
/// without bound.
const MAX_OUTPUT: usize = 1024 * 1024;

/// Up to `limit` bytes of a response body (a little more, to show the output was cut). The rest is never read: the
/// response is dropped, and its connection with it, so a check answering 300 MiB costs the agent 4 KB.
async fn read_at_most(resp: reqwest::Response, limit: usize) -> String {
    String::from_utf8_lossy(&read_bytes_at_most(resp, limit).await).into_owned()
}

/// Up to `limit` bytes (and one more, to show there were more) of a response body.
async fn read_bytes_at_most(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() <= limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit + 1 - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

async fn run_tcp(
    agent: Weak<Inner>,
    id: String,
    address: String,
    interval: Duration,
    def: CheckDefinition,
) {
    let timeout = timeout_of(&def, DEFAULT_TIMEOUT);
    every(agent, id, interval, move || {
        let address = address.clone();
        async move {
            let attempt =
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address.as_str()))
                    .await;
            match attempt {
                Ok(Ok(_)) => (
                    CheckStatus::Passing,
                    format!("TCP connect {address}: Success"),
                ),
                Ok(Err(e)) => (CheckStatus::Critical, format!("dial tcp {address}: {e}")),
                Err(_) => (
                    CheckStatus::Critical,
                    format!("dial tcp {address}: i/o timeout"),
                ),
            }
        }
    })
    .await;
}

/// Sends one datagram to `address` every interval and waits up to the timeout for an answer, as Consul's UDP
/// checks do: an answer, or silence (UDP promises no reply), is passing; an error, such as the ICMP "port
/// unreachable" a closed port sends back, is critical.
async fn run_udp(
    agent: Weak<Inner>,
    id: String,
    address: String,
    interval: Duration,
    def: CheckDefinition,
) {
    let timeout = timeout_of(&def, DEFAULT_TIMEOUT);
    every(agent, id, interval, move || {
        let address = address.clone();
        async move {
            match udp_probe(&address, timeout).await {
                Ok(true) => (CheckStatus::Passing, format!("UDP {address}: answered")),
                Ok(false) => (
                    CheckStatus::Passing,
                    format!(
                        "UDP {address}: sent, no answer within the timeout (no error came back)"
                    ),
                ),
                Err(e) => (CheckStatus::Critical, format!("UDP {address}: {e}")),
            }
        }
    })
    .await;
}

/// One datagram to `address`: `Ok(true)` when something came back, `Ok(false)` on silence.
async fn udp_probe(address: &str, timeout: Duration) -> std::io::Result<bool> {
    let target = tokio::time::timeout(timeout, tokio::net::lookup_host(address))
        .await
        .map_err(|_| std::io::Error::other("resolving the address timed out"))??
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let local = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(b"Hello from Weft").await?;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(false),
    }
}

/// Asks `grpc.health.v1.Health/Check` every interval, over HTTP/2 in the clear or, with `GRPCUseTLS`, over TLS
/// (`TLSSkipVerify` honoured). SERVING is passing; anything else, or no answer, critical.
async fn run_grpc(
    agent: Weak<Inner>,
    id: String,
    target: String,
    interval: Duration,
    def: CheckDefinition,
) {
    use crate::grpc_check;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (addr, service) = grpc_check::split_target(&target);
    let scheme = if def.grpc_use_tls { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/grpc.health.v1.Health/Check");
    let mut builder = reqwest::Client::builder()
        .timeout(timeout_of(&def, grpc_check::DEFAULT_TIMEOUT))
        .http2_prior_knowledge()
        .tls_danger_accept_invalid_certs(def.tls_skip_verify);
    if !def.grpc_use_tls {
        builder = builder.tls_certs_only(Vec::new());
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            if let Some(inner) = agent.upgrade() {
                let output = format!("cannot build the gRPC client: {e}");
                report(&inner, &id, CheckStatus::Critical, &output).await;
            }
            return;
        }
    };
    let body = grpc_check::request_body(service);
    every(agent, id, interval, move || {
        let (client, url, body, target) =
            (client.clone(), url.clone(), body.clone(), target.clone());
        async move {
            let answer = client
                .post(&url)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("user-agent", "Weft Health Check")
                .body(body)
                .send()
                .await;
            match answer {
                Ok(resp) => {
                    let grpc_status = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    // A health answer is a few bytes; anything longer is not one.
                    let bytes = read_bytes_at_most(resp, 1024).await;
                    grpc_check::verdict(
                        &target,
                        grpc_check::serving_status(&bytes),
                        grpc_status.as_deref(),
                    )
                }
                Err(e) => (
                    CheckStatus::Critical,
                    format!("gRPC check {target}: {}", with_causes(&e)),
                ),
            }
        }
    })
    .await;
}

/// One HTTP/2 PING every interval (TLS unless `H2PingUseTLS` is false).
async fn run_h2ping(
    agent: Weak<Inner>,
    id: String,
    target: String,
    interval: Duration,
    def: CheckDefinition,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = timeout_of(&def, crate::h2ping::DEFAULT_TIMEOUT);
    let tls = def.h2ping_use_tls.unwrap_or(true);
    let skip_verify = def.tls_skip_verify;
    every(agent, id, interval, move || {
        let target = target.clone();
        async move { crate::h2ping::ping(&target, tls, skip_verify, timeout).await }
    })
    .await;
}

/// An error and what caused it, on one line (reqwest's own message names only the request).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A script check's default time limit (Consul's).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Script-like checks (a program; a command in a container), every interval, under the script timeout and output
/// limit. A program gets no stdin and at most the output limit of its stdout and stderr is kept (the rest is read
/// and dropped, so a chatty script never blocks on a full pipe nor grows the agent); past the timeout it is killed.
async fn run_command<F, Fut>(
    agent: Weak<Inner>,
    id: String,
    interval: Duration,
    def: CheckDefinition,
    run: F,
) where
    F: Fn(Duration, usize) -> Fut,
    Fut: std::future::Future<Output = (CheckStatus, String)>,
{
    let timeout = timeout_of(&def, SCRIPT_TIMEOUT);
    let limit = output_limit(def.output_max_size);
    let max = def.output_max_size;
    every(agent, id, interval, move || {
        let ran = run(timeout, limit);
        async move {
            let (status, output) = ran.await;
            (status, crate::truncate_output(&output, max))
        }
    })
    .await;
}

async fn run_script_once(
    args: &[String],
    timeout: Duration,
    limit: usize,
) -> (CheckStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (CheckStatus::Critical, "no program to run".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                CheckStatus::Critical,
                format!("Failed to run {program:?}: {e}"),
            )
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, limit),
            read_bounded(stderr, limit),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            // kill_on_drop ends it when `child` goes; kill now so the next run starts clean.
            let _ = child.start_kill();
            let _ = child.wait().await;
            (
                CheckStatus::Critical,
                format!(
                    "Timed out ({}) running check",
                    weft_types::duration::format_duration(timeout)
                ),
            )
        }
        Ok((out, err, status)) => {
            let mut output = out;
            output.push_str(&err);
            let status = match status.map(|s| s.code()) {
                Ok(Some(0)) => CheckStatus::Passing,
                Ok(Some(1)) => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            (status, output)
        }
    }
}

/// Up to `limit` bytes of a child's pipe; the rest is read and dropped until the pipe closes.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = (limit + 1).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Mirrors the health of a service on this agent, re-evaluated on every local change.
async fn run_alias(agent: Weak<Inner>, id: String, service_id: String) {
    let mut changes = match agent.upgrade() {
        Some(inner) => inner.changes.subscribe(),
        None => return,
    };
    loop {
        let Some(inner) = agent.upgrade() else { return };
        let (status, output) = {
            let local = inner.local();
            if !local.services.contains_key(&service_id) {
                (
                    CheckStatus::Critical,
                    format!("Service {service_id} could not be found on this agent"),
                )
            } else {
                let worst = local
                    .checks
                    .values()
                    .filter(|c| c.check.check_id != id && c.check.service_id == service_id)
                    .fold(CheckStatus::Passing, |acc, c| acc.worst(c.check.status));
                (
                    worst,
                    format!("All checks of service {service_id} are {worst}"),
                )
            }
        };
        report(&inner, &id, status, &output).await;
        drop(inner);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Deregisters services whose checks have been critical for longer than their `DeregisterCriticalServiceAfter`.
pub(crate) async fn reap_critical_services(agent: Weak<Inner>) {
    let mut ticker = tokio::time::interval(REAP_INTERVAL);
    loop {
        ticker.tick().await;
        let Some(inner) = agent.upgrade() else { return };
        let now = Instant::now();
        let doomed: Vec<String> = {
            let local = inner.local();
            local
                .checks
                .values()
                .filter(|c| !c.check.service_id.is_empty())
                .filter(|c| {
                    match (
                        c.definition.deregister_critical_service_after,
                        c.critical_since,
                    ) {
                        (Some(after), Some(since)) => now.duration_since(since) >= after,
                        _ => false,
                    }
                })
                .map(|c| c.check.service_id.clone())
                .collect()
        };
        for service_id in doomed {
            tracing::info!(service = %service_id, "check critical past DeregisterCriticalServiceAfter; deregistering");
            let agent = crate::Agent {
                inner: inner.clone(),
            };
            match agent.deregister_service(&service_id).await {
                Ok(()) | Err(AgentError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(service = %service_id, error = %e, "could not reap service")
                }
            }
        }
    }
}
