//! Config entries in a cluster: written through a client agent (forwarded to the leader), kept through Raft and
//! in the client's own copy (`?stale`), with `?cas` refused on a stale index.

use anyhow::{ensure, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_through_a_client_reach_every_copy() -> Result<()> {
    let cluster = Cluster::start(1, 1).await?;
    let (server, client) = (cluster.agent(0)?, cluster.agent(1)?);
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    let r = client.put_json("/v1/config?cas=0", &entry).await?;
    ensure!(
        r.status == 200 && r.text() == "true",
        "{} {}",
        r.status,
        r.text()
    );
    let on_server = server
        .get("/v1/config/service-defaults/web")
        .await?
        .json()?;
    ensure!(on_server["Protocol"] == "http", "{on_server}");
    eventually(Duration::from_secs(10), || async {
        let copy = client
            .get("/v1/config/service-defaults/web?stale")
            .await?
            .json()?;
        ensure!(copy["Protocol"] == "http", "{copy}");
        Ok(())
    })
    .await?;
    let again = client.put_json("/v1/config?cas=0", &entry).await?;
    ensure!(
        again.text() == "false",
        "cas 0 on an existing entry: {}",
        again.text()
    );
    let bad = client
        .put_json(
            "/v1/config",
            &json!({"Kind": "proxy-defaults", "Name": "local"}),
        )
        .await?;
    ensure!(
        bad.status == 400 && bad.text().contains("only \"global\""),
        "{}",
        bad.text()
    );
    Ok(())
}
