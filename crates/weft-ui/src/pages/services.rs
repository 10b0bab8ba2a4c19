//! `/ui/{dc}/services`: every service with its kind, instance count, health and tags; sidecars folded in.

use super::errors::Refused;
use super::{options, Filter, ListPage, HEALTH_FILTER};
use crate::cx::{Cx, Section};
use crate::live::{serve, LiveQuery, Region, Screen};
use crate::model::catalog::{service_rows, ServiceRow};
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use weft_http::ApiState;
use weft_state::{Store, Table};

#[derive(Template)]
#[template(path = "services_live.html")]
struct Live<'a> {
    rows: &'a [ServiceRow],
}

struct Services {
    filter: Filter,
}

impl Screen for Services {
    type Model = Vec<ServiceRow>;

    fn tables(&self) -> &'static [Table] {
        &[Table::Services, Table::Checks, Table::Nodes]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Vec<ServiceRow> {
        let mut rows = service_rows(&cx.dc, store);
        rows.retain(|r| cx.sees(weft_acl::Named::Service, &r.name));
        rows
    }

    fn live(&self, _cx: &Cx, rows: &Vec<ServiceRow>) -> askama::Result<String> {
        Live { rows }.render()
    }

    fn page(&self, cx: &Cx, _rows: &Vec<ServiceRow>, region: &Region) -> askama::Result<String> {
        ListPage {
            chrome: cx.chrome("Services", Some(Section::Services)),
            region,
            heading: "Services",
            q: &self.filter.q,
            placeholder: "Search by name or tag",
            select_name: "status",
            select_label: "Health",
            options: options(&HEALTH_FILTER, &self.filter.status),
            action: None,
        }
        .render()
    }
}

pub async fn handler(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
    Query(live): Query<LiveQuery>,
    Query(filter): Query<Filter>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(serve(&cx, &Services { filter }, live).await)
}
