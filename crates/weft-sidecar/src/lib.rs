//! The sidecar and ingress commands: `weft connect proxy` and `weft connect ingress`.
//!
//! They are linked into `weft` and also built as their own executable, `weft-sidecar`. A sidecar runs beside every
//! service instance, so its memory multiplies: `weft connect proxy` replaces itself with `weft-sidecar` when that
//! executable sits next to `weft` (release packages and images ship both), and only then maps just the proxy's code
//! (idle ~4-5 MB resident instead of ~10 MB for the whole `weft` binary). Without it, the same code runs inside
//! `weft`. Both paths take the same arguments and behave the same.

pub mod args;
mod ecs;
mod ingress_cmd;
mod proxy_cmd;
mod retry;
mod serve;
pub mod service_file;
pub mod signals;
mod task_service;

pub use args::{ConnectCmd, IngressArgs, ProxyArgs};

/// The file name of the sidecar executable, looked for next to `weft`.
pub const EXECUTABLE: &str = "weft-sidecar";

/// Runs `connect proxy` or `connect ingress`; answers the exit code.
pub async fn run(cmd: ConnectCmd) -> anyhow::Result<i32> {
    match cmd {
        ConnectCmd::Proxy(a) => proxy_cmd::run(a).await,
        ConnectCmd::Ingress(a) => ingress_cmd::run(a).await,
    }
}

/// Parses this process's arguments (Go-style `-flag` accepted) or exits: 0 after `-help`/`-version`, 1 with clap's
/// message on a bad argument.
pub fn parse_or_exit<C: clap::Parser>() -> C {
    let argv = weft_types::flags::normalize(std::env::args());
    match C::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    }
}

/// Runs a command to completion on `runtime` (as the caller built it, or failed to) and exits with its
/// code; an error is printed as one line and exits 1.
pub fn run_and_exit<F>(runtime: std::io::Result<tokio::runtime::Runtime>, command: F) -> !
where
    F: std::future::Future<Output = anyhow::Result<i32>>,
{
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(command);
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// Logs to stderr at `level` (Consul's names: trace, debug, info, warn, err); HTTP client chatter only from warn.
fn init_logging(level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match level.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" | "" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "err" | "error" => LevelFilter::ERROR,
        other => {
            anyhow::bail!("Invalid log level: {other:?} (use trace, debug, info, warn or err)")
        }
    };
    let filter = Targets::new()
        .with_default(level)
        .with_target("hyper", level.min(LevelFilter::WARN))
        .with_target("hyper_util", level.min(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bad_log_levels_are_refused() {
        assert!(super::init_logging("loud").is_err());
    }
}
