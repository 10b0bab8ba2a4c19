//! Real UDP sockets on 127.0.0.1: joining, failure detection, graceful leave, force-leave, and encryption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::time::Instant;

fn tags(role: Role) -> Tags {
    Tags {
        role,
        datacenter: "dc1".into(),
        rpc: (role == Role::Server).then(|| "127.0.0.1:8300".to_string()),
        expect: 3,
        build: "test".into(),
    }
}

async fn start(name: &str, key: Option<&str>) -> Gossip {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    let mut cfg = GossipConfig::new(name, addr, addr, tags(Role::Server));
    cfg.probe_period = Duration::from_millis(200);
    cfg.keyring = key.map(|k| Keyring::from_base64(k).unwrap());
    Gossip::start(cfg).await.unwrap()
}

fn status_of(g: &Gossip, name: &str) -> Option<Status> {
    g.members()
        .into_iter()
        .find(|m| m.member.name == name)
        .map(|m| m.status)
}

async fn until(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_fail_and_leave() {
    let a = start("a", None).await;
    let b = start("b", None).await;
    let c = start("c", None).await;
    b.join(vec![a.local().addr]).await.unwrap();
    c.join(vec![a.local().addr]).await.unwrap();
    for g in [&a, &b, &c] {
        until("everyone alive", Duration::from_secs(10), || {
            g.members()
                .iter()
                .filter(|m| m.status == Status::Alive)
                .count()
                == 3
        })
        .await;
    }
    assert_eq!(a.servers().len(), 3);

    // c leaves gracefully: left, not failed.
    c.leave().await.unwrap();
    until("c left", Duration::from_secs(10), || {
        status_of(&a, "c") == Some(Status::Left)
    })
    .await;

    // b dies (its task and socket go away): failed within a few probe periods.
    drop(b);
    until("b failed", Duration::from_secs(10), || {
        status_of(&a, "b") == Some(Status::Failed)
    })
    .await;
    // force-leave turns the failed member into left.
    assert!(a.force_leave("b").await.unwrap());
    assert_eq!(status_of(&a, "b"), Some(Status::Left));
    assert!(!a.force_leave("nobody").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_the_wrong_key_cannot_join() {
    let key = generate_key().unwrap();
    let other = generate_key().unwrap();
    let a = start("a", Some(&key)).await;
    let b = start("b", Some(&key)).await;
    let intruder = start("x", Some(&other)).await;
    let plain = start("p", None).await;
    b.join(vec![a.local().addr]).await.unwrap();
    intruder.join(vec![a.local().addr]).await.unwrap();
    plain.join(vec![a.local().addr]).await.unwrap();
    until("a and b see each other", Duration::from_secs(10), || {
        status_of(&a, "b") == Some(Status::Alive) && status_of(&b, "a") == Some(Status::Alive)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_of(&a, "x"), None);
    assert_eq!(status_of(&a, "p"), None);
    assert_eq!(intruder.members().len(), 1);
}

#[test]
fn keys_must_be_base64_of_16_or_32_bytes() {
    assert!(Keyring::from_base64(&generate_key().unwrap()).is_ok());
    assert_eq!(
        Keyring::from_base64("not base64!").err(),
        Some(KeyError::NotBase64)
    );
    assert_eq!(
        Keyring::from_base64("AAAA").err(),
        Some(KeyError::BadLength(3))
    );
    let k = Keyring::from_base64(&generate_key().unwrap()).unwrap();
    let sealed = k.seal(b"hello").unwrap();
    assert_eq!(k.open(&sealed).as_deref(), Some(&b"hello"[..]));
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(k.open(&tampered), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotates_across_running_members_without_a_gap() {
    let k1 = generate_key().unwrap();
    let k2 = generate_key().unwrap();
    let a = start("a", Some(&k1)).await;
    let b = start("b", Some(&k1)).await;
    let c = start("c", Some(&k1)).await;
    b.join(vec![a.local().addr]).await.unwrap();
    c.join(vec![a.local().addr]).await.unwrap();
    let all_alive = |g: &Gossip| {
        g.members()
            .iter()
            .filter(|m| m.status == Status::Alive)
            .count()
            == 3
    };
    until("everyone alive", Duration::from_secs(10), || {
        all_alive(&a) && all_alive(&b) && all_alive(&c)
    })
    .await;

    let listed = a.keyring_operation(KeyOp::List).await.unwrap();
    assert_eq!(listed.num_nodes, 3);
    assert!(listed.silent.is_empty());
    assert!(listed.answers.iter().all(|n| n.keys == vec![k1.clone()]));

    // Asked of b, carried out on every member.
    let installed = b
        .keyring_operation(KeyOp::Install(k2.clone()))
        .await
        .unwrap();
    assert_eq!(installed.answers.len(), 3, "{installed:?}");
    assert!(installed
        .answers
        .iter()
        .all(|n| n.error.is_none() && n.keys == vec![k1.clone(), k2.clone()]));
    let used = c.keyring_operation(KeyOp::Use(k2.clone())).await.unwrap();
    assert!(
        used.answers
            .iter()
            .all(|n| n.primary() == Some(k2.as_str())),
        "{used:?}"
    );
    let removed = a
        .keyring_operation(KeyOp::Remove(k1.clone()))
        .await
        .unwrap();
    assert!(
        removed.answers.iter().all(|n| n.keys == vec![k2.clone()]),
        "{removed:?}"
    );

    // The primary cannot go; every member says so.
    let refused = a
        .keyring_operation(KeyOp::Remove(k2.clone()))
        .await
        .unwrap();
    assert_eq!(refused.answers.len(), 3);
    assert!(refused
        .answers
        .iter()
        .all(|n| n.error.as_deref() == Some("Removing the primary key is not allowed")));

    // Gossip carried on throughout, a newcomer with the new key joins, and one with only the old key cannot.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(all_alive(&a) && all_alive(&b) && all_alive(&c));
    let newcomer = start("d", Some(&k2)).await;
    let stale = start("x", Some(&k1)).await;
    newcomer.join(vec![a.local().addr]).await.unwrap();
    stale.join(vec![a.local().addr]).await.unwrap();
    until("d joined", Duration::from_secs(10), || {
        status_of(&a, "d") == Some(Status::Alive)
    })
    .await;
    assert_eq!(status_of(&a, "x"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_encryption_keyring_operations_change_nothing_anywhere() {
    let a = start("a", None).await;
    let b = start("b", None).await;
    b.join(vec![a.local().addr]).await.unwrap();
    until("b alive", Duration::from_secs(10), || {
        status_of(&a, "b") == Some(Status::Alive)
    })
    .await;
    let answer = a
        .keyring_operation(KeyOp::Install(generate_key().unwrap()))
        .await
        .unwrap();
    assert_eq!(answer.num_nodes, 1, "nothing is sent without encryption");
    assert_eq!(
        answer.answers[0].error.as_deref(),
        Some("No keyring to modify (encryption not enabled)")
    );
}

#[test]
fn retransmissions_grow_with_the_cluster() {
    use crate::runner::retransmissions;
    assert_eq!(retransmissions(1).get(), 4);
    assert_eq!(retransmissions(50).get(), 11);
    assert_eq!(retransmissions(1000).get(), 19);
}
