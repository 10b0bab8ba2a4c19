//! The sidecar of an Amazon ECS task, against a stand-in for ECS's task metadata endpoint v4 serving the documented
//! JSON of an EC2 `awsvpc` task: it waits (saying why, and registering nothing) while the document is unusable,
//! then registers the task's address, an ID suffixed with the task ID and the task's zone as `Locality`, registers
//! again when the agent forgets it, and deregisters on SIGTERM well within ECS's default `stopTimeout` (30 s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use weft_testkit::mesh::greeting_app;
use weft_testkit::net::{free_port, strings};
use weft_testkit::stub_http::StubHttp;
use weft_testkit::{eventually, weft_binary, DevAgent, Spawned};

/// The documented task response, with the task's address moved onto loopback so the sidecar can listen on it here.
const TASK: &str = include_str!("../../weft-sidecar/tests/ecs/task-ec2-awsvpc.json");
const TASK_ID: &str = "158d1c8083dd49d6b527399fd6414f5c";
const TASK_IP: &str = "127.0.0.2";

/// `weft connect proxy -register-service DEFINITION` as an ECS task's sidecar, with the task metadata at `metadata`.
fn ecs_sidecar(definition: &str, agent: &str, metadata: &str) -> Result<Spawned> {
    Spawned::start_with_env(
        &weft_binary()?,
        &strings(&[
            "connect",
            "proxy",
            "-register-service",
            definition,
            "-http-addr",
            agent,
        ]),
        &[("ECS_CONTAINER_METADATA_URI_V4", metadata)],
    )
}

async fn agent_services(agent: &DevAgent) -> Result<Value> {
    agent.get("/v1/agent/services").await?.json()
}

#[tokio::test]
async fn an_ecs_task_sidecar_registers_its_task_from_the_metadata_and_deregisters_on_sigterm(
) -> Result<()> {
    let agent = DevAgent::start()?;
    let app_port = free_port()?;
    let _app = greeting_app(app_port, "task")?;
    let metadata = StubHttp::start().await?;
    // A task's containers start before its network is attached: first a truncated document.
    metadata.set(
        "GET",
        "/v4/c0ffee/task",
        200,
        r#"{"TaskARN":"arn:aws:ecs:us-west-2:1:task/default/"#,
    );
    // The definition inline, as a task definition's command carries it (no file to mount on ECS).
    let definition = json!({"service": {
        "name": "greeter", "port": app_port,
        "connect": {"sidecar_service": {"port": free_port()?}},
    }});
    let mut sidecar = ecs_sidecar(
        &definition.to_string(),
        &agent.addr().to_string(),
        &format!("{}/v4/c0ffee", metadata.url()),
    )?;
    eventually(Duration::from_secs(10), async || {
        metadata.count("GET", "/v4/c0ffee/task") >= 2
    })
    .await?;
    assert!(
        sidecar.output().contains(
            "==> waiting for ECS task metadata: the task metadata is not the v4 task document"
        ),
        "{}",
        sidecar.output()
    );
    assert_eq!(
        agent_services(&agent).await?,
        json!({}),
        "nothing registered from a bad document"
    );

    metadata.set(
        "GET",
        "/v4/c0ffee/task",
        200,
        TASK.replace("10.0.2.106", TASK_IP),
    );
    let id = format!("greeter-{TASK_ID}");
    let service = eventually(
        Duration::from_secs(30),
        async || -> Result<Option<Value>> { Ok(agent_services(&agent).await?.get(&id).cloned()) },
    )
    .await
    .map_err(|e| e.context(sidecar.output()))?;
    assert_eq!(service["Address"], TASK_IP);
    assert_eq!(
        service["Locality"],
        json!({"Region": "us-west-2", "Zone": "us-west-2d"})
    );
    assert_eq!(
        service["Meta"]["task-arn"],
        format!("arn:aws:ecs:us-west-2:111122223333:task/default/{TASK_ID}")
    );
    let proxy = &agent_services(&agent).await?[format!("{id}-sidecar-proxy")];
    assert_eq!(
        proxy["Address"], TASK_IP,
        "the sidecar listens on the task's address"
    );
    assert_eq!(
        proxy["Locality"], service["Locality"],
        "a sidecar inherits its parent's locality"
    );
    // The catalog carries it too, and the task turns healthy once the sidecar reaches the application.
    let entries = eventually(
        Duration::from_secs(30),
        async || -> Result<Option<Value>> {
            let list = agent
                .get("/v1/health/service/greeter?passing=1")
                .await?
                .json()?;
            Ok((list.as_array().is_some_and(|l| l.len() == 1)).then_some(list))
        },
    )
    .await?;
    assert_eq!(entries[0]["Service"]["Locality"]["Zone"], "us-west-2d");
    let catalog = agent.get("/v1/catalog/service/greeter").await?.json()?;
    assert_eq!(catalog[0]["ServiceLocality"]["Region"], "us-west-2");

    // An agent that comes back without its state (a replaced daemon task): the sidecar registers the task again.
    agent
        .put_empty(&format!("/v1/agent/service/deregister/{id}"))
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(15), async || -> Result<bool> {
        Ok(agent_services(&agent).await?.get(&id).is_some())
    })
    .await
    .map_err(|e| e.context(sidecar.output()))?;

    // ECS stops a task with SIGTERM, then SIGKILL after stopTimeout (30 s by default).
    let stopping = Instant::now();
    let status = sidecar.terminate()?;
    assert!(status.success(), "{status:?}\n{}", sidecar.output());
    assert_eq!(
        agent_services(&agent).await?,
        json!({}),
        "both registrations removed"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn an_ecs_task_sidecar_without_its_metadata_endpoint_waits_and_stops_cleanly() -> Result<()> {
    let agent = DevAgent::start()?;
    // Nothing listens there.
    let unreachable = format!("http://127.0.0.1:{}/v4/gone", free_port()?);
    let mut sidecar = ecs_sidecar(
        r#"{"name":"web","port":8080,"connect":{"sidecar_service":{}}}"#,
        &agent.addr().to_string(),
        &unreachable,
    )?;
    eventually(Duration::from_secs(10), async || {
        sidecar
            .output()
            .matches("==> waiting for ECS task metadata")
            .count()
            >= 2
    })
    .await?;
    let first = sidecar
        .output()
        .lines()
        .find(|l| l.contains("waiting for ECS task metadata"))
        .unwrap_or_default()
        .to_string();
    assert!(first.contains("retrying in"), "{first}");
    assert_eq!(agent_services(&agent).await?, json!({}));
    let status = sidecar.terminate()?;
    assert_eq!(status.code(), Some(1), "{}", sidecar.output());
    assert!(
        sidecar
            .output()
            .contains("stopped while waiting for ECS task metadata"),
        "{}",
        sidecar.output()
    );
    Ok(())
}

#[tokio::test]
async fn an_ecs_task_sidecar_with_no_agent_on_its_host_waits_and_registers_nothing() -> Result<()> {
    let metadata = StubHttp::start().await?;
    metadata.set(
        "GET",
        "/v4/c0ffee/task",
        200,
        TASK.replace("10.0.2.106", TASK_IP),
    );
    let nobody = format!("127.0.0.1:{}", free_port()?);
    let mut sidecar = ecs_sidecar(
        r#"{"name":"web","port":8080,"connect":{"sidecar_service":{}}}"#,
        &nobody,
        &format!("{}/v4/c0ffee", metadata.url()),
    )?;
    let waiting = format!("==> waiting for the agent at {nobody}");
    eventually(Duration::from_secs(10), async || {
        sidecar.output().matches(&waiting).count() >= 2
    })
    .await
    .map_err(|e| e.context(sidecar.output()))?;
    let status = sidecar.terminate()?;
    assert_eq!(status.code(), Some(1), "{}", sidecar.output());
    Ok(())
}
