//! Weft's DNS interface, as Consul answers it: `<service>.service.consul`, tags and RFC 2782 names, `.connect`,
//! `.ingress`, `.node`, `.addr`, reverse lookups, and forwarding of other names to `recursors`.
//!
//! - [`config`]: `dns_config`, the domain and the recursors.
//! - [`name`]: what a query name asks for.
//! - [`answer`]: the records for it, from the agent's local state (its replica on client agents).
//! - [`fit`]: answer limits and truncation for UDP and TCP.
//! - [`recursor`]: names outside the domain, forwarded.
//! - [`remote`]: other datacenters' names, and prepared queries failing over, asked of the servers.
//! - [`server`]: the UDP and TCP listeners.
//!
//! The wire format is hickory-proto's; the loops are Weft's own (hickory-server's API changed with every minor
//! release, and Consul's behaviours — truncation, SRV extras, recursor fallback — want full control).

pub mod answer;
pub mod config;
pub mod fit;
pub mod name;
pub mod recursor;
pub mod remote;
pub mod server;

pub use config::{DnsConfig, Soa};
pub use remote::Fetched;
pub use server::{DnsServer, DnsState};

#[cfg(test)]
mod tests;
