//! Weft against a real Consul client library, rs-consul 0.15 (crates.io), used exactly as its users do: catalog
//! registration, service and node discovery, the KV store (incl. CAS and a blocking read), and its session-based
//! distributed lock. Every call goes through rs-consul's own request building and response decoding, so a wire
//! format difference between Weft and Consul shows up as a failed call here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use rs_consul::{
    Config, Consul, ConsulError, CreateOrUpdateKeyRequest, DeleteKeyRequest,
    DeregisterEntityPayload, GetNodesRequest, GetServiceNodesRequest, LockRequest,
    LockWatchRequest, QueryOptions, ReadKeyRequest, RegisterEntityCheck, RegisterEntityPayload,
    RegisterEntityService,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use weft_testkit::DevAgent;

fn client(agent: &DevAgent) -> Consul {
    Consul::new(Config {
        address: agent.url(""),
        token: None,
        ..Default::default()
    })
}

fn redis_registration(node: &str) -> RegisterEntityPayload {
    RegisterEntityPayload {
        ID: None,
        Node: node.to_string(),
        Address: "10.1.2.3".to_string(),
        Datacenter: None,
        TaggedAddresses: HashMap::new(),
        NodeMeta: HashMap::from([("rack".to_string(), "r1".to_string())]),
        Service: Some(RegisterEntityService {
            ID: Some("redis-1".to_string()),
            Service: "redis".to_string(),
            Tags: vec!["primary".to_string()],
            TaggedAddresses: HashMap::new(),
            Meta: HashMap::from([("version".to_string(), "7".to_string())]),
            Port: Some(6379),
            Namespace: None,
        }),
        Checks: vec![RegisterEntityCheck {
            Node: None,
            CheckID: Some("redis-alive".to_string()),
            Name: "redis alive".to_string(),
            Notes: None,
            Status: Some("passing".to_string()),
            ServiceID: Some("redis-1".to_string()),
            Definition: HashMap::new(),
        }],
        SkipNodeUpdate: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_register_then_discover_services_and_nodes() -> Result<()> {
    let agent = DevAgent::start()?;
    let consul = client(&agent);
    consul
        .register_entity(&redis_registration("ext-node-1"))
        .await?;

    let names = consul.get_all_registered_service_names(None).await?;
    let mut services = names.response.clone();
    services.sort();
    assert_eq!(services, ["consul", "redis"]);
    assert!(
        names.index > 1,
        "X-Consul-Index reached the client: {}",
        names.index
    );

    let nodes = consul
        .get_service_nodes(
            GetServiceNodesRequest {
                service: "redis",
                passing: true,
                ..Default::default()
            },
            None,
        )
        .await?;
    assert_eq!(nodes.response.len(), 1);
    let sn = &nodes.response[0];
    assert_eq!(sn.node.node, "ext-node-1");
    assert_eq!(sn.node.address, "10.1.2.3");
    assert_eq!(sn.node.datacenter, "dc1");
    assert_eq!(sn.service.id, "redis-1");
    assert_eq!(sn.service.service, "redis");
    assert_eq!(sn.service.port, 6379);
    assert_eq!(sn.service.tags, ["primary"]);
    assert!(nodes.index > 1);

    let addrs = consul
        .get_service_addresses_and_ports("redis", None)
        .await?;
    assert_eq!(addrs, [("10.1.2.3".to_string(), 6379)]);

    let all_nodes = consul.get_nodes(GetNodesRequest::default(), None).await?;
    let mut names: Vec<&str> = all_nodes.response.iter().map(|n| n.node.as_str()).collect();
    names.sort();
    let mut want = vec!["ext-node-1", agent.node()];
    want.sort();
    assert_eq!(names, want);
    let ext = all_nodes
        .response
        .iter()
        .find(|n| n.node == "ext-node-1")
        .unwrap();
    assert_eq!(ext.address, "10.1.2.3");
    assert_eq!(ext.Meta.as_ref().unwrap()["rack"], "r1");

    // A blocking read of the service through rs-consul's query options, woken by the deregistration.
    let index = nodes.index;
    let watcher = {
        let consul = client(&agent);
        tokio::spawn(async move {
            consul
                .get_service_nodes(
                    GetServiceNodesRequest {
                        service: "redis",
                        ..Default::default()
                    },
                    Some(QueryOptions {
                        index: Some(index),
                        wait: Some(Duration::from_secs(5)),
                        timeout: Some(Duration::from_secs(20)),
                        ..Default::default()
                    }),
                )
                .await
        })
    };
    consul
        .deregister_entity(&DeregisterEntityPayload {
            Node: Some("ext-node-1".to_string()),
            Datacenter: None,
            CheckID: None,
            ServiceID: Some("redis-1".to_string()),
            Namespace: None,
        })
        .await?;
    let woken = watcher.await??;
    assert!(woken.index > index);
    assert!(woken.response.is_empty());
    let names = consul.get_all_registered_service_names(None).await?;
    assert_eq!(names.response, ["consul"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_create_read_cas_and_delete() -> Result<()> {
    let agent = DevAgent::start()?;
    let consul = client(&agent);
    let (ok, _) = consul
        .create_or_update_key(
            CreateOrUpdateKeyRequest {
                key: "app/config",
                flags: 9,
                ..Default::default()
            },
            b"hello".to_vec(),
        )
        .await?;
    assert!(ok);

    let read = consul
        .read_key(ReadKeyRequest {
            key: "app/config",
            ..Default::default()
        })
        .await?;
    assert_eq!(read.response.len(), 1);
    let entry = &read.response[0];
    assert_eq!(entry.key, "app/config");
    assert_eq!(entry.value.as_deref(), Some("hello"));
    assert_eq!(entry.flags, 9);
    assert_eq!(entry.session, None);
    assert!(entry.modify_index > 0);
    assert_eq!(read.index, entry.modify_index as u64);

    // CAS: a stale index loses, the current one wins.
    let stale = entry.modify_index - 1;
    let (ok, _) = consul
        .create_or_update_key(
            CreateOrUpdateKeyRequest {
                key: "app/config",
                check_and_set: Some(stale),
                ..Default::default()
            },
            b"lost".to_vec(),
        )
        .await?;
    assert!(!ok, "CAS with a stale index must fail");
    let (ok, _) = consul
        .create_or_update_key(
            CreateOrUpdateKeyRequest {
                key: "app/config",
                check_and_set: Some(entry.modify_index),
                ..Default::default()
            },
            b"won".to_vec(),
        )
        .await?;
    assert!(ok);
    // The synchronous (ureq) variant.
    let ok = consul.create_or_update_key_sync(
        CreateOrUpdateKeyRequest {
            key: "app/other",
            ..Default::default()
        },
        b"sync".to_vec(),
    )?;
    assert!(ok);

    let tree = consul
        .read_key(ReadKeyRequest {
            key: "app/",
            recurse: true,
            ..Default::default()
        })
        .await?;
    let got: Vec<(String, Option<String>)> = tree
        .response
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("app/config".to_string(), Some("won".to_string())),
            ("app/other".to_string(), Some("sync".to_string()))
        ]
    );

    // A blocking read woken by a write.
    let index = tree.index;
    let watcher = {
        let consul = client(&agent);
        tokio::spawn(async move {
            let started = Instant::now();
            let r = consul
                .read_key(ReadKeyRequest {
                    key: "app/config",
                    index: Some(index),
                    wait: Duration::from_secs(5),
                    ..Default::default()
                })
                .await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    consul
        .create_or_update_key(
            CreateOrUpdateKeyRequest {
                key: "app/config",
                ..Default::default()
            },
            b"pushed".to_vec(),
        )
        .await?;
    let (woken, took) = watcher.await?;
    let woken = woken?;
    assert!(
        took < Duration::from_secs(4),
        "woken by the timeout, not the write: {took:?}"
    );
    assert_eq!(woken.response[0].value.as_deref(), Some("pushed"));
    assert!(woken.index > index);

    assert!(
        consul
            .delete_key(DeleteKeyRequest {
                key: "app/config",
                ..Default::default()
            })
            .await?
    );
    match consul
        .read_key(ReadKeyRequest {
            key: "app/config",
            ..Default::default()
        })
        .await
    {
        Err(ConsulError::UnexpectedResponseCode(code, _)) => assert_eq!(code.as_u16(), 404),
        other => panic!("expected a 404 for a deleted key, got {other:?}"),
    }
    assert!(
        consul
            .delete_key(DeleteKeyRequest {
                key: "app",
                recurse: true,
                ..Default::default()
            })
            .await?
    );
    assert_eq!(agent.get("/v1/kv/app/other").await?.status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_lock_is_exclusive_and_released_on_drop() -> Result<()> {
    let agent = DevAgent::start()?;
    let consul = client(&agent);
    let request = LockRequest {
        key: "locks/leader",
        timeout: Duration::from_secs(10),
        lock_delay: Duration::from_secs(1),
        ..Default::default()
    };
    let lock = consul.get_lock(request, b"holder-1").await?;
    assert!(!lock.session_id.is_empty());

    // The session rs-consul created carries what it asked for.
    let info = agent
        .get(&format!("/v1/session/info/{}", lock.session_id))
        .await?
        .json()?;
    assert_eq!(info[0]["TTL"], "10s");
    assert_eq!(info[0]["Behavior"], "release");
    assert_eq!(info[0]["LockDelay"], 1_000_000_000u64);

    let held = consul
        .watch_lock(LockWatchRequest {
            key: "locks/leader",
            ..Default::default()
        })
        .await?;
    assert_eq!(
        held.response[0].session.as_deref(),
        Some(lock.session_id.as_str())
    );
    assert_eq!(held.response[0].value.as_deref(), Some("holder-1"));
    assert_eq!(held.response[0].lock_index, 1);

    // A second contender is refused, with the index to watch.
    let watch_index = match consul.get_lock(request, b"holder-2").await {
        Err(ConsulError::LockAcquisitionFailure(index)) => index,
        Err(e) => panic!("expected LockAcquisitionFailure, got {e}"),
        Ok(l) => panic!("second lock granted to session {}", l.session_id),
    };
    assert!(watch_index > 0);

    // The contender watches the key from that index (the leader-election pattern); dropping the lock releases it
    // (synchronously, via ?release=) and wakes the watcher.
    let watcher = {
        let consul = client(&agent);
        tokio::spawn(async move {
            let started = Instant::now();
            let r = consul
                .watch_lock(LockWatchRequest {
                    key: "locks/leader",
                    index: Some(watch_index),
                    wait: Duration::from_secs(8),
                    ..Default::default()
                })
                .await;
            (r, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !watcher.is_finished(),
        "the watch returned while the lock was still held"
    );
    let first_session = lock.session_id.clone();
    drop(lock);
    let (released, took) = watcher.await?;
    let released = released?;
    assert!(
        took < Duration::from_secs(6),
        "woken by the timeout, not the release: {took:?}"
    );
    assert!(released.index > watch_index);
    assert_eq!(
        released.response[0].session, None,
        "lock still held after drop"
    );
    assert_eq!(released.response[0].lock_index, 1);

    // An explicit release starts no lock-delay: the next contender gets it at once.
    let lock = consul.get_lock(request, b"holder-3").await?;
    assert_ne!(lock.session_id, first_session);
    let now = consul
        .watch_lock(LockWatchRequest {
            key: "locks/leader",
            ..Default::default()
        })
        .await?;
    assert_eq!(
        now.response[0].session.as_deref(),
        Some(lock.session_id.as_str())
    );
    assert_eq!(now.response[0].value.as_deref(), Some("holder-3"));
    assert_eq!(now.response[0].lock_index, 2);
    Ok(())
}
