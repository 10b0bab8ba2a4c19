//! Store behaviour: catalog upserts and indexes, KV verbs, transactions, sessions and snapshots.
#![allow(clippy::unwrap_used)]

use super::*;
use weft_types::{CheckStatus, SessionBehavior};

fn node(name: &str) -> Node {
    Node {
        node: name.into(),
        address: "127.0.0.1".into(),
        datacenter: "dc1".into(),
        ..Node::default()
    }
}

fn service(id: &str, name: &str) -> NodeService {
    NodeService {
        id: id.into(),
        service: name.into(),
        port: 8080,
        ..NodeService::default()
    }
}

fn check(id: &str, service_id: &str, status: CheckStatus) -> HealthCheck {
    HealthCheck {
        check_id: id.into(),
        name: id.into(),
        service_id: service_id.into(),
        status,
        ..HealthCheck::default()
    }
}

struct Harness {
    store: Store,
    next: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            store: Store::new(),
            next: 1,
        }
    }
    /// An intention from `source` to `destination` (the default action).
    fn intention(&mut self, source: &str, destination: &str) {
        let intention = weft_types::Intention {
            source_name: source.into(),
            destination_name: destination.into(),
            ..Default::default()
        };
        self.apply(Command::IntentionUpsert(Box::new(intention)))
            .unwrap();
    }
    fn apply(&mut self, cmd: Command) -> Result<ApplyResult, StoreError> {
        self.next += 1;
        self.store.apply(self.next, 1_000, &cmd)
    }
    fn apply_at(&mut self, now_ms: u64, cmd: Command) -> Result<ApplyResult, StoreError> {
        self.next += 1;
        self.store.apply(self.next, now_ms, &cmd)
    }
    fn register(&mut self, n: &str, svc: Option<NodeService>, checks: Vec<HealthCheck>) {
        let reg = Registration {
            node: node(n),
            service: svc,
            checks,
            ..Registration::default()
        };
        self.apply(Command::Register(Box::new(reg))).unwrap();
    }
    fn kv(&mut self, op: KvOp) -> bool {
        matches!(
            self.apply(Command::Kv(op)).unwrap(),
            ApplyResult::Bool(true)
        )
    }
}

fn set(key: &str, value: &str) -> KvOp {
    KvOp::Set {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
    }
}

#[test]
fn register_and_query_instances() {
    let mut h = Harness::new();
    h.register(
        "n1",
        Some(service("web1", "web")),
        vec![check("c1", "web1", CheckStatus::Passing)],
    );
    h.register("n2", Some(service("web2", "web")), vec![]);
    let inst = h.store.instances("web");
    assert_eq!(inst.len(), 2);
    let csn = h.store.check_service_nodes("web", false);
    assert_eq!(csn[0].checks.len(), 1);
    assert_eq!(csn[0].checks[0].service_name, "web");
    assert_eq!(
        h.store.service_tags().keys().copied().collect::<Vec<_>>(),
        vec!["web"]
    );
}

#[test]
fn unchanged_reregistration_keeps_indexes() {
    let mut h = Harness::new();
    h.register("n1", Some(service("web1", "web")), vec![]);
    let before = h.store.service_index("web");
    h.register("n1", Some(service("web1", "web")), vec![]);
    assert_eq!(h.store.service_index("web"), before);
    let mut changed = service("web1", "web");
    changed.port = 9090;
    h.register("n1", Some(changed), vec![]);
    assert!(h.store.service_index("web") > before);
    let svc = h.store.instances("web")[0].1;
    assert!(svc.modify_index > svc.create_index);
}

#[test]
fn refused_registration_changes_nothing() {
    let mut h = Harness::new();
    let reg = Registration {
        node: node("n1"),
        checks: vec![check("c", "missing-service", CheckStatus::Passing)],
        ..Registration::default()
    };
    assert!(matches!(
        h.apply(Command::Register(Box::new(reg))),
        Err(StoreError::UnknownServiceForCheck(_))
    ));
    assert!(h.store.node("n1").is_none());
}

#[test]
fn node_check_bumps_services_on_node() {
    let mut h = Harness::new();
    h.register(
        "n1",
        Some(service("web1", "web")),
        vec![check("serfHealth", "", CheckStatus::Passing)],
    );
    let before = h.store.service_index("web");
    h.apply(Command::UpdateCheck {
        node: "n1".into(),
        check_id: "serfHealth".into(),
        status: CheckStatus::Critical,
        output: "down".into(),
    })
    .unwrap();
    assert!(h.store.service_index("web") > before);
}

#[test]
fn deregister_node_removes_everything() {
    let mut h = Harness::new();
    h.register(
        "n1",
        Some(service("web1", "web")),
        vec![check("c1", "web1", CheckStatus::Passing)],
    );
    h.apply(Command::Deregister {
        node: "n1".into(),
        service_id: None,
        check_id: None,
    })
    .unwrap();
    assert!(h.store.instances("web").is_empty());
    assert_eq!(h.store.all_checks().count(), 0);
    assert_eq!(h.store.nodes().count(), 0);
}

#[test]
fn kv_cas_semantics() {
    let mut h = Harness::new();
    assert!(h.kv(KvOp::Cas {
        key: "a".into(),
        value: b"1".to_vec(),
        flags: 0,
        index: 0
    }));
    assert!(!h.kv(KvOp::Cas {
        key: "a".into(),
        value: b"2".to_vec(),
        flags: 0,
        index: 0
    }));
    let idx = h.store.kv_get("a").unwrap().modify_index;
    assert!(!h.kv(KvOp::Cas {
        key: "a".into(),
        value: b"2".to_vec(),
        flags: 0,
        index: idx + 100
    }));
    assert!(h.kv(KvOp::Cas {
        key: "a".into(),
        value: b"2".to_vec(),
        flags: 7,
        index: idx
    }));
    let e = h.store.kv_get("a").unwrap().clone();
    assert_eq!((e.value.as_slice(), e.flags), (&b"2"[..], 7));
    assert!(!h.kv(KvOp::DeleteCas {
        key: "a".into(),
        index: idx
    }));
    assert!(h.kv(KvOp::DeleteCas {
        key: "a".into(),
        index: e.modify_index
    }));
    assert!(h.store.kv_get("a").is_none());
}

#[test]
fn kv_prefix_index_survives_deletes() {
    let mut h = Harness::new();
    h.kv(set("foo/a", "1"));
    h.kv(set("foo/b", "2"));
    let before = h.store.kv_index("foo/");
    h.kv(KvOp::Delete {
        key: "foo/b".into(),
    });
    assert!(h.store.kv_index("foo/") > before);
    assert_eq!(h.store.kv_keys("", "/"), vec!["foo/".to_string()]);
    assert_eq!(h.store.kv_keys("foo/", "/"), vec!["foo/a".to_string()]);
}

#[test]
fn txn_rolls_back_everything() {
    let mut h = Harness::new();
    h.kv(set("x", "old"));
    let r = h
        .apply(Command::Txn(vec![
            set("x", "new"),
            set("y", "1"),
            KvOp::CheckNotExists { key: "x".into() },
        ]))
        .unwrap();
    assert!(matches!(r, ApplyResult::TxnRolledBack { op_index: 2, .. }));
    assert_eq!(h.store.kv_get("x").unwrap().value, b"old");
    assert!(h.store.kv_get("y").is_none());
    let r = h
        .apply(Command::Txn(vec![
            set("y", "1"),
            KvOp::Get { key: "x".into() },
        ]))
        .unwrap();
    match r {
        ApplyResult::Txn(entries) => {
            assert_eq!(entries.len(), 2);
            assert!(entries[0].value.is_empty());
            assert_eq!(entries[1].value, b"old");
        }
        other => panic!("{other:?}"),
    }
}

fn session(id: &str, behavior: SessionBehavior, checks: Vec<String>) -> Session {
    Session {
        id: id.into(),
        node: "n1".into(),
        behavior,
        lock_delay: 15_000_000_000,
        node_checks: checks,
        ..Session::default()
    }
}

#[test]
fn locks_handoff_and_lock_delay() {
    let mut h = Harness::new();
    h.register(
        "n1",
        None,
        vec![check("serfHealth", "", CheckStatus::Passing)],
    );
    h.apply(Command::SessionCreate(session(
        "s1",
        SessionBehavior::Release,
        vec!["serfHealth".into()],
    )))
    .unwrap();
    h.apply(Command::SessionCreate(session(
        "s2",
        SessionBehavior::Release,
        vec![],
    )))
    .unwrap();
    let lock = |s: &str| KvOp::Lock {
        key: "lock".into(),
        value: s.as_bytes().to_vec(),
        flags: 0,
        session: s.into(),
    };
    assert!(h.kv(lock("s1")));
    assert!(!h.kv(lock("s2")));
    assert_eq!(h.store.kv_get("lock").unwrap().lock_index, 1);
    // The holder's check goes critical: the session dies, the key is released and enters lock-delay.
    h.apply_at(
        10_000,
        Command::UpdateCheck {
            node: "n1".into(),
            check_id: "serfHealth".into(),
            status: CheckStatus::Critical,
            output: String::new(),
        },
    )
    .unwrap();
    assert!(h.store.session("s1").is_none());
    assert_eq!(h.store.kv_get("lock").unwrap().session, "");
    assert!(!matches!(
        h.apply_at(20_000, Command::Kv(lock("s2"))).unwrap(),
        ApplyResult::Bool(true)
    ));
    assert!(matches!(
        h.apply_at(26_000, Command::Kv(lock("s2"))).unwrap(),
        ApplyResult::Bool(true)
    ));
    assert_eq!(h.store.kv_get("lock").unwrap().lock_index, 2);
}

#[test]
fn session_needs_healthy_checks_and_delete_behavior_deletes() {
    let mut h = Harness::new();
    h.register("n1", None, vec![check("bad", "", CheckStatus::Critical)]);
    assert!(matches!(
        h.apply(Command::SessionCreate(session(
            "s",
            SessionBehavior::Delete,
            vec!["bad".into()]
        ))),
        Err(StoreError::CriticalCheck(_))
    ));
    h.apply(Command::SessionCreate(session(
        "s",
        SessionBehavior::Delete,
        vec![],
    )))
    .unwrap();
    assert!(h.kv(KvOp::Lock {
        key: "k".into(),
        value: vec![],
        flags: 0,
        session: "s".into()
    }));
    h.apply(Command::SessionDestroy { id: "s".into() }).unwrap();
    assert!(h.store.kv_get("k").is_none());
}

#[test]
fn snapshot_round_trip() {
    let mut h = Harness::new();
    h.register(
        "n1",
        Some(service("web1", "web")),
        vec![check("c1", "web1", CheckStatus::Warning)],
    );
    h.kv(set("a/b", "v"));
    h.intention("web", "db");
    let bytes = h.store.snapshot();
    assert!(bytes.len() > 2, "the snapshot must not be empty");
    let mut restored = Store::new();
    restored.restore(&bytes).unwrap();
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.instances("web").len(), 1);
    assert_eq!(restored.last_index(), h.store.last_index());
    assert_eq!(restored.intentions().len(), 1);
}

#[test]
fn a_replica_snapshot_leaves_kv_out_and_skips_move_its_index() {
    let mut h = Harness::new();
    h.register("n1", Some(service("web1", "web")), Vec::new());
    h.kv(set("a/b", "v"));
    h.kv(KvOp::Delete { key: "a/b".into() });
    h.kv(set("c", "w"));
    h.intention("web", "db");
    let full = h.store.snapshot();
    let mut replica = Store::new();
    replica.restore(&h.store.snapshot_without_kv()).unwrap();
    assert_eq!(replica.instances("web").len(), 1, "the catalog is there");
    assert_eq!(replica.intentions().len(), 1, "and the intentions");
    assert!(replica.kv_get("c").is_none() && replica.kv_list("").next().is_none());
    assert_eq!(replica.last_index(), h.store.last_index());
    assert_eq!(h.store.snapshot(), full, "the store itself keeps its KV");
    replica.skip_to(h.store.last_index() + 5);
    assert_eq!(replica.last_index(), h.store.last_index() + 5);
    replica.skip_to(1);
    assert_eq!(
        replica.last_index(),
        h.store.last_index() + 5,
        "an index never goes back"
    );
}

#[test]
fn watches_fire_for_touched_tables_only() {
    let mut h = Harness::new();
    let mut kv = h.store.watches().subscribe(Table::Kv);
    let mut nodes = h.store.watches().subscribe(Table::Nodes);
    h.kv(set("a", "1"));
    assert!(kv.has_changed().unwrap());
    assert!(!nodes.has_changed().unwrap());
    kv.mark_unchanged();
    nodes.mark_unchanged();
}

#[test]
fn a_second_ca_initialisation_under_another_cluster_id_is_refused() {
    let mut h = Harness::new();
    let setup = |cluster_id: &str| {
        Command::CaSet(Box::new(crate::CaSetup {
            cluster_id: cluster_id.into(),
            config: weft_ca::CaConfig::default(),
            roots: Vec::new(),
            serial: 1,
        }))
    };
    h.apply(setup("first")).unwrap();
    // Two initialisations raced (the dev agent's start and the leader loop): the second must not replace the
    // first's trust domain, which leaves already carry.
    assert_eq!(
        h.apply(setup("second")),
        Err(StoreError::CaExists("first".into()))
    );
    assert_eq!(h.store.ca().cluster_id, "first");
    // Updates under the same cluster ID (rotations) still apply.
    h.apply(setup("first")).unwrap();
}
