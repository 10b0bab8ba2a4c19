//! `weft rtt NODE [NODE]`: the round trip between two nodes as their network coordinates estimate it, as Consul's
//! `consul rtt` prints it. The second node defaults to the agent's own.

use crate::client::{Api, HttpArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use weft_types::coordinate::Coordinate;

#[derive(Args, Debug)]
pub struct RttArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Between servers in different datacenters (WAN coordinates): Weft serves one datacenter.
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

pub async fn run(a: RttArgs) -> Result<i32> {
    if a.wan {
        bail!("-wan: Weft serves a single datacenter, so there are no WAN coordinates");
    }
    let api = Api::new(&a.http)?;
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
