#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::fit::Transport;
use crate::name::{decode_hex_ip, parse, Lookup, Parsed};
use crate::{DnsConfig, DnsServer, DnsState};
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;
use weft_state::{Command, Registration, Store};
use weft_types::{CheckStatus, HealthCheck, Node, NodeService};

struct State {
    store: RwLock<Store>,
    age: Option<Duration>,
}

impl DnsState for State {
    fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap()
    }
    fn staleness(&self) -> Option<Duration> {
        self.age
    }
}

fn node(name: &str, addr: &str) -> Node {
    Node {
        node: name.into(),
        address: addr.into(),
        datacenter: "dc1".into(),
        meta: [("rack".to_string(), "r1".to_string())].into(),
        ..Node::default()
    }
}

fn service(name: &str, id: &str, port: u16, tags: &[&str]) -> NodeService {
    NodeService {
        id: id.into(),
        service: name.into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..NodeService::default()
    }
}

fn check(node: &str, service_id: &str, status: CheckStatus) -> HealthCheck {
    HealthCheck {
        node: node.into(),
        check_id: format!("check-{service_id}"),
        name: "check".into(),
        service_id: service_id.into(),
        status,
        ..HealthCheck::default()
    }
}

/// A store with `web` on three nodes (one critical, one warning) and `db` with its own address.
fn store() -> Store {
    let mut store = Store::new();
    let mut index = 1;
    let mut register = |n: Node, svc: NodeService, status: CheckStatus| {
        index += 1;
        let checks = vec![check(&n.node, &svc.id, status)];
        let reg = Registration {
            node: n,
            service: Some(svc),
            checks,
            ..Registration::default()
        };
        store
            .apply(index, 1_000, &Command::Register(Box::new(reg)))
            .unwrap();
    };
    register(
        node("n1", "10.0.0.1"),
        service("web", "web-1", 8080, &["v1"]),
        CheckStatus::Passing,
    );
    register(
        node("n2", "10.0.0.2"),
        service("web", "web-2", 8081, &["v2"]),
        CheckStatus::Warning,
    );
    register(
        node("n3", "10.0.0.3"),
        service("web", "web-3", 8082, &["v1"]),
        CheckStatus::Critical,
    );
    let mut db = service("db", "db-1", 5432, &[]);
    db.address = "10.1.0.9".into();
    register(node("n1", "10.0.0.1"), db, CheckStatus::Passing);
    let mut v6 = service("six", "six-1", 80, &[]);
    v6.address = "fd00::6".into();
    register(node("n1", "10.0.0.1"), v6, CheckStatus::Passing);
    let mut external = service("ext", "ext-1", 443, &[]);
    external.address = "example.org".into();
    register(node("n2", "10.0.0.2"), external, CheckStatus::Passing);
    store
}

fn server_with(config: DnsConfig, age: Option<Duration>) -> Arc<DnsServer> {
    let state = Arc::new(State {
        store: RwLock::new(store()),
        age,
    });
    DnsServer::new(config, state)
}

fn server() -> Arc<DnsServer> {
    server_with(DnsConfig::default(), Some(Duration::ZERO))
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut msg = Message::query();
    msg.add_query(hickory_proto::op::Query::query(
        Name::from_ascii(name).unwrap(),
        qtype,
    ));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        msg.set_edns(e);
    }
    msg.to_vec().unwrap()
}

async fn ask(server: &DnsServer, name: &str, qtype: RecordType, transport: Transport) -> Message {
    let edns = matches!(
        transport,
        Transport::Udp {
            edns_payload: Some(_)
        }
    );
    let bytes = server
        .reply(&query(name, qtype, edns), transport)
        .await
        .expect("an answer");
    Message::from_vec(&bytes).unwrap()
}

const UDP: Transport = Transport::Udp { edns_payload: None };

fn addresses(msg: &Message) -> Vec<String> {
    let mut out: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn services_answer_their_healthy_instances() {
    let s = server();
    let a = ask(&s, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!(
        addresses(&a),
        ["10.0.0.1", "10.0.0.2"],
        "the critical one is left out"
    );
    assert_eq!(a.answers[0].ttl, 5);
    // Case does not matter; the datacenter may be named; tags filter.
    let a = ask(&s, "WEB.Service.DC1.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&a).len(), 2);
    let a = ask(&s, "v1.web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&a), ["10.0.0.1"]);
    let a = ask(&s, "_web._v2.service.consul.", RecordType::SRV, UDP).await;
    assert_eq!(a.answers.len(), 1);
    // only_passing leaves out the warning one too.
    let strict = server_with(
        DnsConfig {
            only_passing: true,
            ..DnsConfig::default()
        },
        Some(Duration::ZERO),
    );
    let a = ask(&strict, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&a), ["10.0.0.1"]);
}

#[tokio::test]
async fn srv_answers_name_targets_with_their_addresses_in_the_additional_section() {
    let s = server();
    let a = ask(&s, "_web._tcp.service.consul.", RecordType::SRV, UDP).await;
    let mut targets: Vec<(String, u16)> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.target.to_ascii(), srv.port)),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("n1.node.dc1.consul.".to_string(), 8080),
            ("n2.node.dc1.consul.".to_string(), 8081)
        ]
    );
    let extra_a: Vec<String> = a
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(extra_a.len(), 2, "{extra_a:?}");
    assert!(
        a.additionals
            .iter()
            .any(|r| r.record_type() == RecordType::TXT),
        "node meta as TXT"
    );
    // A service with its own address is targeted through `.addr`, which answers that address.
    let a = ask(&s, "db.service.consul.", RecordType::SRV, UDP).await;
    let RData::SRV(srv) = &a.answers[0].data else {
        panic!("not SRV: {a:?}");
    };
    assert_eq!(srv.target.to_ascii(), "0a010009.addr.dc1.consul.");
    let addr = ask(&s, "0a010009.addr.dc1.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&addr), ["10.1.0.9"]);
}

#[tokio::test]
async fn unknown_names_are_nxdomain_and_known_names_without_the_type_are_nodata() {
    let s = server();
    for name in [
        "nope.service.consul.",
        "web.service.dc2.consul.",
        "nobody.node.consul.",
        "web.query.consul.",
        "a.b.c.consul.",
    ] {
        let a = ask(&s, name, RecordType::A, UDP).await;
        assert_eq!(a.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(a.authorities.len(), 1, "{name}: the SOA");
        assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    }
    let a = ask(&s, "web.service.consul.", RecordType::MX, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert_eq!(a.authorities[0].record_type(), RecordType::SOA);
    // An IPv6-only service has no A record, but AAAA.
    let a = ask(&s, "six.service.consul.", RecordType::A, UDP).await;
    assert!(a.answers.is_empty() && a.metadata.response_code == ResponseCode::NoError);
    let a = ask(&s, "six.service.consul.", RecordType::AAAA, UDP).await;
    assert_eq!(addresses(&a), ["fd00::6"]);
    // A hostname address is a CNAME.
    let a = ask(&s, "ext.service.consul.", RecordType::A, UDP).await;
    assert!(matches!(&a.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "example.org."));
}

#[tokio::test]
async fn nodes_reverse_lookups_and_the_zone_apex_answer() {
    let s = server();
    let a = ask(&s, "n1.node.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&a), ["10.0.0.1"]);
    let a = ask(&s, "n1.node.dc1.consul.", RecordType::TXT, UDP).await;
    assert!(matches!(&a.answers[0].data, RData::TXT(t) if t.to_string().contains("rack=r1")));
    let a = ask(&s, "1.0.0.10.in-addr.arpa.", RecordType::PTR, UDP).await;
    let ptrs: Vec<String> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(ptrs, ["n1.node.dc1.consul."]);
    let a = ask(&s, "9.9.9.10.in-addr.arpa.", RecordType::PTR, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    let a = ask(&s, "consul.", RecordType::SOA, UDP).await;
    assert_eq!(a.answers[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn udp_answers_are_limited_and_truncated_and_tcp_carries_everything() {
    let mut store = Store::new();
    for i in 0..60u16 {
        let name = format!("node-with-a-rather-long-name-{i}");
        let reg = Registration {
            node: node(&name, &format!("10.2.{}.{}", i / 250, i % 250 + 1)),
            service: Some(service("big", &format!("big-{i}"), 80, &[])),
            ..Registration::default()
        };
        store
            .apply(u64::from(i) + 2, 1_000, &Command::Register(Box::new(reg)))
            .unwrap();
    }
    let s = DnsServer::new(
        DnsConfig::default(),
        Arc::new(State {
            store: RwLock::new(store),
            age: Some(Duration::ZERO),
        }),
    );
    // No EDNS: at most udp_answer_limit (3) answers, TC not set (a choice, not a lack of room).
    let a = ask(&s, "big.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.answers.len(), 3);
    assert!(!a.metadata.truncation);
    // SRV with EDNS (the client offers 4096 bytes): as many as fit, TC set; TCP: every one.
    let bytes = s
        .reply(&query("big.service.consul.", RecordType::SRV, true), UDP)
        .await
        .unwrap();
    assert!(bytes.len() <= 4096, "{}", bytes.len());
    let a = Message::from_vec(&bytes).unwrap();
    assert!(a.metadata.truncation);
    assert!(!a.answers.is_empty() && a.answers.len() < 60);
    let a = ask(&s, "big.service.consul.", RecordType::SRV, Transport::Tcp).await;
    assert_eq!(a.answers.len(), 60);
    assert!(!a.metadata.truncation);
}

#[tokio::test]
async fn bad_packets_get_formerr_notimp_refused_or_nothing() {
    let s = server();
    assert!(s.reply(&[0u8; 5], UDP).await.is_none(), "no header");
    let mut response = query("web.service.consul.", RecordType::A, false);
    response[2] |= 0x80;
    assert!(
        s.reply(&response, UDP).await.is_none(),
        "a response is never answered"
    );
    let mut junk = query("web.service.consul.", RecordType::A, false);
    junk.truncate(20);
    let a = Message::from_vec(&s.reply(&junk, UDP).await.unwrap()).unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::FormErr);
    // A compression pointer that points at itself.
    let mut looped = query("web.service.consul.", RecordType::A, false);
    looped.truncate(12);
    looped.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let a = Message::from_vec(&s.reply(&looped, UDP).await.unwrap()).unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::FormErr);
    let mut status = query("web.service.consul.", RecordType::A, false);
    status[2] |= 2 << 3; // opcode STATUS
    let a = Message::from_vec(&s.reply(&status, UDP).await.unwrap()).unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::NotImp);
    let axfr = query("consul.", RecordType::AXFR, false);
    let a = Message::from_vec(&s.reply(&axfr, UDP).await.unwrap()).unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::NotImp);
    // Outside the domain with no recursors: REFUSED.
    let a = ask(&s, "example.com.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::Refused);
    assert!(!a.metadata.recursion_available);
}

#[tokio::test]
async fn a_copy_of_the_state_older_than_max_stale_is_not_answered_from() {
    let config = DnsConfig {
        max_stale: Duration::from_secs(10),
        ..DnsConfig::default()
    };
    let old = server_with(config.clone(), Some(Duration::from_secs(11)));
    let a = ask(&old, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
    let never = server_with(config.clone(), None);
    let a = ask(&never, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
    let strict = server_with(
        DnsConfig {
            allow_stale: false,
            ..config
        },
        Some(Duration::from_millis(5)),
    );
    let a = ask(&strict, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn names_are_read_as_consul_reads_them() {
    let config = DnsConfig {
        alt_domain: Some("weft.".into()),
        ..DnsConfig::default()
    };
    let p = |n: &str| parse(&Name::from_ascii(n).unwrap(), &config);
    let service = |name: &str, tag: Option<&str>| Parsed::Ours {
        lookup: Lookup::Service {
            name: name.into(),
            tag: tag.map(str::to_string),
        },
        zone: "consul.".into(),
        datacenter: None,
    };
    assert_eq!(p("web.service.consul."), service("web", None));
    assert_eq!(p("web.service.dc1.dc.consul."), service("web", None));
    assert_eq!(p("a.b.web.service.consul."), service("web", Some("a.b")));
    assert_eq!(p("_web._tcp.service.consul."), service("web", None));
    assert_eq!(p("_web._v1.consul."), service("web", Some("v1")));
    assert!(matches!(p("web.service.weft."), Parsed::Ours { zone, .. } if zone == "weft."));
    // Another datacenter's services, nodes and queries are asked of it; its ingress lookups are not served.
    let remote = |lookup: Lookup| Parsed::Ours {
        lookup,
        zone: "consul.".into(),
        datacenter: Some("dc9".into()),
    };
    let web = || Lookup::Service {
        name: "web".into(),
        tag: None,
    };
    assert_eq!(p("web.service.dc9.consul."), remote(web()));
    assert_eq!(p("web.service.dc9.dc.consul."), remote(web()));
    assert_eq!(p("_web._tcp.dc9.consul."), remote(web()));
    assert_eq!(
        p("db.query.dc9.consul."),
        remote(Lookup::Query { name: "db".into() })
    );
    assert_eq!(
        p("n1.node.dc9.consul."),
        remote(Lookup::Node { name: "n1".into() })
    );
    assert_eq!(
        p("web.ingress.dc9.consul."),
        Parsed::Unknown {
            zone: "consul.".into()
        }
    );
    assert_eq!(
        p("web.service.a.b.consul."),
        Parsed::Unknown {
            zone: "consul.".into()
        }
    );
    assert_eq!(p("example.com."), Parsed::Outside);
    assert_eq!(p("notconsul."), Parsed::Outside);
    assert_eq!(decode_hex_ip("0a000001"), Some("10.0.0.1".parse().unwrap()));
    assert_eq!(
        decode_hex_ip("fd000000000000000000000000000006"),
        Some("fd00::6".parse().unwrap())
    );
    assert_eq!(decode_hex_ip("0a0000"), None);
    assert_eq!(decode_hex_ip("zz000001"), None);
}

#[test]
fn service_ttls_take_the_exact_name_then_the_longest_prefix_then_the_wildcard() {
    let config = DnsConfig {
        service_ttl: [("*", 1), ("web*", 2), ("web-api*", 3), ("web-api", 4)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..DnsConfig::default()
    };
    assert_eq!(config.service_ttl("db"), 1);
    assert_eq!(config.service_ttl("web-x"), 2);
    assert_eq!(config.service_ttl("web-api-2"), 3);
    assert_eq!(config.service_ttl("web-api"), 4);
}

proptest::proptest! {
    /// Random bytes, and random damage to a real query, never panic: an answer or nothing.
    #[test]
    fn random_packets_never_break_the_server(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
                                             flip in 0usize..64, value in proptest::num::u8::ANY) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let s = server();
        rt.block_on(async {
            let _ = s.reply(&bytes, UDP).await;
            let mut q = query("web.service.consul.", RecordType::SRV, true);
            let at = flip % q.len();
            q[at] = value;
            if let Some(reply) = s.reply(&q, UDP).await {
                proptest::prop_assert!(reply.len() <= 65_535);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn disable_compression_writes_every_name_in_full() {
    let q = query("_web._tcp.service.consul.", RecordType::SRV, true);
    let compressed = server().reply(&q, UDP).await.unwrap();
    let plain = server_with(
        DnsConfig {
            disable_compression: true,
            ..DnsConfig::default()
        },
        Some(Duration::ZERO),
    )
    .reply(&q, UDP)
    .await
    .unwrap();
    assert!(
        plain.len() > compressed.len(),
        "{} vs {}",
        plain.len(),
        compressed.len()
    );
    // No compression pointer (two top bits set) anywhere a name may start: the answer decodes the same.
    let a = Message::from_vec(&plain).unwrap();
    assert_eq!(a.answers.len(), 2);
    assert!(!plain.windows(2).any(|w| w[0] == 0xc0 && w[1] == 0x0c));
}

fn set_query(store: &mut Store, index: u64, query: weft_types::query::PreparedQuery) {
    store
        .apply(
            index,
            1_000,
            &Command::QuerySet {
                query: Box::new(query),
                create: true,
            },
        )
        .unwrap();
}

#[tokio::test]
async fn prepared_queries_answer_under_query() {
    let mut store = store();
    let mut q = weft_types::query::PreparedQuery {
        id: "11111111-2222-3333-4444-555555555555".into(),
        name: "web-v1".into(),
        service: weft_types::query::ServiceQuery {
            service: "web".into(),
            tags: vec!["v1".into()],
            // The critical instance is left out all the same; ignoring its check brings it back.
            ignore_check_ids: vec!["check-web-3".into()],
            ..Default::default()
        },
        dns: weft_types::query::QueryDns { ttl: "42s".into() },
        ..Default::default()
    };
    set_query(&mut store, 100, q.clone());
    q.id = "21111111-2222-3333-4444-555555555555".into();
    q.name = "near".into();
    q.service.tags.clear();
    q.service.ignore_check_ids.clear();
    q.service.near = "_agent".into();
    q.dns.ttl.clear();
    set_query(&mut store, 101, q);
    let config = DnsConfig {
        node_name: "n2".into(),
        ..DnsConfig::default()
    };
    let s = DnsServer::new(
        config,
        Arc::new(State {
            store: RwLock::new(store),
            age: Some(Duration::ZERO),
        }),
    );
    let a = ask(&s, "web-v1.query.consul.", RecordType::A, UDP).await;
    assert_eq!(addresses(&a), ["10.0.0.1", "10.0.0.3"]);
    assert_eq!(a.answers[0].ttl, 42);
    // By ID, in the RFC 2782 form, with the datacenter named.
    let a = ask(
        &s,
        "11111111-2222-3333-4444-555555555555.query.dc1.consul.",
        RecordType::A,
        UDP,
    )
    .await;
    assert_eq!(addresses(&a).len(), 2);
    let a = ask(&s, "_web-v1._tcp.query.consul.", RecordType::SRV, UDP).await;
    assert_eq!(a.answers.len(), 2);
    // Near `_agent`: this agent's node first, every time; the service's TTL when the query sets none.
    for _ in 0..10 {
        let a = ask(&s, "near.query.consul.", RecordType::A, UDP).await;
        match &a.answers[0].data {
            RData::A(ip) => assert_eq!(ip.0.to_string(), "10.0.0.2"),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.answers[0].ttl, 5);
    }
    let a = ask(&s, "nothing.query.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert!(!a.authorities.is_empty(), "NXDOMAIN carries the SOA");
}

/// A state whose servers answer reads with canned JSON, recording what was asked.
struct Federated {
    local: State,
    answers: Vec<(Option<&'static str>, &'static str, crate::Fetched)>,
    asked: std::sync::Mutex<Vec<(Option<String>, String)>>,
}

impl DnsState for Federated {
    fn store(&self) -> RwLockReadGuard<'_, Store> {
        self.local.store()
    }
    fn staleness(&self) -> Option<Duration> {
        self.local.staleness()
    }
    fn fetch<'a>(
        &'a self,
        datacenter: Option<&'a str>,
        path: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = crate::Fetched> + Send + 'a>> {
        self.asked
            .lock()
            .unwrap()
            .push((datacenter.map(str::to_string), path.to_string()));
        let found = self
            .answers
            .iter()
            .find(|(dc, p, _)| *dc == datacenter && *p == path)
            .map_or(crate::Fetched::Unavailable, |(_, _, f)| f.clone());
        Box::pin(async move { found })
    }
}

fn entry(node: &str, addr: &str, dc: &str, status: &str) -> serde_json::Value {
    serde_json::json!({
        "Node": {"Node": node, "Address": addr, "Datacenter": dc},
        "Service": {"ID": format!("web-{node}"), "Service": "web", "Port": 8080, "Tags": ["v1"]},
        "Checks": [{"Node": node, "CheckID": "c", "Status": status}],
    })
}

#[tokio::test]
async fn other_datacenters_and_failing_over_queries_are_asked_of_the_servers() {
    let mut store = store();
    let failing = weft_types::query::PreparedQuery {
        id: "31111111-2222-3333-4444-555555555555".into(),
        name: "away".into(),
        service: weft_types::query::ServiceQuery {
            service: "nowhere".into(),
            failover: weft_types::query::QueryFailover {
                nearest_n: 1,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    set_query(&mut store, 100, failing);
    let health = serde_json::json!([
        entry("far-1", "10.2.0.1", "dc2", "passing"),
        entry("far-2", "10.2.0.2", "dc2", "critical"),
    ]);
    let run = serde_json::json!({
        "Service": "nowhere", "Datacenter": "dc3", "DNS": {"TTL": "7s"},
        "Nodes": [entry("far-3", "10.3.0.1", "dc3", "passing")],
    });
    let state = Arc::new(Federated {
        local: State {
            store: RwLock::new(store),
            age: Some(Duration::ZERO),
        },
        answers: vec![
            (
                Some("dc2"),
                "/v1/health/service/web",
                crate::Fetched::Found(health),
            ),
            (
                Some("dc2"),
                "/v1/catalog/node/gone",
                crate::Fetched::NotFound,
            ),
            (None, "/v1/query/away/execute", crate::Fetched::Found(run)),
        ],
        asked: Default::default(),
    });
    let s = DnsServer::new(DnsConfig::default(), state.clone());
    // Another datacenter's healthy instances, with SRV targets named in it.
    let a = ask(&s, "web.service.dc2.consul.", RecordType::SRV, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.answers.len(), 1);
    let RData::SRV(srv) = &a.answers[0].data else {
        panic!("not an SRV record")
    };
    assert_eq!(srv.target.to_ascii(), "far-1.node.dc2.consul.");
    // Tags are matched here, on what came back.
    let a = ask(&s, "v2.web.service.dc2.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    // A query with nothing here goes to the leader, which fails it over (to dc3 here).
    let a = ask(&s, "away.query.consul.", RecordType::SRV, UDP).await;
    let RData::SRV(srv) = &a.answers[0].data else {
        panic!("not an SRV record")
    };
    assert_eq!(srv.target.to_ascii(), "far-3.node.dc3.consul.");
    assert_eq!(a.answers[0].ttl, 7);
    // An unknown node there: NXDOMAIN; nobody to ask: SERVFAIL, so resolvers try again.
    let a = ask(&s, "gone.node.dc2.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    let a = ask(&s, "web.service.dc5.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
    // Local names are never asked of anyone.
    let before = state.asked.lock().unwrap().len();
    let a = ask(&s, "web.service.consul.", RecordType::A, UDP).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(state.asked.lock().unwrap().len(), before);
    assert_eq!(
        state.asked.lock().unwrap()[0],
        (
            Some("dc2".to_string()),
            "/v1/health/service/web".to_string()
        )
    );
}
