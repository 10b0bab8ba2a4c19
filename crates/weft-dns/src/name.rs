//! What a query name asks for. Consul's parsing: the name is lowercased, the zone (`domain` or `alt_domain`)
//! stripped, and the labels scanned from the right for the first lookup kind (`service`, `connect`, `ingress`,
//! `node`, `addr`, ...). Labels left of it are the query's parts; labels right of it name a datacenter (`<dc>` or
//! `<dc>.dc`). Reverse names under `in-addr.arpa.` and `ip6.arpa.` are read by hickory.

use crate::DnsConfig;
use hickory_proto::rr::Name;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `[tag.]<service>.service`, `_<service>._<tag|tcp>[.service]`: healthy instances.
    Service { name: String, tag: Option<String> },
    /// `<service>.connect`: the endpoints a mesh client dials (sidecar proxies, native services).
    Connect { name: String },
    /// `<service>.ingress`: the ingress gateways exposing the service.
    Ingress { name: String },
    /// `<query id or name>.query`, `_<name>._<protocol>.query`: a prepared query's results.
    Query { name: String },
    /// `<node>.node`.
    Node { name: String },
    /// `<hex>.addr`: an address spelt in hex (SRV targets).
    Addr(IpAddr),
    /// The zone itself (SOA and NS queries).
    Apex,
    /// `<reversed address>.in-addr.arpa.` / `.ip6.arpa.`.
    Reverse(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A name in one of our zones (`zone` is the one it was asked under, with its trailing dot); `datacenter` is
    /// set when it names another datacenter (services, mesh endpoints, nodes and prepared queries there).
    Ours {
        lookup: Lookup,
        zone: String,
        datacenter: Option<String>,
    },
    /// A name in one of our zones that names nothing Weft answers (virtual IPs, ingress lookups in another
    /// datacenter, a malformed form): NXDOMAIN.
    Unknown { zone: String },
    /// Outside our zones: for the recursors.
    Outside,
}

/// The lookup kinds, in the order Consul tries them.
const KINDS: [&str; 7] = [
    "service", "connect", "virtual", "ingress", "node", "query", "addr",
];

/// Reads `name` for this agent's zones and datacenter.
pub fn parse(name: &Name, config: &DnsConfig) -> Parsed {
    let text = name.to_lowercase().to_ascii();
    let text = if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    };
    if text.ends_with(".in-addr.arpa.") || text.ends_with(".ip6.arpa.") {
        return match name.parse_arpa_name() {
            Ok(net) if net.prefix_len() == net.max_prefix_len() => Parsed::Ours {
                lookup: Lookup::Reverse(net.addr()),
                zone: "arpa.".into(),
                datacenter: None,
            },
            _ => Parsed::Unknown {
                zone: "arpa.".into(),
            },
        };
    }
    let zones = std::iter::once(&config.domain).chain(config.alt_domain.as_ref());
    for zone in zones {
        if text == *zone {
            return Parsed::Ours {
                lookup: Lookup::Apex,
                zone: zone.clone(),
                datacenter: None,
            };
        }
        if let Some(rest) = text.strip_suffix(&format!(".{zone}")) {
            let labels: Vec<&str> = rest.split('.').collect();
            return match lookup(&labels, &config.datacenter) {
                Some((lookup, datacenter)) => Parsed::Ours {
                    lookup,
                    zone: zone.clone(),
                    datacenter,
                },
                None => Parsed::Unknown { zone: zone.clone() },
            };
        }
    }
    Parsed::Outside
}

/// The lookup, and the datacenter it is for when that is not this one.
fn lookup(labels: &[&str], datacenter: &str) -> Option<(Lookup, Option<String>)> {
    let other = |dc: &str| (dc != datacenter).then(|| dc.to_string());
    let Some(at) = labels.iter().rposition(|l| KINDS.contains(l)) else {
        // `_<service>._<tag>[.<dc>]`: an RFC 2782 name implies `service`.
        return match labels {
            [s, t] if s.starts_with('_') && t.starts_with('_') => Some((rfc2782(s, t)?, None)),
            [s, t, dc] if s.starts_with('_') && t.starts_with('_') => {
                Some((rfc2782(s, t)?, other(dc)))
            }
            _ => None,
        };
    };
    let (parts, kind, locality) = (&labels[..at], labels[at], &labels[at + 1..]);
    let remote = match locality {
        [] => None,
        [dc] | [dc, "dc"] if !dc.is_empty() => other(dc),
        _ => return None,
    };
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let found = match (kind, parts) {
        ("service", [s, t]) if s.starts_with('_') && t.starts_with('_') => rfc2782(s, t),
        ("service", [name]) => Some(Lookup::Service {
            name: (*name).to_string(),
            tag: None,
        }),
        ("service", [tag @ .., name]) => Some(Lookup::Service {
            name: (*name).to_string(),
            tag: Some(tag.join(".")),
        }),
        ("connect", [name]) => Some(Lookup::Connect {
            name: (*name).to_string(),
        }),
        ("ingress", [name]) => Some(Lookup::Ingress {
            name: (*name).to_string(),
        }),
        ("node", parts) => Some(Lookup::Node {
            name: parts.join("."),
        }),
        ("addr", [hex]) => decode_hex_ip(hex).map(Lookup::Addr),
        // RFC 2782: `_<name>._<protocol>.query`, the protocol ignored.
        ("query", [first, .., last]) if first.starts_with('_') && last.starts_with('_') => {
            let name = parts[..parts.len() - 1].join(".");
            Some(Lookup::Query {
                name: name.trim_start_matches('_').to_string(),
            })
        }
        // A query's name may hold dots.
        ("query", parts) => Some(Lookup::Query {
            name: parts.join("."),
        }),
        // Virtual IPs are not served.
        _ => None,
    }?;
    // Another datacenter answers for its services, mesh endpoints, nodes and queries; an `.addr` name is the same
    // everywhere, and ingress lookups stay local.
    match (&found, remote) {
        (_, None) => Some((found, None)),
        (Lookup::Addr(_), Some(_)) => Some((found, None)),
        (
            Lookup::Service { .. }
            | Lookup::Connect { .. }
            | Lookup::Node { .. }
            | Lookup::Query { .. },
            Some(dc),
        ) => Some((found, Some(dc))),
        _ => None,
    }
}

fn rfc2782(service: &str, tag: &str) -> Option<Lookup> {
    let name = service.strip_prefix('_').filter(|n| !n.is_empty())?;
    let tag = tag.strip_prefix('_').filter(|t| !t.is_empty())?;
    Some(Lookup::Service {
        name: name.to_string(),
        // `_tcp` is the protocol, not a tag: every instance.
        tag: (tag != "tcp").then(|| tag.to_string()),
    })
}

/// `0a000001` → 10.0.0.1; 32 hex digits → an IPv6 address.
pub fn decode_hex_ip(hex: &str) -> Option<IpAddr> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    match bytes?.as_slice() {
        [a, b, c, d] if hex.len() == 8 => Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d))),
        b if hex.len() == 32 => {
            let arr: [u8; 16] = b.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(arr)))
        }
        _ => None,
    }
}

/// The `<hex>.addr` spelling of an address.
pub fn encode_hex_ip(ip: IpAddr) -> String {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
