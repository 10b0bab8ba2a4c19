//! `dns_config`, `domain`, `alt_domain` and `recursors`, as the DNS server uses them. Built by the agent's config
//! layer from Consul's keys; defaults are Consul's except the TTLs (see [`DnsConfig::default`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The SOA record's timers (`dns_config.soa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soa {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for Soa {
    fn default() -> Soa {
        Soa {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// The zone answered, lowercase, with its trailing dot (`consul.`).
    pub domain: String,
    /// A second zone answered the same way (`alt_domain`), lowercase with its trailing dot.
    pub alt_domain: Option<String>,
    /// This agent's datacenter: the only one it answers for (names of other datacenters are NXDOMAIN).
    pub datacenter: String,
    /// This agent's node: where prepared queries with `Near: _agent` sort their results.
    pub node_name: String,
    /// TTL of node records (`node_ttl`).
    pub node_ttl: u32,
    /// TTL of service records by name: an exact name, then the longest `prefix*`, then `*` (`service_ttl`).
    pub service_ttl: BTreeMap<String, u32>,
    /// Leave out instances whose checks warn, too (`only_passing`).
    pub only_passing: bool,
    /// Answer from a follower's or client agent's copy of the state (`allow_stale`).
    pub allow_stale: bool,
    /// The oldest copy answered from (`max_stale`); older gives SERVFAIL.
    pub max_stale: Duration,
    /// Set TC when a UDP answer was cut to `udp_answer_limit` (`enable_truncate`).
    pub enable_truncate: bool,
    /// Most answers in a UDP response to a query without EDNS (`udp_answer_limit`, 3).
    pub udp_answer_limit: usize,
    /// Most A/AAAA answers in any response; 0 for no limit (`a_record_limit`).
    pub a_record_limit: usize,
    /// Add node metadata as TXT records to node and SRV answers (`enable_additional_node_meta_txt`).
    pub node_meta_txt: bool,
    /// Write every name in full instead of pointing at an earlier one (`disable_compression`).
    pub disable_compression: bool,
    pub soa: Soa,
    /// Where names outside the domain go (`recursors`); none: REFUSED.
    pub recursors: Vec<SocketAddr>,
    pub recursor_timeout: Duration,
}

impl Default for DnsConfig {
    /// Consul's defaults, except TTLs of 5 s where Consul's are 0: a resolver in front of the agent (dnsmasq,
    /// systemd-resolved) then caches for a moment instead of asking the agent for every connection, and a health
    /// change still reaches clients within seconds.
    fn default() -> DnsConfig {
        DnsConfig {
            domain: "consul.".into(),
            alt_domain: None,
            datacenter: "dc1".into(),
            node_name: String::new(),
            node_ttl: 5,
            service_ttl: BTreeMap::from([("*".to_string(), 5)]),
            only_passing: false,
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            enable_truncate: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            node_meta_txt: true,
            disable_compression: false,
            soa: Soa::default(),
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
        }
    }
}

impl DnsConfig {
    /// The TTL for a service's records: its own entry, else the longest matching `prefix*`, else `*`, else 0.
    pub fn service_ttl(&self, service: &str) -> u32 {
        if let Some(ttl) = self.service_ttl.get(service) {
            return *ttl;
        }
        self.service_ttl
            .iter()
            .filter_map(|(key, ttl)| {
                let prefix = key.strip_suffix('*')?;
                service.starts_with(prefix).then_some((prefix.len(), *ttl))
            })
            .max_by_key(|(len, _)| *len)
            .map_or(0, |(_, ttl)| ttl)
    }

    /// A domain as the config writes it (`consul`, `Consul.`), normalised to lowercase with its trailing dot.
    pub fn normalise_domain(domain: &str) -> String {
        let d = domain.trim().trim_matches('.').to_ascii_lowercase();
        format!("{d}.")
    }
}
