//! The processes a Connect test runs beside its agents: the walkthrough's `greeting` service, a sidecar for a
//! registered service, and a client proxy with one upstream. Each is killed when its [`Spawned`] drops.

use crate::binary::weft_binary;
use crate::net::strings;
use crate::process::Spawned;
use anyhow::{bail, Result};

/// `greeter-demo greeting -listen 127.0.0.1:PORT -node NODE` (built next to `weft`).
pub fn greeting_app(port: u16, node: &str) -> Result<Spawned> {
    let greeter = weft_binary()?.with_file_name("greeter-demo");
    if !greeter.is_file() {
        bail!("build greeter-demo first: cargo build -p greeter-demo");
    }
    let listen = format!("127.0.0.1:{port}");
    Spawned::start(
        &greeter,
        &strings(&["greeting", "-listen", &listen, "-node", node]),
    )
}

/// `weft connect proxy -sidecar-for SERVICE_ID -http-addr AGENT`.
pub fn sidecar_for(service_id: &str, agent: &str) -> Result<Spawned> {
    sidecar_for_with(service_id, agent, &[])
}

/// [`sidecar_for`] with more flags.
pub fn sidecar_for_with(service_id: &str, agent: &str, extra: &[&str]) -> Result<Spawned> {
    let mut args = strings(&[
        "connect",
        "proxy",
        "-sidecar-for",
        service_id,
        "-http-addr",
        agent,
    ]);
    args.extend(strings(extra));
    Spawned::start(&weft_binary()?, &args)
}

/// A proxy's counter from its `-metrics-addr` endpoint: `weft_proxy_refusals_total` for `reason`.
pub fn refusals(metrics_port: u16, reason: &str) -> Result<u64> {
    let (code, body) = crate::net::http_get_path(metrics_port, "/metrics")?;
    anyhow::ensure!(code == 200, "GET /metrics: {code} {body}");
    let label = format!(",reason=\"{reason}\"}} ");
    body.lines()
        .filter(|l| l.starts_with("weft_proxy_refusals_total{"))
        .find_map(|l| {
            l.split_once(&label)
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no refusal counter for {reason} in:\n{body}"))
}

/// `weft connect proxy -service SERVICE -upstream DEST:PORT -http-addr AGENT`.
pub fn upstream_proxy(service: &str, destination: &str, port: u16, agent: &str) -> Result<Spawned> {
    let upstream = format!("{destination}:{port}");
    Spawned::start(
        &weft_binary()?,
        &strings(&[
            "connect",
            "proxy",
            "-service",
            service,
            "-upstream",
            &upstream,
            "-http-addr",
            agent,
        ]),
    )
}
