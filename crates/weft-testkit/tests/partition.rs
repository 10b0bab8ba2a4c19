//! Real network faults: three servers in Docker containers (an image built `FROM scratch` from the built binary),
//! the leader cut off from its peers with `docker network disconnect` while clients keep reading and writing.
//!
//! Each server has two networks: the cluster network (Raft and gossip) and a client network on which the test
//! reaches its HTTP API. Cutting the cluster network isolates a server from its peers while the test can still ask
//! it things, so "the minority refuses writes" is observed, not just "the minority is unreachable".
//!
//! A history of concurrent writes and `?consistent` reads is recorded throughout and checked for linearizability
//! per key. (Default-mode reads are not in it: like Consul's, a deposed leader may serve them for a moment before it
//! learns of the new term; `?consistent` is the mode that promises linearizability.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The test cluster's gossip key (it also keys RPC authentication).
const GOSSIP_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

use anyhow::{bail, ensure, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_testkit::docker::{self, Container, Image, Network};
use weft_testkit::linearizable::{self, Kind, Op};
use weft_testkit::weft_binary;

struct Cluster {
    // Field order is drop order: containers before the networks they use, the image last.
    servers: Vec<Container>,
    cluster_net: Network,
    client_net: Network,
    _image: Image,
}

impl Cluster {
    fn cluster_ip(&self, i: usize) -> String {
        self.cluster_net.ip(11 + i as u8)
    }

    fn http(&self, i: usize) -> String {
        format!("http://{}:8500", self.client_net.ip(11 + i as u8))
    }

    fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|c| format!("--- {}\n{}", c.name, c.logs()))
            .collect()
    }
}

fn start() -> Result<Cluster> {
    let tag = format!("weft-test:{}", std::process::id());
    let image = Image::build(&weft_binary()?, &tag)?;
    let id = std::process::id();
    let cluster_net = Network::create(&format!("weft-raft-{id}"))?;
    let client_net = Network::create(&format!("weft-api-{id}"))?;
    let mut cluster = Cluster {
        servers: Vec::new(),
        cluster_net,
        client_net,
        _image: image,
    };
    let join: Vec<String> = (0..3)
        .flat_map(|i| ["-retry-join".to_string(), cluster.cluster_ip(i)])
        .collect();
    for i in 0..3 {
        let mut args: Vec<String> = [
            "agent",
            "-server",
            "-bootstrap-expect",
            "3",
            "-data-dir",
            "/data",
            "-client",
            "0.0.0.0",
            "-node",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("server-{i}"));
        args.extend(["-bind".to_string(), cluster.cluster_ip(i)]);
        // Servers on a network others can reach must authenticate RPC: the gossip key signs it.
        args.extend(["-encrypt".to_string(), GOSSIP_KEY.to_string()]);
        args.extend(join.iter().cloned());
        let name = format!("weft-part-{id}-{i}");
        let c = Container::run(
            &cluster._image,
            &name,
            &cluster.cluster_net,
            &cluster.cluster_ip(i),
            &args,
        )?;
        c.connect(&cluster.client_net, &cluster.client_net.ip(11 + i as u8))?;
        cluster.servers.push(c);
    }
    Ok(cluster)
}

fn client() -> reqwest::Client {
    // Workspace builds give reqwest rustls without a provider (see weft_testkit::http).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()
        .unwrap()
}

/// The index of the server every one of `among` names as leader (other than `not`, when given).
async fn leader(
    c: &Cluster,
    http: &reqwest::Client,
    among: &[usize],
    not: Option<usize>,
) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut named = Vec::new();
        for &i in among {
            if let Ok(r) = http
                .get(format!("{}/v1/status/leader", c.http(i)))
                .send()
                .await
            {
                if let Ok(t) = r.text().await {
                    named.push(t.trim_matches('"').to_string());
                }
            }
        }
        if named.len() == among.len()
            && !named[0].is_empty()
            && named.iter().all(|n| n == &named[0])
        {
            if let Some(i) = (0..3).find(|i| named[0] == format!("{}:8300", c.cluster_ip(*i))) {
                if not != Some(i) {
                    return Ok(i);
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no agreed leader among {among:?} (they name {named:?})\n{}",
                c.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(http: &reqwest::Client, base: &str, key: &str, value: &str) -> Option<bool> {
    let r = http
        .put(format!("{base}/v1/kv/{key}"))
        .body(value.to_string())
        .send()
        .await
        .ok()?;
    Some(r.status().is_success() && r.text().await.ok()? == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_loses_writes_to_the_majority_and_the_history_stays_linearizable(
) -> Result<()> {
    ensure!(
        docker::available(),
        "this test needs a running Docker daemon"
    );
    let c = start()?;
    let http = client();
    let old = leader(&c, &http, &[0, 1, 2], None).await?;
    let origin = Instant::now();
    let history: Arc<Mutex<Vec<Op>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Six clients, two per server, writing unique values and reading with ?consistent, on four keys.
    let mut workers = Vec::new();
    for w in 0..6usize {
        let base = c.http(w % 3);
        let history = history.clone();
        let stop = stop.clone();
        let http = http.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let key = format!("lin/k{}", (n as usize + w) % 4);
                let call = origin.elapsed().as_nanos() as u64;
                if n.is_multiple_of(2) {
                    let value = format!("w{w}-{n}");
                    let ok = put(&http, &base, &key, &value).await;
                    let ret = (ok == Some(true)).then(|| origin.elapsed().as_nanos() as u64);
                    history.lock().unwrap().push(Op {
                        key,
                        kind: Kind::Write(value),
                        call,
                        ret,
                    });
                } else {
                    let r = http
                        .get(format!("{base}/v1/kv/{key}?consistent&raw"))
                        .send()
                        .await;
                    let seen = match r {
                        Ok(r) if r.status() == 200 => r.text().await.ok().map(Some),
                        Ok(r) if r.status() == 404 => Some(None),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        let ret = Some(origin.elapsed().as_nanos() as u64);
                        history.lock().unwrap().push(Op {
                            key,
                            kind: Kind::Read(seen),
                            call,
                            ret,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    // Cut the leader off from its peers.
    c.servers[old].disconnect(&c.cluster_net)?;
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    // The majority elects a new leader and accepts writes.
    let new = leader(&c, &http, &majority, Some(old)).await?;
    ensure!(put(&http, &c.http(majority[0]), "partition/majority", "yes").await == Some(true));
    // The isolated server refuses writes (after waiting for a leader it cannot reach).
    let refused = put(&http, &c.http(old), "partition/minority", "no").await;
    ensure!(
        refused != Some(true),
        "the isolated server acknowledged a write\n{}",
        c.logs()
    );
    let stale = http
        .get(format!("{}/v1/kv/partition/majority?stale", c.http(old)))
        .send()
        .await?;
    ensure!(
        stale.status() == 404,
        "the isolated server cannot have seen the majority's write"
    );

    // Heal: the old leader rejoins as a follower and catches up.
    c.servers[old].connect(&c.cluster_net, &c.cluster_ip(old))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!(
                "{}/v1/kv/partition/majority?stale&raw",
                c.http(old)
            ))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 200 && r.text().await? == "yes" {
                break;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the healed server did not catch up\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = leader(&c, &http, &[0, 1, 2], None).await?;
    ensure!(
        all == new,
        "after healing the cluster agrees on the new leader"
    );
    // The write the isolated server refused never appears.
    let ghost = http
        .get(format!(
            "{}/v1/kv/partition/minority?consistent",
            c.http(all)
        ))
        .send()
        .await?;
    ensure!(ghost.status() == 404, "a refused write was applied");

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let history = history.lock().unwrap().clone();
    let writes = history
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)) && o.ret.is_some())
        .count();
    let reads = history
        .iter()
        .filter(|o| matches!(o.kind, Kind::Read(_)))
        .count();
    ensure!(
        writes > 20 && reads > 20,
        "too little traffic: {writes} writes, {reads} reads"
    );
    linearizable::check(&history).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
