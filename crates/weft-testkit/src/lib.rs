//! End-to-end harness for Weft: starts real `weft agent -dev` processes on ephemeral ports and talks to them the way
//! users do (raw HTTP, the Consul client library, the `weft` CLI).
//!
//! The harness is a library so every test file shares one implementation of the fiddly parts: finding the built
//! binary, waiting for the agent's "HTTP API" banner without deadlocking on full pipes, cleaning up the child on
//! panic, and polling for asynchronous outcomes instead of sleeping. Each module has one job:
//!
//! - [`binary`]: where the built `weft` binary is (and any other binary of a given build profile).
//! - [`output`]: drains a child's stdout/stderr in the background and keeps the last lines for error messages.
//! - [`agent`]: [`DevAgent`], one `weft agent -dev` process per test, killed on drop.
//! - [`docker`]: `FROM scratch` images of the built binary, networks and containers for fault tests.
//! - [`cluster`]: [`Cluster`], servers and client agents on loopback with their own data dirs.
//! - [`http`]: a tiny raw HTTP client returning status, headers and body untouched.
//! - [`mesh`]: the greeting app, sidecars and client proxies of Connect tests.
//! - [`net`]: a free port, and one plain HTTP GET through a local (sidecar) port.
//! - [`linearizable`]: a per-key linearizability checker for KV histories recorded under faults.
//! - [`cli`]: runs `weft` CLI commands against an agent.
//! - [`eventually`]: polls a condition until it holds or a timeout passes.
//! - [`process`]: other processes a test runs (proxies, demo services), killed on drop.
//! - [`rpc_tls`]: one request to a server's RPC port over TLS with a chosen certificate.
//! - [`signal`]: sends a signal to a process by PID (kill(2), no `kill` command).
//! - [`stub_http`]: canned answers standing in for another system's HTTP endpoint (ECS and EC2 metadata).
//! - [`tempdir`]: throwaway directories for config files.

pub mod agent;
pub mod binary;
pub mod cli;
pub mod cluster;
pub mod dig;
pub mod docker;
pub mod eventually;
pub mod http;
pub mod linearizable;
pub mod mesh;
pub mod net;
pub mod output;
pub mod process;
pub mod rpc_tls;
pub mod signal;
pub mod stub_http;
pub mod tempdir;
pub mod udp_delay;

pub use agent::{DevAgent, DevAgentBuilder};
pub use binary::{binary, weft_binary, weft_binary_of, Profile};
pub use cli::{cli, Cli, CliOutput};
pub use cluster::Cluster;
pub use eventually::{eventually, eventually_sync, Attempt};
pub use http::{Http, Response};
pub use process::Spawned;
pub use signal::{signal, Signal};
pub use tempdir::TempDir;
