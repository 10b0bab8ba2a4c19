//! `/v1/agent/metrics` and `/v1/agent/monitor` on a real dev agent: the metrics show the requests and writes just
//! made, in Consul's JSON and in Prometheus' format; monitors stream the log as it is written, each at its own
//! level (below the agent's own), in text or JSON, and a bad level is refused.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_testkit::DevAgent;

/// An open monitor: the raw response bytes read so far.
struct Monitor {
    stream: TcpStream,
    seen: Vec<u8>,
}

impl Monitor {
    async fn open(agent: &DevAgent, query: &str) -> Result<Monitor> {
        let mut stream = TcpStream::connect(agent.addr()).await?;
        let req = format!("GET /v1/agent/monitor?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut m = Monitor {
            stream,
            seen: Vec::new(),
        };
        m.wait_for("200 OK", Duration::from_secs(5)).await?;
        Ok(m)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Reads until `needle` has arrived, or fails after `within`.
    async fn wait_for(&mut self, needle: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 8192];
        while !self.text().contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{needle:?} did not arrive; the monitor sent:\n{}",
                    self.text()
                );
            }
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => bail!("the monitor ended; it sent:\n{}", self.text()),
                Ok(Ok(n)) => self.seen.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Reads whatever arrives for `for_`.
    async fn drain(&mut self, for_: Duration) {
        let _ = self.wait_for("\u{0}never", for_).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_stream_the_log_at_their_own_level() -> Result<()> {
    let agent = DevAgent::start()?;
    let mut debug = Monitor::open(&agent, "loglevel=debug").await?;
    let mut warn_json = Monitor::open(&agent, "loglevel=warn&logjson").await?;

    // A warning (a check interval raised to the floor) and a debug line (a leaf issued); the agent logs at info.
    let check = json!({"Name": "fast", "TTL": "", "Interval": "1ns", "TCP": "127.0.0.1:1"});
    agent
        .put_json("/v1/agent/check/register", &check)
        .await?
        .expect_status(200)?;
    agent
        .get("/v1/agent/connect/ca/leaf/web")
        .await?
        .expect_status(200)?;

    debug
        .wait_for("issued leaf certificate", Duration::from_secs(10))
        .await?;
    debug
        .wait_for(
            "[WARN]  agent.definition: check interval below the 1 s minimum",
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        debug
            .text()
            .contains("[DEBUG] agent.leaf: issued leaf certificate: service=web"),
        "{}",
        debug.text()
    );
    warn_json
        .wait_for(
            "\"@message\":\"check interval below the 1 s minimum; using 1 s\"",
            Duration::from_secs(10),
        )
        .await?;
    warn_json.drain(Duration::from_millis(500)).await;
    let text = warn_json.text();
    ensure!(text.contains("\"@level\":\"warn\""), "{text}");
    ensure!(
        !text.contains("issued leaf certificate"),
        "a warn monitor got a debug line: {text}"
    );
    // The agent's own log (info) does not carry the debug line either.
    ensure!(!agent.recent_output().contains("issued leaf certificate"));

    let bad = agent.get("/v1/agent/monitor?loglevel=loud").await?;
    bad.expect_status(400)?;
    ensure!(bad.text().contains("Unknown log level: loud"));
    drop(debug);
    drop(warn_json);
    Ok(())
}

fn find<'a>(list: &'a Value, name: &str, label: Option<(&str, &str)>) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|m| m["Name"] == name && label.is_none_or(|(k, v)| m["Labels"][k] == v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_requests_writes_and_state() -> Result<()> {
    let agent = DevAgent::start()?;
    for i in 0..3 {
        agent
            .put(&format!("/v1/kv/m/{i}"), "x")
            .await?
            .expect_status(200)?;
    }
    let m = agent.get("/v1/agent/metrics").await?.json()?;
    ensure!(
        m["Timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with(" +0000 UTC")),
        "{m}"
    );
    let puts = find(&m["Samples"], "consul.api.http", Some(("path", "v1.kv._")))
        .context("no consul.api.http sample for v1.kv._")?;
    ensure!(
        puts["Labels"]["method"] == "PUT" && puts["Count"].as_u64() >= Some(3),
        "{puts}"
    );
    let applies =
        find(&m["Counters"], "consul.raft.apply", None).context("no consul.raft.apply")?;
    ensure!(applies["Count"].as_u64() >= Some(3), "{applies}");
    let kv = find(&m["Gauges"], "consul.state.kv_entries", None).context("no kv_entries gauge")?;
    ensure!(kv["Value"] == 3.0, "{kv}");
    ensure!(find(&m["Gauges"], "consul.runtime.sys_bytes", None)
        .is_some_and(|g| g["Value"].as_f64() > Some(1e6)));

    let p = agent.get("/v1/agent/metrics?format=prometheus").await?;
    p.expect_status(200)?;
    let text = p.text();
    ensure!(text.contains("# TYPE consul_api_http summary"), "{text}");
    ensure!(
        text.contains("consul_api_http_count{method=\"PUT\",path=\"v1.kv._\"} 3"),
        "{text}"
    );
    ensure!(text.contains("# TYPE consul_raft_apply counter"), "{text}");
    agent
        .get("/v1/agent/metrics?format=xml")
        .await?
        .expect_status(400)?;
    Ok(())
}
