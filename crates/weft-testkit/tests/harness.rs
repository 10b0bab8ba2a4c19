//! The harness itself: agents start on distinct ephemeral ports with the requested node name, a failing start
//! reports the agent's own words, dropping an agent kills it, and `eventually` both waits and gives up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Result};
use serde_json::json;
use std::time::{Duration, Instant};
use weft_testkit::{eventually, eventually_sync, Cli, DevAgent, TempDir};

#[tokio::test]
async fn agents_get_distinct_ports_and_their_node_names() -> Result<()> {
    let a = DevAgent::start()?;
    let b = DevAgent::builder().node("named-by-test").start()?;
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.addr().port(), 0);
    assert_eq!(a.url("/v1/x"), format!("http://{}/v1/x", a.addr()));
    for agent in [&a, &b] {
        let me = agent.get("/v1/agent/self").await?.json()?;
        assert_eq!(me["Config"]["NodeName"], agent.node());
    }
    assert_eq!(b.node(), "named-by-test");
    Ok(())
}

#[test]
fn a_failed_start_reports_the_agents_output() -> Result<()> {
    let dir = TempDir::new()?;
    let bad = dir.write("bad.json", "{ this is not json")?;
    let Err(e) = DevAgent::builder().config_file(&bad).start() else {
        bail!("an agent with a broken config file started");
    };
    let msg = format!("{e:#}");
    assert!(
        msg.contains("bad.json"),
        "the agent's error is not in the message: {msg}"
    );

    let good = dir.write("ok.json", json!({"datacenter": "dc-test"}).to_string())?;
    let agent = DevAgent::builder().config_file(&good).start()?;
    assert!(
        agent.recent_output().contains("Datacenter: 'dc-test'"),
        "{}",
        agent.recent_output()
    );
    Ok(())
}

#[test]
fn dropping_an_agent_kills_it() -> Result<()> {
    let agent = DevAgent::start()?;
    let pid = agent.pid();
    let addr = agent.addr();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(agent);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "agent {pid} still exists after drop"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "{addr} still accepts connections"
    );
    Ok(())
}

#[tokio::test]
async fn eventually_waits_for_success_and_gives_up_with_the_last_reason() -> Result<()> {
    let start = Instant::now();
    let mut n = 0;
    let got = eventually(Duration::from_secs(5), async || -> Result<Option<u32>> {
        n += 1;
        Ok((n >= 3).then_some(n))
    })
    .await?;
    assert_eq!(got, 3);

    let mut tries = 0;
    let err = eventually(Duration::from_millis(200), async || -> Result<bool> {
        tries += 1;
        if tries % 2 == 0 {
            bail!("try {tries} failed")
        }
        Ok(false)
    })
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not true within 200ms"), "{msg}");
    assert!(start.elapsed() >= Duration::from_millis(200));

    // `Result<bool>` keeps polling on Ok(false); the sync flavour works the same.
    let mut k = 0;
    eventually_sync(Duration::from_secs(5), || -> Result<bool> {
        k += 1;
        Ok(k == 4)
    })?;
    assert_eq!(k, 4);
    Ok(())
}

#[test]
fn cli_puts_the_address_after_the_subcommand() -> Result<()> {
    let agent = DevAgent::start()?;
    let flag = format!("-http-addr={}", agent.addr());
    let argv = |args: &[&str]| Cli::new().agent(&agent).args(args).argv();
    assert_eq!(argv(&["members"]), ["members", flag.as_str()]);
    assert_eq!(argv(&["kv", "get", "k"]), ["kv", "get", flag.as_str(), "k"]);
    assert_eq!(
        argv(&["catalog", "nodes"]),
        ["catalog", "nodes", flag.as_str()]
    );
    assert_eq!(argv(&["version"]), ["version"]);
    Ok(())
}
