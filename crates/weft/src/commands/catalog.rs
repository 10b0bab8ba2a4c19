//! `weft catalog datacenters|nodes|services`.

use crate::client::{columns, query_value, segment, Api, HttpArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// Lists the known datacenters.
    Datacenters(Plain),
    /// Lists the nodes in the catalog.
    Nodes(NodesArgs),
    /// Lists the services in the catalog.
    Services(ServicesArgs),
}

#[derive(Args, Debug)]
pub struct Plain {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct NodesArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Only nodes running this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Full IDs, tagged addresses and metadata.
    #[arg(long)]
    pub detailed: bool,
    /// Only nodes with this metadata (key=value, repeatable).
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
    /// A filter expression over the nodes.
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Only services on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Show each service's tags.
    #[arg(long)]
    pub tags: bool,
    #[arg(long = "node-meta")]
    pub node_meta: Vec<String>,
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn meta_query(pairs: &[String]) -> String {
    pairs
        .iter()
        .map(|p| format!("node-meta={}", query_value(&p.replacen('=', ":", 1))))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn run(cmd: CatalogCmd) -> Result<i32> {
    match cmd {
        CatalogCmd::Datacenters(a) => {
            let api = Api::new(&a.http)?;
            for dc in api
                .get_json("/v1/catalog/datacenters")
                .await?
                .as_array()
                .into_iter()
                .flatten()
            {
                println!("{}", dc.as_str().unwrap_or(""));
            }
            Ok(0)
        }
        CatalogCmd::Nodes(a) => nodes(a).await,
        CatalogCmd::Services(a) => services(a).await,
    }
}

async fn nodes(a: NodesArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let mut query = vec![meta_query(&a.node_meta)];
    if let Some(f) = &a.filter {
        query.push(format!("filter={}", query_value(f)));
    }
    let query: Vec<String> = query.into_iter().filter(|q| !q.is_empty()).collect();
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let nodes = api.get_json(&format!("/v1/catalog/nodes{q}")).await?;
    let mut list: Vec<Value> = nodes.as_array().cloned().unwrap_or_default();
    if let Some(service) = &a.service {
        let instances = api
            .get_json(&format!("/v1/catalog/service/{}", segment(service)))
            .await?;
        let on: BTreeSet<String> = instances
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| s(i, "Node"))
            .collect();
        list.retain(|n| on.contains(&s(n, "Node")));
    }
    if list.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(0);
    }
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if a.detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for n in &list {
        let id = s(n, "ID");
        let short = if a.detailed {
            id
        } else {
            id.split('-').next().unwrap_or("").to_string()
        };
        let mut row = vec![s(n, "Node"), short, s(n, "Address"), s(n, "Datacenter")];
        if a.detailed {
            let kv = |v: &Value| -> String {
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                    .join(", ")
            };
            row.push(kv(&n["TaggedAddresses"]));
            row.push(kv(&n["Meta"]));
        }
        rows.push(row);
    }
    print!("{}", columns(&rows));
    Ok(0)
}

async fn services(a: ServicesArgs) -> Result<i32> {
    let api = Api::new(&a.http)?;
    let entries: Vec<(String, Vec<String>)> = if let Some(node) = &a.node {
        let v = api
            .get_json(&format!("/v1/catalog/node-services/{}", segment(node)))
            .await?;
        let mut out: Vec<(String, Vec<String>)> = v["Services"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|svc| {
                let tags = svc["Tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from);
                (s(svc, "Service"), tags.collect())
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    } else {
        let q = meta_query(&a.node_meta);
        let path = if q.is_empty() {
            "/v1/catalog/services".to_string()
        } else {
            format!("/v1/catalog/services?{q}")
        };
        let v = api.get_json(&path).await?;
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, tags)| {
                        let tags = tags
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(String::from);
                        (name.clone(), tags.collect())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if entries.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(0);
    }
    if a.tags {
        let rows: Vec<Vec<String>> = entries
            .into_iter()
            .map(|(n, t)| vec![n, t.join(",")])
            .collect();
        print!("{}", columns(&rows));
    } else {
        for (name, _) in entries {
            println!("{name}");
        }
    }
    Ok(0)
}
