//! The agent's configuration as an operator writes it: JSON and HCL files in a config dir, what `/v1/agent/self`
//! reports of them, reload (`weft reload` and SIGHUP) against a real process, refusals at start, and
//! `weft validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use std::time::Duration;
use weft_testkit::{cli, eventually, Cli, DevAgent, Signal, TempDir};

async fn service_names(agent: &DevAgent) -> Result<Vec<String>> {
    let services = agent.get("/v1/agent/services").await?.json()?;
    let mut names: Vec<String> = services
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|s| s["Service"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

/// A dev agent reading `dir` as its `-config-dir`.
fn agent_with_config_dir(dir: &TempDir) -> Result<DevAgent> {
    DevAgent::builder()
        .arg("-config-dir")
        .arg(dir.path())
        .start()
}

async fn node_meta(agent: &DevAgent) -> Result<serde_json::Value> {
    let node = agent
        .get(&format!("/v1/catalog/node/{}", agent.node()))
        .await?
        .json()?;
    Ok(node["Node"]["Meta"].clone())
}

#[tokio::test]
async fn a_config_dir_of_json_and_hcl_and_what_agent_self_reports() -> Result<()> {
    let dir = TempDir::new()?;
    dir.write(
        "a.json",
        r#"{"node_meta": {"rack": "r1"}, "services": [{"name": "web", "port": 80}]}"#,
    )?;
    dir.write(
        "b.hcl",
        "# Consul's HCL, several settings on a line\nnode_meta { zone = \"z1\" }  session_ttl_min = \"15s\"\nservice { name = \"db\"  port = 5432\n  connect { sidecar_service {} }\n}\n",
    )?;
    let agent = agent_with_config_dir(&dir)?;
    assert_eq!(
        service_names(&agent).await?,
        ["db", "db-sidecar-proxy", "web"]
    );
    let meta = node_meta(&agent).await?;
    assert_eq!(meta["rack"], "r1");
    assert_eq!(meta["zone"], "z1");

    let me = agent.get("/v1/agent/self").await?.json()?;
    assert_eq!(me["Config"]["NodeName"], agent.node());
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["DebugConfig"]["NodeMeta"]["zone"], "z1");
    assert_eq!(me["DebugConfig"]["SessionTTLMin"], "15s");
    assert_eq!(me["DebugConfig"]["DevMode"], true);
    assert_eq!(me["DebugConfig"]["EncryptKey"], "");
    assert_eq!(me["Member"]["Name"], agent.node());
    assert_eq!(me["Member"]["Port"], 8301);
    assert_eq!(me["Member"]["Tags"]["role"], "consul");
    let stats = &me["Stats"];
    for (section, key, want) in [
        ("consul", "server", Some("true")),
        ("consul", "leader", Some("true")),
        ("consul", "bootstrap", Some("true")),
        ("consul", "known_datacenters", Some("1")),
        ("raft", "state", Some("Leader")),
        ("raft", "num_peers", Some("0")),
        ("raft", "applied_index", None),
        ("raft", "commit_index", None),
        ("raft", "term", None),
        ("agent", "services", Some("3")),
        ("runtime", "os", Some("linux")),
        ("runtime", "arch", None),
        ("runtime", "goroutines", None),
    ] {
        let value = &stats[section][key];
        assert!(
            value.is_string(),
            "Stats.{section}.{key} is {value}, not a string"
        );
        if let Some(want) = want {
            assert_eq!(value, want, "Stats.{section}.{key}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn reload_applies_services_node_meta_and_log_level_and_names_restart_settings() -> Result<()>
{
    let dir = TempDir::new()?;
    dir.write(
        "agent.hcl",
        "log_level = \"info\"\nservice { name = \"web\" port = 80 }\n",
    )?;
    let agent = agent_with_config_dir(&dir)?;
    assert_eq!(service_names(&agent).await?, ["web"]);
    // At info, issuing a leaf certificate logs nothing.
    agent
        .get("/v1/agent/connect/ca/leaf/before")
        .await?
        .expect_status(200)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!agent.recent_output().contains("issued leaf certificate"));

    dir.write(
        "agent.hcl",
        "log_level = \"debug\"\ndatacenter = \"dc2\"\nnode_meta { rack = \"r2\" }\nservice { name = \"api\" port = 81 }\n",
    )?;
    let out = cli(&agent, &["reload"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "Configuration reload triggered");
    assert!(out.stderr.contains("datacenter"), "{out:?}");
    assert_eq!(service_names(&agent).await?, ["api"]);
    assert_eq!(node_meta(&agent).await?["rack"], "r2");
    // The datacenter needs a restart: it is unchanged.
    assert_eq!(
        agent.get("/v1/agent/self").await?.json()?["Config"]["Datacenter"],
        "dc1"
    );
    // The log level is applied: now the same event is logged.
    agent
        .get("/v1/agent/connect/ca/leaf/after")
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(5), || async {
        agent.recent_output().contains("issued leaf certificate")
    })
    .await?;

    // SIGHUP does the same.
    dir.write(
        "agent.hcl",
        "service { name = \"api\" port = 81 }\nservice { name = \"hup\" port = 82 }\n",
    )?;
    agent.signal(Signal::Hup)?;
    eventually(Duration::from_secs(5), || async {
        service_names(&agent)
            .await
            .is_ok_and(|n| n == ["api", "hup"])
    })
    .await?;

    // A broken file stops the reload and changes nothing.
    dir.write(
        "agent.hcl",
        "service { name = \"api\" port = \"eighty\" }\nbogus = 1\n",
    )?;
    let out = cli(&agent, &["reload"])?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("bogus: unknown configuration key"),
        "{out:?}"
    );
    assert_eq!(service_names(&agent).await?, ["api", "hup"]);
    Ok(())
}

#[test]
fn a_bad_config_stops_the_agent_before_it_binds_with_one_line() -> Result<()> {
    let dir = TempDir::new()?;
    let file = dir.write("agent.json", r#"{"ports": {"htp": 8500}}"#)?;
    let out = Cli::new()
        .args(&[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-config-file",
            file.to_str().unwrap(),
        ])
        .run()?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        !out.stdout.contains("HTTP API"),
        "it must not start: {out:?}"
    );
    let message: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(message.len(), 1, "{out:?}");
    assert!(
        message[0].contains(&format!(
            "{}:ports.htp: unknown configuration key",
            file.display()
        )),
        "{out:?}"
    );

    let hcl = dir.write("bad.hcl", "ports {\n  http = \n}\n")?;
    let out = Cli::new()
        .args(&["agent", "-dev", "-config-file", hcl.to_str().unwrap()])
        .run()?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("{}:3:1", hcl.display())),
        "{out:?}"
    );
    Ok(())
}

#[test]
fn validate_reports_every_problem_or_says_valid() -> Result<()> {
    let good = TempDir::new()?;
    good.write(
        "a.json",
        r#"{"datacenter": "east", "data_dir": "/tmp/x", "server": true}"#,
    )?;
    good.write(
        "b.hcl",
        "bootstrap_expect = 3\nservice { name = \"web\" port = 80 }\n",
    )?;
    let out = Cli::new()
        .args(&["validate", good.path().to_str().unwrap()])
        .run()?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "Configuration is valid!");

    let bad = TempDir::new()?;
    bad.write("a.json", r#"{"datacenter": 5}"#)?;
    bad.write("b.hcl", "server = true\nnot_a_key = \"x\"\n")?;
    let out = Cli::new()
        .args(&["validate", bad.path().to_str().unwrap()])
        .run()?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("a.json:datacenter: invalid type"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("b.hcl:not_a_key: unknown configuration key"),
        "{out:?}"
    );
    Ok(())
}
