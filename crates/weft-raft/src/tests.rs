//! Three members in one process, each with its own data dir and a real HTTP listener on 127.0.0.1:0: election,
//! replication, leader loss, and recovery from disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;
use weft_state::{KvOp, Store};

struct Member {
    node: Arc<RaftNode>,
    store: Arc<RwLock<Store>>,
    server: tokio::task::JoinHandle<()>,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weft-raft-{}-{}-{name}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Serves `/v1/internal/raft/{kind}` for one member on an already bound listener.
fn serve(listener: tokio::net::TcpListener, node: Arc<RaftNode>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let node = node.clone();
                        async move {
                            let kind = req
                                .uri()
                                .path()
                                .rsplit('/')
                                .next()
                                .unwrap_or("")
                                .to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, out) = match node.handle(&kind, &body).await {
                                Ok(out) => (200, out),
                                Err(e) => (400, e.to_string().into_bytes()),
                            };
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(out)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}

async fn start_member(dir: &std::path::Path, id: u64, listener: tokio::net::TcpListener) -> Member {
    let addr = listener.local_addr().unwrap().to_string();
    let store = Arc::new(RwLock::new(Store::new()));
    let node = RaftNode::start(
        id,
        &addr,
        dir,
        store.clone(),
        &Timings::default(),
        weft_rpc::http_client(None, None),
    )
    .await
    .unwrap();
    let server = serve(listener, node.clone());
    Member {
        node,
        store,
        server,
    }
}

fn set(key: &str, value: &str) -> Request {
    Request {
        now_ms: 0,
        commands: vec![Command::Kv(KvOp::Set {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            flags: 0,
        })],
    }
}

fn value(store: &RwLock<Store>, key: &str) -> Option<String> {
    store
        .read()
        .unwrap()
        .kv_get(key)
        .map(|e| String::from_utf8_lossy(&e.value).to_string())
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn leader_of(members: &[&Member]) -> usize {
    for _ in 0..200 {
        if let Some(i) = members.iter().position(|m| m.node.is_leader()) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no leader elected");
}

/// Three members (ids 1-3, data dirs named `{prefix}0..2`) that have formed a cluster; their RPC addresses.
async fn three_members(prefix: &str) -> (Vec<Member>, Vec<String>) {
    let dirs: Vec<PathBuf> = (0..3).map(|i| temp_dir(&format!("{prefix}{i}"))).collect();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        members.push(start_member(&dirs[i], i as u64 + 1, l).await);
    }
    let all: BTreeMap<u64, String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a.clone()))
        .collect();
    members[0].node.initialize(all).await.unwrap();
    (members, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_fail_over_and_recover_from_disk() {
    let (mut members, addrs) = three_members("m").await;
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;

    // A write through the leader is applied on every member.
    let (index, result) = members[leader].node.write(set("a", "1")).await.unwrap()[0].clone();
    assert_eq!(result, Ok(weft_state::ApplyResult::Bool(true)));
    assert!(index > 0);
    for m in &members {
        wait_for("replication", || {
            value(&m.store, "a").as_deref() == Some("1")
        })
        .await;
    }

    // A follower refuses writes and names the leader.
    let follower = (leader + 1) % 3;
    match members[follower].node.write(set("b", "2")).await {
        Err(WriteError::ForwardToLeader(Some((_, addr)))) => assert_eq!(addr, addrs[leader]),
        other => panic!("expected a forward to the leader, got {other:?}"),
    }

    // Losing the leader: the other two elect a new one and keep accepting writes.
    let old = members.remove(leader);
    old.node.shutdown().await;
    old.server.abort();
    let refs: Vec<&Member> = members.iter().collect();
    let new_leader = leader_of(&refs).await;
    let (_, result) = members[new_leader].node.write(set("b", "2")).await.unwrap()[0].clone();
    assert!(result.is_ok());
    for m in &members {
        wait_for("replication after failover", || {
            value(&m.store, "b").as_deref() == Some("2")
        })
        .await;
    }
    for m in members.drain(..) {
        m.node.shutdown().await;
        m.server.abort();
    }
}

/// A one-member cluster (id 7) in `dir`, initialised and leading; its member and RPC address.
async fn single_leader(dir: &std::path::Path) -> (Member, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let m = start_member(dir, 7, listener).await;
    m.node
        .initialize([(7, addr.clone())].into_iter().collect())
        .await
        .unwrap();
    leader_of(&[&m]).await;
    (m, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_recovers_its_state_from_log_and_snapshot() {
    let dir = temp_dir("single");
    let (m, addr) = single_leader(&dir).await;
    assert!(m.node.write(set("before-snapshot", "x")).await.unwrap()[0]
        .1
        .is_ok());
    m.node.trigger_snapshot().await.unwrap();
    wait_for("snapshot file", || dir.join("snapshot.bin").exists()).await;
    assert!(m.node.write(set("after-snapshot", "y")).await.unwrap()[0]
        .1
        .is_ok());
    assert!(m.node.has_state());
    m.node.shutdown().await;
    m.server.abort();
    drop(m);
    // openraft's tasks let go of the log file shortly after shutdown (a restarted process has no such wait).
    wait_for("the log file to be released", || {
        log_store::LogStore::open(&dir.join("raft.redb")).is_ok()
    })
    .await;

    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let m = start_member(&dir, 7, listener).await;
    leader_of(&[&m]).await;
    wait_for("state after restart", || {
        value(&m.store, "before-snapshot").as_deref() == Some("x")
            && value(&m.store, "after-snapshot").as_deref() == Some("y")
    })
    .await;
    m.node.shutdown().await;
    m.server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_from_a_newer_format_is_refused() {
    let dir = temp_dir("newer");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let db = redb::Database::create(dir.join("raft.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut t = tx.open_table(def).unwrap();
            t.insert("format", b"99".as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = log_store::LogStore::open(&dir.join("raft.redb"))
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("newer Weft (format 99"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn raft_ids_are_stable_and_distinct() {
    assert_eq!(raft_id("a"), raft_id("a"));
    assert_ne!(raft_id("node-1"), raft_id("node-2"));
}

#[tokio::test]
async fn a_format_1_log_moves_into_the_entries_file() {
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
    let dir = temp_dir("format1");
    std::fs::create_dir_all(&dir).unwrap();
    let entry = |i: u64| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 7), i),
        payload: EntryPayload::Blank,
    };
    {
        let db = redb::Database::create(dir.join("raft.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            tx.open_table(meta)
                .unwrap()
                .insert("format", b"1".as_slice())
                .unwrap();
            let log: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
            let mut t = tx.open_table(log).unwrap();
            for i in 1..=3 {
                t.insert(i, serde_json::to_vec(&entry(i)).unwrap().as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    for _ in 0..2 {
        // Opened twice: the move happens once, and the second open reads the file.
        let mut store = log_store::LogStore::open(&dir.join("raft.redb")).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3));
        let read = store.try_get_log_entries(2..=3).await.unwrap();
        assert_eq!(read, vec![entry(2), entry(3)]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The data dir's entries and their permission bits (the dir itself first).
fn modes(dir: &std::path::Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut found = vec![(".".to_string(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        found.push((name, mode(&path)));
    }
    found.sort();
    found
}

fn assert_owner_only(dir: &std::path::Path) {
    let found = modes(dir);
    for (name, mode) in &found {
        let want = if name == "." { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name} is {mode:o} in {found:?}");
    }
    for name in ["raft.redb", "raft.log", "snapshot.bin"] {
        assert!(
            found.iter().any(|(n, _)| n == name),
            "no {name} in {found:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_and_snapshot_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("modes");
    let (m, addr) = single_leader(&dir).await;
    assert!(m.node.write(set("k", "v")).await.unwrap()[0].1.is_ok());
    m.node.trigger_snapshot().await.unwrap();
    wait_for("snapshot file", || dir.join("snapshot.bin").exists()).await;
    assert_owner_only(&dir);
    m.node.shutdown().await;
    m.server.abort();
    drop(m);
    wait_for("the log file to be released", || {
        log_store::LogStore::open(&dir.join("raft.redb")).is_ok()
    })
    .await;

    // A data dir an earlier version left open is tightened when opened again.
    for (name, _) in modes(&dir) {
        let mode = if name == "." { 0o755 } else { 0o644 };
        std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let m = start_member(&dir, 7, listener).await;
    leader_of(&[&m]).await;
    assert_owner_only(&dir);
    m.node.shutdown().await;
    m.server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that never catches up (gone mid-join) is removed again instead of hanging in the configuration as a
/// learner the leader replicates to forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_that_never_catches_up_is_removed_again() {
    let dir = temp_dir("learner");
    let (m, _) = single_leader(&dir).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let started = std::time::Instant::now();
    let e = m
        .node
        .add_server(9, &dead, std::time::Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did not catch up"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    wait_for("the learner removed", || {
        m.node.members().iter().all(|(id, _, _)| *id != 9)
    })
    .await;
    // The cluster still writes.
    assert!(m.node.write(set("after", "x")).await.unwrap()[0].1.is_ok());
    m.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_server_named_and_writes_carry_on() {
    let (mut members, _) = three_members("t").await;
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    members[leader].node.write(set("a", "1")).await.unwrap();

    // Refusals: not the leader, itself, a stranger.
    let follower = (leader + 1) % 3;
    assert_eq!(
        members[follower].node.transfer_leadership(None).await,
        Err(TransferError::NotLeader)
    );
    let own = members[leader].node.id();
    assert_eq!(
        members[leader].node.transfer_leadership(Some(own)).await,
        Err(TransferError::ToItself)
    );
    assert_eq!(
        members[leader].node.transfer_leadership(Some(99)).await,
        Err(TransferError::NotAVoter("99".into()))
    );

    // Writes keep coming throughout, to whoever leads: a transfer must not let the logs part (the old leader
    // appending while the target asks for votes would have the others refuse it).
    let nodes: Vec<Arc<RaftNode>> = members.iter().map(|m| m.node.clone()).collect();
    let writer = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            for node in &nodes {
                if node.is_leader() {
                    let _ = node.write(set(&format!("load-{n}"), "x")).await;
                    n += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Each follower in turn is named, and leads; twice round, so the switches come back every time.
    for round in 0..4 {
        let refs: Vec<&Member> = members.iter().collect();
        let leader = leader_of(&refs).await;
        let target = (leader + 1 + round % 2) % 3;
        let target_id = members[target].node.id();
        let started = std::time::Instant::now();
        let new = members[leader]
            .node
            .transfer_leadership(Some(target_id))
            .await
            .unwrap();
        assert_eq!(new, target_id, "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "round {round} took {:?}",
            started.elapsed()
        );
        wait_for("the target to lead", || members[target].node.is_leader()).await;
        let key = format!("after-{round}");
        members[target].node.write(set(&key, "x")).await.unwrap();
        for m in &members {
            wait_for("replication", || value(&m.store, &key).is_some()).await;
        }
    }
    // With no name, leadership goes to some other voter.
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    let new = members[leader]
        .node
        .transfer_leadership(None)
        .await
        .unwrap();
    assert_ne!(new, members[leader].node.id());
    writer.abort();

    // The old leader's elections came back: when the new leader goes, a leader is elected again.
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs).await;
    let gone = members.remove(leader);
    gone.node.shutdown().await;
    gone.server.abort();
    let refs: Vec<&Member> = members.iter().collect();
    leader_of(&refs).await;
    for m in members.drain(..) {
        m.node.shutdown().await;
        m.server.abort();
    }
}
