//! `/ui/{dc}/nodes` (every node, its health, the Raft leader marked) and one node's
//! `/health-checks` and `/service-instances` tabs.

use super::errors::Refused;
use super::{options, DetailPage, Filter, Link, ListPage, Tab, HEALTH_FILTER};
use crate::cx::{Cx, Section};
use crate::links;
use crate::live::{serve, LiveQuery, Region, Screen};
use crate::model::catalog::{self, CheckView, NodeInstance, NodeRow};
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use weft_acl::{Named, Need};
use weft_http::ApiState;
use weft_state::{Store, Table};

const TABLES: &[Table] = &[Table::Nodes, Table::Services, Table::Checks];

// ---- the list ----

#[derive(Template)]
#[template(path = "nodes_live.html")]
struct NodesLive<'a> {
    rows: &'a [NodeRow],
}

struct Nodes {
    filter: Filter,
}

impl Screen for Nodes {
    type Model = Vec<NodeRow>;

    fn tables(&self) -> &'static [Table] {
        TABLES
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let mut rows = catalog::node_rows(&cx.dc, store, |n| cx.is_leader_node(n));
        rows.retain(|r| cx.sees(Named::Node, &r.name));
        rows
    }

    fn live(&self, _cx: &Cx, rows: &Self::Model) -> askama::Result<String> {
        NodesLive { rows }.render()
    }

    fn page(&self, cx: &Cx, _rows: &Self::Model, region: &Region) -> askama::Result<String> {
        ListPage {
            chrome: cx.chrome("Nodes", Some(Section::Nodes)),
            region,
            heading: "Nodes",
            q: &self.filter.q,
            placeholder: "Search by name or address",
            select_name: "status",
            select_label: "Health",
            options: options(&HEALTH_FILTER, &self.filter.status),
            action: None,
        }
        .render()
    }
}

// ---- one node ----

const TABS: [(&str, &str); 2] = [
    ("Health checks", "health-checks"),
    ("Service instances", "service-instances"),
];

fn detail(cx: &Cx, node: &str, tab: &str, region: &Region) -> askama::Result<String> {
    DetailPage {
        chrome: cx.chrome(node.to_string(), Some(Section::Nodes)),
        region,
        crumbs: vec![Link {
            label: "Nodes".into(),
            href: links::dc_path(&cx.dc, "nodes"),
        }],
        heading: node.to_string(),
        tabs: TABS
            .iter()
            .map(|(label, t)| Tab {
                label,
                href: links::node(&cx.dc, node, t),
                current: *t == tab,
            })
            .collect(),
        tabs_label: "Node",
        action: None,
    }
    .render()
}

fn found(missing: bool) -> StatusCode {
    if missing {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    }
}

#[derive(Template)]
#[template(path = "node_checks_live.html")]
struct ChecksLive<'a> {
    name: &'a str,
    dc: &'a str,
    missing: bool,
    checks: &'a [CheckView],
}

struct NodeChecks {
    node: String,
}

impl Screen for NodeChecks {
    /// Whether the node is missing, and its checks.
    type Model = (bool, Vec<CheckView>);

    fn tables(&self) -> &'static [Table] {
        TABLES
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let mut checks = catalog::node_checks(store, &self.node);
        checks.retain(|c| c.service_name.is_empty() || cx.sees(Named::Service, &c.service_name));
        (store.node(&self.node).is_none(), checks)
    }

    fn live(&self, cx: &Cx, (missing, checks): &Self::Model) -> askama::Result<String> {
        ChecksLive {
            name: &self.node,
            dc: &cx.dc,
            missing: *missing,
            checks,
        }
        .render()
    }

    fn page(&self, cx: &Cx, _m: &Self::Model, region: &Region) -> askama::Result<String> {
        detail(cx, &self.node, "health-checks", region)
    }

    fn status(&self, (missing, _): &Self::Model) -> StatusCode {
        found(*missing)
    }
}

#[derive(Template)]
#[template(path = "node_instances_live.html")]
struct InstancesLive<'a> {
    name: &'a str,
    dc: &'a str,
    missing: bool,
    instances: &'a [NodeInstance],
}

struct NodeInstances {
    node: String,
}

impl Screen for NodeInstances {
    type Model = (bool, Vec<NodeInstance>);

    fn tables(&self) -> &'static [Table] {
        TABLES
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let mut instances = catalog::node_instances(&cx.dc, store, &self.node);
        instances.retain(|i| cx.sees(Named::Service, &i.service));
        (store.node(&self.node).is_none(), instances)
    }

    fn live(&self, cx: &Cx, (missing, instances): &Self::Model) -> askama::Result<String> {
        InstancesLive {
            name: &self.node,
            dc: &cx.dc,
            missing: *missing,
            instances,
        }
        .render()
    }

    fn page(&self, cx: &Cx, _m: &Self::Model, region: &Region) -> askama::Result<String> {
        detail(cx, &self.node, "service-instances", region)
    }

    fn status(&self, (missing, _): &Self::Model) -> StatusCode {
        found(*missing)
    }
}

// ---- handlers ----

pub async fn list(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
    Query(live): Query<LiveQuery>,
    Query(filter): Query<Filter>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(serve(&cx, &Nodes { filter }, live).await)
}

pub async fn default_tab(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, node)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Node, &node, Need::Read)?;
    Ok(Redirect::temporary(&links::node(&cx.dc, &node, "health-checks")).into_response())
}

pub async fn checks(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, node)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Node, &node, Need::Read)?;
    Ok(serve(&cx, &NodeChecks { node }, live).await)
}

pub async fn instances(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, node)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Node, &node, Need::Read)?;
    Ok(serve(&cx, &NodeInstances { node }, live).await)
}
