//! Prepared queries on a real dev agent, driven by a real Consul client library (Python's py-consul, installed by
//! the test command) and read back through DNS with `dig`, as users reach them.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::process::Command;
use weft_testkit::DevAgent;

/// Runs py-consul against the agent: creates, reads, lists, updates, executes, explains and deletes queries, and
/// prints what it saw as one JSON object.
const CLIENT: &str = r#"
import json, sys
import consul
host, port = sys.argv[1], int(sys.argv[2])
c = consul.Consul(host=host, port=port)
seen = {}
# py-consul always sends a name_prefix_match template; a static query is the only one with that name.
qid = c.query.create("web", name="web-primary", tags=["primary"], ttl="9s", onlypassing=True)["ID"]
seen["get"] = c.query.get(qid)
seen["list"] = c.query.list()
seen["execute"] = c.query.execute("web-primary")
seen["execute_near_limit"] = c.query.execute("web-primary", near="n2", limit=1)
# A template (as py-consul writes every query) runs by name only, as in Consul.
try:
    c.query.execute(qid)
    seen["execute_by_id"] = "accepted"
except consul.ConsulException as e:
    seen["execute_by_id"] = str(e)
seen["update"] = c.query.update(qid, "web", name="web-primary", tags=["secondary"])
seen["execute_after_update"] = c.query.execute("web-primary")
seen["explain"] = c.query.explain("web-primary")
try:
    c.query.create("web", name="WEB-PRIMARY")
    seen["duplicate"] = "accepted"
except consul.ConsulException as e:
    seen["duplicate"] = str(e)
seen["delete"] = c.query.delete(qid)
# py-consul reads a 404 as "nothing there".
seen["after_delete"] = c.query.get(qid)
print(json.dumps(seen))
"#;

fn dig_short(agent: &DevAgent, name: &str, qtype: &str) -> Result<Vec<String>> {
    let at = agent.dns_addr().context("no DNS address")?;
    weft_testkit::dig::short(at, &[name, qtype])
}

async fn register(agent: &DevAgent, node: &str, addr: &str, id: &str, tags: &[&str]) -> Result<()> {
    let body = json!({
        "Node": node, "Address": addr,
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 8080},
        "Check": {"CheckID": format!("{id}-ok"), "Name": "ok", "ServiceID": id, "Status": "passing"},
    });
    agent
        .put_json("/v1/catalog/register", &body)
        .await?
        .expect_status(200)?;
    Ok(())
}

fn nodes(answer: &Value) -> Vec<String> {
    let mut v: Vec<String> = answer["Nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["Node"]["Node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_manages_and_runs_queries_and_dig_resolves_them() -> Result<()> {
    let agent = DevAgent::start()?;
    register(&agent, "n1", "10.0.0.1", "web-1", &["primary"]).await?;
    register(&agent, "n2", "10.0.0.2", "web-2", &["primary"]).await?;
    register(&agent, "n3", "10.0.0.3", "web-3", &["secondary"]).await?;

    let base = agent.url("");
    let (host, port) = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .rsplit_once(':')
        .context("the agent's URL has no port")?;
    let out = Command::new("python3")
        .args(["-c", CLIENT, host, port])
        .output()
        .context("cannot run python3 (py-consul is installed by scripts/test)")?;
    ensure!(
        out.status.success(),
        "py-consul run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("py-consul printed {}", String::from_utf8_lossy(&out.stdout)))?;

    let got = &seen["get"][0];
    ensure!(got["Name"] == "web-primary", "{got}");
    ensure!(got["Service"]["Tags"] == json!(["primary"]), "{got}");
    ensure!(got["DNS"]["TTL"] == "9s", "{got}");
    ensure!(got["Template"]["Type"] == "name_prefix_match", "{got}");
    ensure!(seen["list"].as_array().map(Vec::len) == Some(1), "{seen}");
    ensure!(
        nodes(&seen["execute"]) == ["n1", "n2"],
        "{}",
        seen["execute"]
    );
    ensure!(seen["execute"]["Service"] == "web", "{}", seen["execute"]);
    ensure!(
        nodes(&seen["execute_near_limit"]) == ["n2"],
        "{}",
        seen["execute_near_limit"]
    );
    ensure!(
        seen["execute_by_id"]
            .as_str()
            .is_some_and(|s| s.contains("can only be resolved up by name")),
        "{}",
        seen["execute_by_id"]
    );
    ensure!(seen["update"] == json!(true), "{seen}");
    ensure!(
        nodes(&seen["execute_after_update"]) == ["n3"],
        "{}",
        seen["execute_after_update"]
    );
    ensure!(
        seen["explain"]["Query"]["Service"]["Tags"] == json!(["secondary"]),
        "{}",
        seen["explain"]
    );
    ensure!(
        seen["duplicate"]
            .as_str()
            .is_some_and(|s| s.contains("aliases an existing query name")),
        "{}",
        seen["duplicate"]
    );
    ensure!(seen["delete"] == json!(true), "{seen}");
    ensure!(seen["after_delete"].is_null(), "{seen}");

    // DNS: a static query by name, a template's rendering, an unknown query.
    agent
        .request(
            "POST",
            "/v1/query",
            Some(
                json!({"Name": "primaries", "Service": {"Service": "web", "Tags": ["primary"]}})
                    .to_string()
                    .into(),
            ),
        )
        .await?
        .expect_status(200)?;
    agent
        .request(
            "POST",
            "/v1/query",
            Some(
                json!({"Name": "tagged-", "Template": {"Type": "name_prefix_match", "Regexp": "^tagged-(.+)$"},
                       "Service": {"Service": "web", "Tags": ["${match(1)}"]}})
                .to_string()
                .into(),
            ),
        )
        .await?
        .expect_status(200)?;
    ensure!(dig_short(&agent, "primaries.query.consul", "A")? == ["10.0.0.1", "10.0.0.2"]);
    ensure!(dig_short(&agent, "tagged-secondary.query.consul", "A")? == ["10.0.0.3"]);
    let srv = dig_short(&agent, "_primaries._tcp.query.consul", "SRV")?;
    ensure!(
        srv.len() == 2 && srv.iter().all(|l| l.contains(" 8080 ")),
        "{srv:?}"
    );
    ensure!(dig_short(&agent, "nothing.query.consul", "A")?.is_empty());
    Ok(())
}
