//! The `weft` binary: the agent and the CLI that talks to it.
//!
//! Arguments are accepted Go-style (`-dev`, `-http-port=8501`) as well as `--long`, because users and tools call
//! Weft exactly as they call Consul. Errors print one line and exit 1.

mod agent_cmd;
mod app;
mod client;
mod cluster_cmd;
mod commands;
mod config;
mod log_tap;
mod reload;
mod sidecar_exec;

use clap::{Parser, Subcommand};
use commands::{
    acl, auth, catalog, config as config_cmd, connect, demo, event, intention, keyring, kv, misc,
    operator, rtt, services, snapshot, tls,
};

#[derive(Parser, Debug)]
#[command(name = "weft", version = weft_types::VERSION, about = "Service registry and service mesh, Consul-compatible")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs an agent: `-dev` (one process, in memory), `-server` (a Raft member) or a client agent.
    Agent(config::AgentFlags),
    /// Checks configuration files and directories as the agent would read them.
    Validate(config_cmd::ValidateArgs),
    /// Makes the agent re-read its configuration files.
    Reload(config_cmd::ReloadArgs),
    /// Lists the members of the cluster.
    Members(misc::MembersArgs),
    /// Reads the catalog.
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Registers and deregisters services with the local agent.
    #[command(subcommand)]
    Services(services::ServicesCmd),
    /// Reads and writes the KV store.
    #[command(subcommand)]
    Kv(kv::KvCmd),
    /// Service mesh: the sidecar proxy and the CA.
    #[command(subcommand)]
    Connect(connect::ConnectCmd),
    /// Manages ACLs: bootstrap, tokens, policies, roles and the agent's own tokens.
    #[command(subcommand)]
    Acl(acl::AclCmd),
    /// Logs in with a credential (a JWT) through an auth method and writes the new token to a file.
    Login(auth::LoginArgs),
    /// Deletes the login token this command runs with.
    Logout(client::HttpArgs),
    /// Manages intentions: which services may connect to which.
    #[command(subcommand)]
    Intention(intention::IntentionCmd),
    /// Creates the CA and certificates for server RPC TLS.
    #[command(subcommand)]
    Tls(tls::TlsCmd),
    /// Saves or restores the whole cluster state.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Operates the server cluster: Raft peers and autopilot.
    #[command(subcommand)]
    Operator(operator::OperatorCmd),
    /// Runs the whole walkthrough on this machine: agent, services, sidecars, test proxy and ingress.
    Demo(demo::DemoArgs),
    /// Shows the agent's runtime statistics.
    Info(misc::PlainArgs),
    /// Prints the version.
    Version,
    /// Makes the agent leave the cluster and shut down.
    Leave(misc::PlainArgs),
    /// Joins the local agent to a cluster through other agents' gossip addresses.
    Join(misc::JoinArgs),
    /// Marks a failed member as left, so its node is deregistered.
    ForceLeave(misc::ForceLeaveArgs),
    /// Prints a new gossip encryption key (for -encrypt).
    Keygen,
    /// Lists, installs, switches and removes gossip encryption keys across the cluster.
    Keyring(keyring::KeyringArgs),
    /// Fires a user event to the agents whose filters match.
    Event(event::EventArgs),
    /// Follows user events (`-type event`), printing each new list or handing it to a command.
    Watch(event::WatchArgs),
    /// Estimates the round trip between two nodes from their network coordinates.
    Rtt(rtt::RttArgs),
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli: Cli = weft_sidecar::parse_or_exit();
    if let Command::Connect(connect::ConnectCmd::Proxy(_) | connect::ConnectCmd::Ingress(_)) =
        &cli.command
    {
        // Returns only when there is no weft-sidecar beside this binary (or it cannot be run): then the proxy runs
        // here, in the same code.
        sidecar_exec::replace_with_sidecar();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    weft_sidecar::run_and_exit(runtime, async move {
        match cli.command {
            Command::Agent(a) => agent_cmd::run(a).await.map(|()| 0),
            Command::Validate(a) => config_cmd::validate(a),
            Command::Reload(a) => config_cmd::reload(a).await,
            Command::Members(a) => misc::members(a).await,
            Command::Catalog(c) => catalog::run(c).await,
            Command::Services(c) => services::run(c).await,
            Command::Kv(c) => kv::run(c).await,
            Command::Connect(c) => connect::run(c).await,
            Command::Intention(c) => intention::run(c).await,
            Command::Acl(c) => acl::run(c).await,
            Command::Login(a) => auth::login(a).await,
            Command::Logout(a) => auth::logout(a).await,
            Command::Operator(c) => operator::run(c).await,
            Command::Snapshot(c) => snapshot::run(c).await,
            Command::Tls(c) => tls::run(c),
            Command::Demo(a) => demo::run(a).await,
            Command::Info(a) => misc::info(a).await,
            Command::Version => Ok(misc::version()),
            Command::Leave(a) => misc::leave(a).await,
            Command::Join(a) => misc::join(a).await,
            Command::ForceLeave(a) => misc::force_leave(a).await,
            Command::Keygen => misc::keygen(),
            Command::Keyring(a) => keyring::run(a).await,
            Command::Event(a) => event::fire(a).await,
            Command::Watch(a) => event::watch(a).await,
            Command::Rtt(a) => rtt::run(a).await,
        }
    })
}

#[cfg(test)]
mod cli_tests {
    /// clap checks the whole command tree (duplicate names, conflicting flags) only when asked: a mistake would
    /// otherwise surface as a panic the first time someone runs that one command.
    #[test]
    fn the_command_tree_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
