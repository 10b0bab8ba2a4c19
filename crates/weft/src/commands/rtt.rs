//! `weft rtt NODE [NODE]`: the round trip between two nodes as their network coordinates estimate it, as Consul's
//! `consul rtt` prints it. The second node defaults to the agent's own. With `-wan`, between two servers of the
//! WAN pool, named `<node>.<dc>`, from their WAN coordinates (the second defaults to the agent's own server).

use crate::client::{Api, HttpArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use weft_types::coordinate::Coordinate;

#[derive(Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Between servers of federated datacenters (`<node>.<dc>`), from their WAN coordinates.
    #[arg(long)]
    pub wan: bool,
    /// One node, or two; with one, the other is the agent's own node.
    #[arg(num_args = 1..=2, required = true)]
    pub nodes: Vec<String>,
}

async fn coordinate(api: &Api, node: &str) -> Result<Coordinate> {
    let path = format!("/v1/coordinate/node/{}", weft_types::url::segment(node));
    let list = api
        .get_json(&path)
        .await
        .with_context(|| format!("Could not find a coordinate for node {node:?}"))?;
    let first = list
        .get(0)
        .and_then(|e| e.get("Coord"))
        .cloned()
        .with_context(|| format!("Could not find a coordinate for node {node:?}"))?;
    serde_json::from_value(first)
        .with_context(|| format!("the coordinate of {node:?} is malformed"))
}

/// A WAN pool member's coordinate, from `/v1/coordinate/datacenters`.
async fn wan_coordinate(api: &Api, member: &str) -> Result<Coordinate> {
    let list = api.get_json("/v1/coordinate/datacenters").await?;
    let coord = list
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|dc| dc["Coordinates"].as_array().cloned().unwrap_or_default())
        .find(|c| c["Node"] == member)
        .map(|c| c["Coord"].clone())
        .with_context(|| format!("Could not find a coordinate for node {member:?}"))?;
    serde_json::from_value(coord)
        .with_context(|| format!("the coordinate of {member:?} is malformed"))
}

async fn run_wan(api: &Api, nodes: &[String]) -> Result<i32> {
    let first = nodes[0].clone();
    let second = match nodes.get(1) {
        Some(n) => n.clone(),
        None => {
            let me = api.get_json("/v1/agent/self").await?;
            if me["Config"]["Server"] != true {
                bail!("-wan with one node needs a server agent: name both nodes, or ask a server");
            }
            let node = me["Config"]["NodeName"].as_str().unwrap_or_default();
            let dc = me["Config"]["Datacenter"].as_str().unwrap_or_default();
            format!("{node}.{dc}")
        }
    };
    let (c1, c2) = (
        wan_coordinate(api, &first).await?,
        wan_coordinate(api, &second).await?,
    );
    let rtt = c1.distance_to(&c2);
    println!(
        "Estimated {first} <-> {second} rtt: {:.3} ms (using WAN coordinates)",
        rtt.as_secs_f64() * 1000.0
    );
    Ok(0)
}

pub async fn run(a: RttArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    if a.wan {
        return run_wan(&api, &a.nodes).await;
    }
    let first = a.nodes[0].clone();
    let second = match a.nodes.get(1) {
        Some(n) => n.clone(),
        None => api.get_json("/v1/agent/self").await?["Config"]["NodeName"]
            .as_str()
            .context("the agent did not say its node name")?
            .to_string(),
    };
    let (c1, c2) = (
        coordinate(&api, &first).await?,
        coordinate(&api, &second).await?,
    );
    let rtt = c1.distance_to(&c2);
    println!(
        "Estimated {first} <-> {second} rtt: {:.3} ms (using LAN coordinates)",
        rtt.as_secs_f64() * 1000.0
    );
    Ok(0)
}
