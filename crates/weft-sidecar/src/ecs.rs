//! A task's sidecar under Amazon ECS: the task's address, ID and zone come from the task metadata endpoint v4
//! (`$ECS_CONTAINER_METADATA_URI_V4/task`), and the host's agent is found at the container instance's private
//! address (instance metadata, IMDSv2) unless `-http-addr` names it.
//!
//! Both endpoints are outside the sidecar's control and may be late (the task's network is attached after its
//! containers start), so every read is bounded in size and time and retried with backoff; the sidecar never
//! registers an address it did not read.

use crate::retry::retry;
use anyhow::{anyhow, bail, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;

/// The variable ECS sets in every container of a task (agent 1.39 and later).
pub const METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";
/// The AWS SDKs' override of the instance metadata endpoint (an IPv6-only instance's `http://[fd00:ec2::254]`).
pub const IMDS_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// The agent's HTTP port on the instance (Consul's).
const AGENT_PORT: u16 = 8500;
/// Neither document is anywhere near this; a larger one is not metadata.
const MAX_DOCUMENT: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What the sidecar registers about its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsTask {
    pub arn: String,
    /// The ARN's last segment: the suffix of the service ID, so that every task of a service registers apart.
    pub id: String,
    /// The task's own address (its ENI's, in `awsvpc` mode).
    pub ip: IpAddr,
    pub region: String,
    /// Empty when the container agent does not report it.
    pub zone: String,
}

/// The endpoint from the environment, when running under ECS.
pub fn metadata_uri() -> Option<String> {
    std::env::var(METADATA_ENV).ok().filter(|v| !v.is_empty())
}

/// Reads the task until its metadata names an address, retrying with backoff; `stop` ends the wait.
pub async fn discover_task(
    uri: &str,
    stop: impl std::future::Future<Output = ()>,
) -> Result<EcsTask> {
    let url = format!("{}/task", uri.trim_end_matches('/'));
    retry("ECS task metadata", stop, || async {
        let body = fetch(hyper::Method::GET, &url, &[]).await?;
        parse_task(&body)
    })
    .await
}

/// The host agent's HTTP address: the instance's private address from IMDSv2, port 8500.
pub async fn discover_agent(stop: impl std::future::Future<Output = ()>) -> Result<String> {
    let base = std::env::var(IMDS_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| IMDS_DEFAULT.into());
    agent_on_instance(&base, AGENT_PORT, stop).await
}

/// `ip:port` of the instance that IMDSv2 at `base` describes.
async fn agent_on_instance(
    base: &str,
    port: u16,
    stop: impl std::future::Future<Output = ()>,
) -> Result<String> {
    let base = base.trim_end_matches('/').to_string();
    retry(
        "the instance's address (EC2 instance metadata)",
        stop,
        || {
            let base = base.clone();
            async move {
                let token = fetch(
                    hyper::Method::PUT,
                    &format!("{base}/latest/api/token"),
                    &[("x-aws-ec2-metadata-token-ttl-seconds", "60")],
                )
                .await?;
                let token = String::from_utf8(token.to_vec())
                    .map_err(|_| anyhow!("the session token is not text"))?;
                let ip = fetch(
                    hyper::Method::GET,
                    &format!("{base}/latest/meta-data/local-ipv4"),
                    &[("x-aws-ec2-metadata-token", token.trim())],
                )
                .await?;
                let ip: IpAddr = std::str::from_utf8(&ip)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or_else(|| anyhow!("local-ipv4 is not an IP address"))?;
                Ok(weft_types::addr::join_host_port(&ip.to_string(), port))
            }
        },
    )
    .await
}

/// One bounded request: a time limit on the whole exchange and a size limit on the body.
async fn fetch(method: hyper::Method, url: &str, headers: &[(&str, &str)]) -> Result<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| anyhow!("{url}: {e}"))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| anyhow!("{url}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| anyhow!("{url}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{url}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The parts of the task metadata v4 document the sidecar uses.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskDocument {
    #[serde(rename = "TaskARN", default)]
    task_arn: String,
    #[serde(default)]
    availability_zone: String,
    #[serde(default)]
    containers: Vec<ContainerDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerDocument {
    #[serde(default)]
    networks: Vec<NetworkDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkDocument {
    #[serde(default)]
    network_mode: String,
    #[serde(rename = "IPv4Addresses", default)]
    ipv4_addresses: Vec<String>,
}

/// The task from a metadata document; an error says what is missing or malformed.
pub fn parse_task(body: &[u8]) -> Result<EcsTask> {
    let doc: TaskDocument = serde_json::from_slice(body)
        .map_err(|e| anyhow!("the task metadata is not the v4 task document: {e}"))?;
    // arn:aws:ecs:<region>:<account>:task/<cluster>/<id> (or task/<id>, the older form).
    let fields: Vec<&str> = doc.task_arn.splitn(6, ':').collect();
    let (region, resource) = match fields.as_slice() {
        ["arn", _, "ecs", region, _, resource] if !region.is_empty() => (*region, *resource),
        _ => bail!("TaskARN {:?} is not an ECS task ARN", doc.task_arn),
    };
    let id = match resource.strip_prefix("task/") {
        Some(path) => path.rsplit('/').next().unwrap_or(""),
        None => "",
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("TaskARN {:?} names no task ID", doc.task_arn);
    }
    let modes: Vec<&str> = doc
        .containers
        .iter()
        .flat_map(|c| &c.networks)
        .map(|n| n.network_mode.as_str())
        .collect();
    let ip = doc
        .containers
        .iter()
        .flat_map(|c| &c.networks)
        .filter(|n| n.network_mode == "awsvpc")
        .flat_map(|n| &n.ipv4_addresses)
        .find_map(|a| a.parse::<IpAddr>().ok());
    let Some(ip) = ip else {
        if modes.iter().any(|m| *m != "awsvpc") {
            bail!(
                "the task's network mode is {:?}: a sidecar needs awsvpc (an address of the task's own)",
                modes.first().copied().unwrap_or_default()
            );
        }
        bail!("the task has no awsvpc address yet");
    };
    Ok(EcsTask {
        arn: doc.task_arn.clone(),
        id: id.to_string(),
        ip,
        region: region.to_string(),
        zone: doc.availability_zone,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The documented v4 task response of an EC2 task in `awsvpc` mode, trimmed to a container.
    const EC2_AWSVPC: &str = include_str!("../tests/ecs/task-ec2-awsvpc.json");

    #[test]
    fn reads_address_id_and_zone_from_an_awsvpc_task() {
        let t = parse_task(EC2_AWSVPC.as_bytes()).unwrap();
        assert_eq!(t.id, "158d1c8083dd49d6b527399fd6414f5c");
        assert_eq!(t.ip, "10.0.2.106".parse::<IpAddr>().unwrap());
        assert_eq!(
            (t.region.as_str(), t.zone.as_str()),
            ("us-west-2", "us-west-2d")
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for (doc, why) in [
            ("not json", "not the v4 task document"),
            (
                r#"{"TaskARN":"arn:aws:s3:::bucket"}"#,
                "not an ECS task ARN",
            ),
            (
                r#"{"TaskARN":"arn:aws:ecs:us-east-1:1:task/c/"}"#,
                "names no task ID",
            ),
            (
                r#"{"TaskARN":"arn:aws:ecs:us-east-1:1:task/c/abc","Containers":[{"Networks":[{"NetworkMode":"bridge","IPv4Addresses":["172.17.0.2"]}]}]}"#,
                "needs awsvpc",
            ),
            (
                r#"{"TaskARN":"arn:aws:ecs:us-east-1:1:task/c/abc","Containers":[{"Name":"app"}]}"#,
                "no awsvpc address yet",
            ),
        ] {
            let e = parse_task(doc.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(why), "{doc}: {e}");
        }
    }

    #[tokio::test]
    async fn finds_the_agent_at_the_instance_address_through_imdsv2() {
        let imds = weft_testkit::stub_http::StubHttp::start().await.unwrap();
        let never = std::future::pending::<()>();
        // No session token yet: the first attempts fail, and the discovery keeps trying rather than guessing.
        let found = tokio::spawn({
            let url = imds.url();
            async move { agent_on_instance(&url, 8500, never).await }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(imds.count("PUT", "/latest/api/token") >= 1);
        assert!(!found.is_finished());
        imds.set("PUT", "/latest/api/token", 200, "AQAEAtoken");
        imds.set("GET", "/latest/meta-data/local-ipv4", 200, "10.0.1.23\n");
        let addr = tokio::time::timeout(Duration::from_secs(5), found)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(addr, "10.0.1.23:8500");
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_an_endpoint_that_never_answers() {
        let imds = weft_testkit::stub_http::StubHttp::start().await.unwrap();
        let stop = tokio::time::sleep(Duration::from_millis(300));
        let e = agent_on_instance(&imds.url(), 8500, stop)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("stopped while waiting"), "{e}");
    }

    #[test]
    fn the_older_arn_form_without_a_cluster_works() {
        let doc = r#"{"TaskARN":"arn:aws:ecs:eu-west-1:1:task/0a1b2c","Containers":[{"Networks":[{"NetworkMode":"awsvpc","IPv4Addresses":["10.1.0.5"]}]}]}"#;
        let t = parse_task(doc.as_bytes()).unwrap();
        assert_eq!((t.id.as_str(), t.zone.as_str()), ("0a1b2c", ""));
    }
}
