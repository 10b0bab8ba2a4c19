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
    Spawned::start(
        &weft_binary()?,
        &strings(&[
            "connect",
            "proxy",
            "-sidecar-for",
            service_id,
            "-http-addr",
            agent,
        ]),
    )
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
