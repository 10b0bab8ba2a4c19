//! Network coordinates against real delays: three servers whose gossip traffic reaches each of them through a
//! relay holding every datagram 0, 10 or 30 ms (the kernel here has no `tc netem`; see `weft_testkit::udp_delay`),
//! so the true round trip between two servers is the sum of their delays. The coordinates the agents compute from
//! their gossip probes must estimate those round trips, `?near` must sort by them, and `weft rtt` must print them.

use anyhow::{bail, ensure, Context, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use weft_testkit::udp_delay::UdpDelay;
use weft_testkit::{cli, eventually, DevAgent, TempDir};

/// Each server's added inbound delay, in milliseconds.
const DELAYS: [u64; 3] = [0, 10, 30];

fn truth_ms(a: usize, b: usize) -> f64 {
    (DELAYS[a] + DELAYS[b]) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinates_estimate_real_delays() -> Result<()> {
    let dir = TempDir::new()?;
    let mut relays = Vec::new();
    let mut serf_ports = Vec::new();
    for delay in DELAYS {
        let port = weft_testkit::net::free_gossip_port()?;
        let target: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        relays.push(UdpDelay::start(target, Duration::from_millis(delay)).await?);
        serf_ports.push(port);
    }
    let names: Vec<String> = (0..3).map(|i| format!("coord-{i}")).collect();
    let mut agents = Vec::new();
    for i in 0..3 {
        let advertise = format!(
            "advertise_addrs {{ serf_lan = \"{}\" }} sync_coordinate_interval_min = \"1s\"",
            relays[i].addr()
        );
        let mut b = DevAgent::builder()
            .clustered()
            .node(names[i].clone())
            .args(["-bind", "127.0.0.1", "-server", "-bootstrap-expect", "3"])
            .args(["-server-port", &weft_testkit::net::free_port()?.to_string()])
            .args(["-serf-lan-port", &serf_ports[i].to_string()])
            .arg("-data-dir")
            .arg(dir.path().join(&names[i]).as_os_str())
            .args(["-hcl", &advertise]);
        for r in &relays {
            b = b.args(["-retry-join", &r.addr().to_string()]);
        }
        agents.push(b.start()?);
    }
    eventually(Duration::from_secs(30), || async {
        let nodes = agents[0].get("/v1/catalog/nodes").await?.json()?;
        let n = nodes.as_array().map_or(0, Vec::len);
        ensure!(n == 3, "{n} nodes in the catalog");
        Ok(())
    })
    .await
    .context("the three servers did not form a cluster")?;

    // Vivaldi needs a few dozen samples per pair: each agent probes one member every half second.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let last = match estimates(&agents[0], &names).await {
            Ok(est) => {
                let good = (0..3).all(|a| {
                    ((a + 1)..3)
                        .all(|b| (est[a][b] - truth_ms(a, b)).abs() <= 0.25 * truth_ms(a, b) + 3.0)
                });
                // The tolerances above overlap for coord-2's two neighbours (30 and 40 ms), so the `?near` check
                // below waits until the estimates themselves order them with a clear margin: a sort that follows
                // the coordinates must then agree, whatever small step the next probe makes.
                let ordered = est[2][1] - est[2][0] >= 5.0;
                if good && ordered {
                    break;
                }
                format!("{est:.1?}")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("coordinates did not settle near the real delays (10, 30, 40 ms); last estimates (ms): {last}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // `?near` sorts by them: from coord-2, itself, then coord-0 (30 ms), then coord-1 (40 ms).
    let nodes = agents[0]
        .get(&format!("/v1/catalog/nodes?near={}", names[2]))
        .await?
        .json()?;
    let order: Vec<&str> = nodes
        .as_array()
        .context("catalog nodes")?
        .iter()
        .filter_map(|n| n["Node"].as_str())
        .collect();
    ensure!(
        order == [&names[2], &names[0], &names[1]],
        "?near={} sorted {order:?}",
        names[2]
    );

    // `weft rtt` prints the estimate.
    let out = cli(&agents[0], &["rtt", &names[1], &names[2]])?;
    ensure!(out.code() == 0, "{out:?}");
    let text = out.stdout.trim();
    let prefix = format!("Estimated {} <-> {} rtt: ", names[1], names[2]);
    let ms: f64 = text
        .strip_prefix(&prefix)
        .and_then(|t| t.strip_suffix(" ms (using LAN coordinates)"))
        .with_context(|| format!("weft rtt printed {text:?}"))?
        .parse()?;
    ensure!((ms - 40.0).abs() <= 13.0, "weft rtt: {text}");
    let unknown = cli(&agents[0], &["rtt", "nobody"])?;
    ensure!(
        unknown.code() == 1 && unknown.stderr.contains("Could not find a coordinate"),
        "{unknown:?}"
    );
    Ok(())
}

/// The estimated round trips between the servers, in ms, from the coordinates `agent` serves.
async fn estimates(agent: &DevAgent, names: &[String]) -> Result<[[f64; 3]; 3]> {
    let list: Vec<weft_types::coordinate::CoordinateEntry> =
        serde_json::from_slice(&agent.get("/v1/coordinate/nodes").await?.body)?;
    let coord = |i: usize| {
        list.iter()
            .find(|e| e.node == names[i])
            .map(|e| e.coord.clone())
            .with_context(|| format!("no coordinate for {} yet", names[i]))
    };
    let coords = [coord(0)?, coord(1)?, coord(2)?];
    let mut est = [[0.0; 3]; 3];
    for (a, row) in est.iter_mut().enumerate() {
        for (b, cell) in row.iter_mut().enumerate() {
            *cell = coords[a].distance_to(&coords[b]).as_secs_f64() * 1000.0;
        }
    }
    Ok(est)
}
