//! The records that answer a lookup, read from the agent's local state. Service answers follow Consul: only
//! instances without a critical check (nor a warning one with `only_passing`), shuffled on every query; SRV
//! targets are `<node>.node.<dc>.<zone>`, or `<hex>.addr.<dc>.<zone>` when the service has an address of its own,
//! with the target's address in the additional section; a hostname address is answered with a CNAME.

use crate::name::{encode_hex_ip, Lookup};
use crate::DnsConfig;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use std::net::IpAddr;
use weft_state::Store;
use weft_types::views::CheckServiceNode;
use weft_types::{CheckStatus, Node, NodeService};

/// What the server sends back for one question.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// One question about one of our zones.
pub struct Question<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
    /// The zone it was asked under (`consul.`, or `alt_domain`), names in answers use it.
    pub zone: &'a str,
}

/// An instance's address as DNS gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Ip(IpAddr),
    Host(String),
}

fn target(address: &str) -> Option<Target> {
    if address.is_empty() {
        return None;
    }
    Some(match address.parse::<IpAddr>() {
        Ok(ip) => Target::Ip(ip),
        Err(_) => Target::Host(address.trim_end_matches('.').to_string()),
    })
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok().map(|mut n| {
        n.set_fqdn(true);
        n
    })
}

impl Answer {
    pub(crate) fn nxdomain(config: &DnsConfig, zone: &str) -> Answer {
        Answer {
            code: ResponseCode::NXDomain,
            authorities: soa(config, zone).into_iter().collect(),
            ..Answer::default()
        }
    }

    /// NOERROR with no records of the asked type (the name exists).
    fn nodata(config: &DnsConfig, zone: &str) -> Answer {
        Answer {
            authorities: soa(config, zone).into_iter().collect(),
            ..Answer::default()
        }
    }

    fn or_nodata(self, config: &DnsConfig, zone: &str) -> Answer {
        if self.answers.is_empty() {
            Answer {
                additionals: Vec::new(),
                ..Answer::nodata(config, zone)
            }
        } else {
            self
        }
    }
}

/// The zone's SOA record (Consul's: `ns.<zone>`, `hostmaster.<zone>`, serial = now).
pub fn soa(config: &DnsConfig, zone: &str) -> Option<Record> {
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let s = config.soa;
    let rdata = SOA::new(
        name(&format!("ns.{zone}"))?,
        name(&format!("hostmaster.{zone}"))?,
        serial,
        i32::try_from(s.refresh).unwrap_or(i32::MAX),
        i32::try_from(s.retry).unwrap_or(i32::MAX),
        i32::try_from(s.expire).unwrap_or(i32::MAX),
        s.min_ttl,
    );
    Some(Record::from_rdata(
        name(zone)?,
        s.min_ttl,
        RData::SOA(rdata),
    ))
}

/// The answer to `q`, a question about `lookup`, from `store`, naming only what `acl` lets DNS see (a service or
/// node it may not read does not exist, as in Consul).
pub fn answer(
    store: &Store,
    config: &DnsConfig,
    q: &Question<'_>,
    lookup: &Lookup,
    acl: &dyn crate::DnsState,
) -> Answer {
    let on_visible_nodes = |instances| visible_nodes(instances, acl);
    match lookup {
        Lookup::Service { name, .. } | Lookup::Connect { name } | Lookup::Ingress { name }
            if !acl.may_see_service(name) =>
        {
            Answer::nxdomain(config, q.zone)
        }
        Lookup::Service { name, tag } => {
            let instances = healthy(
                on_visible_nodes(store.check_service_nodes(name, false)),
                config,
            );
            service_answer(
                with_tag(instances, tag.as_deref()),
                config,
                q,
                config.service_ttl(name),
            )
        }
        Lookup::Connect { name } => {
            let instances = healthy(
                on_visible_nodes(store.check_service_nodes(name, true)),
                config,
            );
            service_answer(instances, config, q, config.service_ttl(name))
        }
        Lookup::Ingress { name } => {
            let gateways = healthy(on_visible_nodes(store.ingress_gateways_for(name)), config);
            service_answer(gateways, config, q, config.service_ttl(name))
        }
        Lookup::Query { name } => query_answer(store, config, q, name, acl),
        Lookup::Node { name } => match store
            .nodes()
            .find(|n| n.node.eq_ignore_ascii_case(name) && acl.may_see_node(&n.node))
        {
            Some(node) => node_answer(node, config, q),
            None => Answer::nxdomain(config, q.zone),
        },
        Lookup::Addr(ip) => {
            let mut a = Answer::default();
            a.answers
                .extend(address_record(q.name, *ip, q.qtype, config.node_ttl));
            a.or_nodata(config, q.zone)
        }
        Lookup::Apex => match q.qtype {
            RecordType::SOA | RecordType::ANY => Answer {
                answers: soa(config, q.zone).into_iter().collect(),
                ..Answer::default()
            },
            _ => Answer::nodata(config, q.zone),
        },
        Lookup::Reverse(ip) => reverse_answer(store, config, q, *ip, acl),
    }
}

/// A prepared query's results, as `/v1/query/:name/execute` gives them to the agent's DNS token (the query's own
/// stored token stays on the servers): NXDOMAIN for an unknown query or no instances, the query's `DNS.TTL` or
/// else the service's TTL, and `Near` honoured (`_agent`: this agent's node).
fn query_answer(
    store: &Store,
    config: &DnsConfig,
    q: &Question<'_>,
    name: &str,
    acl: &dyn crate::DnsState,
) -> Answer {
    let Ok(query) = store.resolve_prepared_query(name) else {
        return Answer::nxdomain(config, q.zone);
    };
    let service = &query.service;
    if !acl.may_see_service(&service.service) {
        return Answer::nxdomain(config, q.zone);
    }
    let mut instances = visible_nodes(store.prepared_query_instances(service, false), acl);
    let near = match service.near.as_str() {
        "" | "_ip" => None,
        "_agent" => Some(config.node_name.as_str()),
        node => Some(node),
    };
    instances.shuffle(&mut rand::rng());
    if let Some(near) = near {
        store.sort_instances_near(&mut instances, near);
    }
    weft_state::pin_near(&mut instances, near);
    let ttl = match weft_types::duration::parse_duration(&query.dns.ttl) {
        Ok(ttl) if !query.dns.ttl.is_empty() => u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
        _ => config.service_ttl(&service.service),
    };
    service_answer(instances, config, q, ttl)
}

/// The instances on nodes DNS may name.
fn visible_nodes<'a>(
    mut instances: Vec<CheckServiceNode<'a>>,
    acl: &dyn crate::DnsState,
) -> Vec<CheckServiceNode<'a>> {
    instances.retain(|i| acl.may_see_node(&i.node.node));
    instances
}

/// The instances carrying `tag` (any case); all of them without one.
pub(crate) fn with_tag<'a>(
    instances: Vec<CheckServiceNode<'a>>,
    tag: Option<&str>,
) -> Vec<CheckServiceNode<'a>> {
    instances
        .into_iter()
        .filter(|i| {
            tag.is_none_or(|t| {
                i.service
                    .tags
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(t))
            })
        })
        .collect()
}

/// Instances without a critical check (or a warning one, with `only_passing`), shuffled.
pub(crate) fn healthy<'a>(
    mut instances: Vec<CheckServiceNode<'a>>,
    config: &DnsConfig,
) -> Vec<CheckServiceNode<'a>> {
    instances.retain(|i| match i.aggregated_status() {
        CheckStatus::Passing => true,
        CheckStatus::Warning => !config.only_passing,
        CheckStatus::Critical => false,
    });
    instances.shuffle(&mut rand::rng());
    instances
}

/// The address an instance is reached at for a query of `qtype`: the service's own address, else the node's;
/// when that is of the other IP family, the `lan_ipv4`/`lan_ipv6` tagged address of the right one.
fn instance_target(node: &Node, svc: &NodeService, qtype: RecordType) -> Option<Target> {
    let base = target(&svc.address).or_else(|| target(&node.address))?;
    let want = match (qtype, &base) {
        (RecordType::A, Target::Ip(IpAddr::V6(_))) => "lan_ipv4",
        (RecordType::AAAA, Target::Ip(IpAddr::V4(_))) => "lan_ipv6",
        _ => return Some(base),
    };
    let tagged = svc
        .tagged_addresses
        .get(want)
        .map(|a| a.address.as_str())
        .or_else(|| node.tagged_addresses.get(want).map(String::as_str))
        .and_then(|a| a.parse::<IpAddr>().ok());
    Some(tagged.map_or(base, Target::Ip))
}

/// An A or AAAA record for `ip` when the query asks for its family (or for ANY).
fn address_record(owner: &Name, ip: IpAddr, qtype: RecordType, ttl: u32) -> Option<Record> {
    let rdata = match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY | RecordType::SRV) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY | RecordType::SRV) => {
            RData::AAAA(AAAA(v6))
        }
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, rdata))
}

pub(crate) fn service_answer(
    instances: Vec<CheckServiceNode<'_>>,
    config: &DnsConfig,
    q: &Question<'_>,
    ttl: u32,
) -> Answer {
    if instances.is_empty() {
        return Answer::nxdomain(config, q.zone);
    }
    let mut a = Answer::default();
    let mut seen = std::collections::BTreeSet::new();
    for i in &instances {
        if q.qtype == RecordType::SRV {
            srv_records(i, config, q, ttl, &mut a);
            continue;
        }
        let Some(t) = instance_target(i.node, i.service, q.qtype) else {
            continue;
        };
        // The same address twice (two instances on one node) is one record.
        if !seen.insert(t.clone()) {
            continue;
        }
        match t {
            Target::Ip(ip) => a.answers.extend(address_record(q.name, ip, q.qtype, ttl)),
            Target::Host(host) => {
                if let Some(host) = name(&host) {
                    a.answers.push(Record::from_rdata(
                        q.name.clone(),
                        ttl,
                        RData::CNAME(CNAME(host)),
                    ));
                }
            }
        }
    }
    a.or_nodata(config, q.zone)
}

fn srv_records(
    i: &CheckServiceNode<'_>,
    config: &DnsConfig,
    q: &Question<'_>,
    ttl: u32,
    a: &mut Answer,
) {
    let dc = &config.datacenter;
    let weight = match i.aggregated_status() {
        CheckStatus::Warning => i.service.weights.warning,
        _ => i.service.weights.passing,
    };
    let weight = u16::try_from(weight.max(1)).unwrap_or(u16::MAX);
    let own = target(&i.service.address);
    let (target_name, extra) = match &own {
        Some(Target::Ip(ip)) => (
            name(&format!("{}.addr.{dc}.{}", encode_hex_ip(*ip), q.zone)),
            Some(*ip),
        ),
        Some(Target::Host(host)) => (name(host), None),
        None => (
            name(&format!("{}.node.{dc}.{}", i.node.node, q.zone)),
            i.node.address.parse::<IpAddr>().ok(),
        ),
    };
    let Some(target_name) = target_name else {
        return;
    };
    a.answers.push(Record::from_rdata(
        q.name.clone(),
        ttl,
        RData::SRV(SRV::new(1, weight, i.service.port, target_name.clone())),
    ));
    if let Some(ip) = extra {
        let record = address_record(&target_name, ip, RecordType::SRV, ttl);
        if let Some(record) = record.filter(|r| !a.additionals.contains(r)) {
            a.additionals.push(record);
        }
    }
    if config.node_meta_txt && own.is_none() {
        for txt in node_txt(&target_name, i.node, ttl) {
            if !a.additionals.contains(&txt) {
                a.additionals.push(txt);
            }
        }
    }
}

/// Node metadata as TXT records (RFC 1464 `key=value`; the bare value for `rfc1035-` keys, as Consul does).
fn node_txt(owner: &Name, node: &Node, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(k, v)| {
            let text = match k.strip_prefix("rfc1035-") {
                Some(_) => v.clone(),
                None => format!("{k}={v}"),
            };
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![text])))
        })
        .collect()
}

pub(crate) fn node_answer(node: &Node, config: &DnsConfig, q: &Question<'_>) -> Answer {
    let ttl = config.node_ttl;
    let mut a = Answer::default();
    let txt = || node_txt(q.name, node, ttl);
    match q.qtype {
        RecordType::TXT => a.answers.extend(txt()),
        RecordType::A | RecordType::AAAA | RecordType::ANY => {
            match instance_target(node, &NodeService::default(), q.qtype) {
                Some(Target::Ip(ip)) => a.answers.extend(address_record(q.name, ip, q.qtype, ttl)),
                Some(Target::Host(host)) => {
                    if let Some(host) = name(&host) {
                        a.answers.push(Record::from_rdata(
                            q.name.clone(),
                            ttl,
                            RData::CNAME(CNAME(host)),
                        ));
                    }
                }
                None => {}
            }
            if q.qtype == RecordType::ANY {
                a.answers.extend(txt());
            } else if config.node_meta_txt && !a.answers.is_empty() {
                a.additionals.extend(txt());
            }
        }
        _ => {}
    }
    a.or_nodata(config, q.zone)
}

/// PTR records for the nodes and service instances at `ip`, named under the primary domain.
fn reverse_answer(
    store: &Store,
    config: &DnsConfig,
    q: &Question<'_>,
    ip: IpAddr,
    acl: &dyn crate::DnsState,
) -> Answer {
    let dc = &config.datacenter;
    let domain = &config.domain;
    let mut targets: Vec<String> = Vec::new();
    for node in store.nodes().filter(|n| acl.may_see_node(&n.node)) {
        if node.address.parse::<IpAddr>().ok() == Some(ip) {
            targets.push(format!("{}.node.{dc}.{domain}", node.node));
        }
        for svc in store.node_services(&node.node) {
            if svc.address.parse::<IpAddr>().ok() == Some(ip) && acl.may_see_service(&svc.service) {
                let t = format!("{}.service.{dc}.{domain}", svc.service);
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
    }
    if targets.is_empty() {
        return Answer::nxdomain(config, domain);
    }
    if !matches!(q.qtype, RecordType::PTR | RecordType::ANY) {
        return Answer::nodata(config, domain);
    }
    let answers = targets
        .iter()
        .filter_map(|t| name(t))
        .map(|t| Record::from_rdata(q.name.clone(), config.node_ttl, RData::PTR(PTR(t))))
        .collect();
    Answer {
        answers,
        ..Answer::default()
    }
}
