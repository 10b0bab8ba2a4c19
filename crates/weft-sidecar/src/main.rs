//! `weft-sidecar`: the sidecar proxy and the ingress gateway on their own, without the agent, server and CLI code
//! of `weft`. `weft connect proxy|ingress ...` replaces itself with this executable when it sits next to `weft`; it
//! takes the same arguments (`weft-sidecar connect proxy -service web ...`).

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "weft-sidecar", version = weft_types::VERSION, about = "Weft's sidecar proxy and ingress gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Service mesh: the sidecar proxy and the ingress gateway.
    #[command(subcommand)]
    Connect(weft_sidecar::ConnectCmd),
}

fn main() {
    let cli: Cli = weft_sidecar::parse_or_exit();
    // One thread: a sidecar serves one application's connections, and a single-threaded runtime spends no CPU on
    // waking and synchronising workers (Linkerd's proxy defaults to one core too).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Command::Connect(cmd) = cli.command;
    weft_sidecar::run_and_exit(runtime, weft_sidecar::run(cmd))
}
