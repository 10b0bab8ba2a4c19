//! One service: `/ui/{dc}/services/{name}/{topology,instances,intentions}`. The bare URL opens the topology for
//! services in the mesh and the instances otherwise, as Consul's UI does.

use super::errors::Refused;
use super::{DetailPage, Link, Tab};
use crate::cx::{Cx, Section};
use crate::links;
use crate::live::{serve, LiveQuery, Region, Screen};
use crate::model::catalog::{self, InstanceView};
use crate::model::intentions::{rows, IntentionRow};
use crate::model::topology::{self, Topology};
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use weft_acl::{Named, Need};
use weft_http::ApiState;
use weft_state::{Store, Table};
use weft_types::intention::WILDCARD;

const TABS: [(&str, &str); 3] = [
    ("Topology", "topology"),
    ("Instances", "instances"),
    ("Intentions", "intentions"),
];

fn detail(
    cx: &Cx,
    name: &str,
    tab: &str,
    region: &Region,
    action: Option<Link>,
) -> askama::Result<String> {
    let label = TABS
        .iter()
        .find(|(_, t)| *t == tab)
        .map(|(l, _)| *l)
        .unwrap_or("");
    DetailPage {
        chrome: cx.chrome(format!("{name} {label}"), Some(Section::Services)),
        region,
        crumbs: vec![Link {
            label: "Services".into(),
            href: links::dc_path(&cx.dc, "services"),
        }],
        heading: name.to_string(),
        tabs: TABS
            .iter()
            .map(|(label, t)| Tab {
                label,
                href: links::service(&cx.dc, name, t),
                current: *t == tab,
            })
            .collect(),
        tabs_label: "Service",
        action,
    }
    .render()
}

// ---- instances ----

#[derive(Template)]
#[template(path = "instances_live.html")]
struct InstancesLive<'a> {
    name: &'a str,
    dc: &'a str,
    instances: &'a [InstanceView],
}

struct Instances {
    name: String,
}

impl Screen for Instances {
    type Model = Vec<InstanceView>;

    fn tables(&self) -> &'static [Table] {
        &[Table::Services, Table::Checks, Table::Nodes]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let mut all = catalog::instances(&cx.dc, store, &self.name);
        all.retain(|i| cx.sees(Named::Node, &i.node));
        all
    }

    fn live(&self, cx: &Cx, instances: &Self::Model) -> askama::Result<String> {
        InstancesLive {
            name: &self.name,
            dc: &cx.dc,
            instances,
        }
        .render()
    }

    fn page(&self, cx: &Cx, _m: &Self::Model, region: &Region) -> askama::Result<String> {
        detail(cx, &self.name, "instances", region, None)
    }

    fn status(&self, instances: &Self::Model) -> StatusCode {
        if instances.is_empty() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        }
    }
}

// ---- topology ----

#[derive(Template)]
#[template(path = "topology_live.html")]
struct TopologyLive<'a> {
    t: &'a Topology,
}

struct TopologyScreen {
    name: String,
}

impl Screen for TopologyScreen {
    type Model = Topology;

    fn tables(&self) -> &'static [Table] {
        &[
            Table::Services,
            Table::Checks,
            Table::Nodes,
            Table::Intentions,
        ]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Topology {
        let mut t = topology::topology(&cx.dc, store, &self.name, cx.state.default_policy.allows());
        t.downstreams
            .retain(|e| cx.sees(Named::Service, &e.service));
        t.upstreams.retain(|e| cx.sees(Named::Service, &e.service));
        t
    }

    fn live(&self, _cx: &Cx, t: &Topology) -> askama::Result<String> {
        TopologyLive { t }.render()
    }

    fn page(&self, cx: &Cx, _t: &Topology, region: &Region) -> askama::Result<String> {
        detail(cx, &self.name, "topology", region, None)
    }

    fn status(&self, t: &Topology) -> StatusCode {
        if t.health.is_none() && t.downstreams.is_empty() && t.upstreams.is_empty() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        }
    }
}

// ---- intentions ----

#[derive(Template)]
#[template(path = "service_intentions_live.html")]
struct IntentionsLive<'a> {
    name: &'a str,
    incoming: &'a [IntentionRow],
    outgoing: &'a [IntentionRow],
}

struct ServiceIntentions {
    name: String,
}

impl Screen for ServiceIntentions {
    type Model = (Vec<IntentionRow>, Vec<IntentionRow>);

    fn tables(&self) -> &'static [Table] {
        &[Table::Intentions]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let name = self.name.as_str();
        let visible =
            |i: &weft_types::intention::Intention| cx.sees(Named::Intention, &i.destination_name);
        (
            rows(&cx.dc, store, |i| {
                (i.destination_name == name || i.destination_name == WILDCARD) && visible(i)
            }),
            rows(&cx.dc, store, |i| {
                (i.source_name == name || i.source_name == WILDCARD) && visible(i)
            }),
        )
    }

    fn live(&self, _cx: &Cx, (incoming, outgoing): &Self::Model) -> askama::Result<String> {
        IntentionsLive {
            name: &self.name,
            incoming,
            outgoing,
        }
        .render()
    }

    fn page(&self, cx: &Cx, _m: &Self::Model, region: &Region) -> askama::Result<String> {
        let create = Link {
            label: "Create intention".into(),
            href: links::intention_create(&cx.dc, "", &self.name),
        };
        detail(cx, &self.name, "intentions", region, Some(create))
    }
}

// ---- handlers ----

pub async fn default_tab(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, name)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Service, &name, Need::Read)?;
    let mesh = catalog::in_mesh(&cx.state.agent.server().read(), &name);
    let tab = if mesh { "topology" } else { "instances" };
    Ok(Redirect::temporary(&links::service(&cx.dc, &name, tab)).into_response())
}

pub async fn instances(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, name)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Service, &name, Need::Read)?;
    Ok(serve(&cx, &Instances { name }, live).await)
}

pub async fn topology(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, name)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Service, &name, Need::Read)?;
    Ok(serve(&cx, &TopologyScreen { name }, live).await)
}

pub async fn intentions(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, name)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    cx.require(Named::Service, &name, Need::Read)?;
    Ok(serve(&cx, &ServiceIntentions { name }, live).await)
}
