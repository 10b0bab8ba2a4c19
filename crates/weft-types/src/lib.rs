//! Weft's domain and wire types.
//!
//! One set of types serves the store, the API and the CLI: serde attributes give them Consul's exact JSON casing, and
//! [`lenient`] gives request bodies Consul's forgiving decoding. Nothing here does I/O but [`fsio`], the small
//! helper every crate that writes under the data dir shares.

pub mod acl;
pub mod addr;
pub mod agent_self;
pub mod autopilot;
pub mod check;
pub mod config_entry;
pub mod coordinate;
pub mod duration;
pub mod event;
pub mod flags;
pub mod fsio;
pub mod hcl;
pub mod ids;
pub mod intention;
pub mod kv;
pub mod lenient;
pub mod node;
pub mod query;
pub mod service;
pub mod session;
pub mod timefmt;
pub mod url;
pub mod views;

pub use check::{CheckDefinition, CheckKind, CheckStatus, HealthCheck, HealthCheckDefinition};
pub use intention::{DefaultPolicy, Intention};
pub use kv::DirEntry;
pub use node::Node;
pub use service::{
    ConnectProxyConfig, NodeService, ServiceDefinition, ServiceEntry, Upstream, Weights,
};
pub use session::{Session, SessionBehavior, SessionRequest};

/// The version Weft reports, and the Consul API version it speaks.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
