//! Entry points: `/ui/` and `/ui/{dc}/` lead to the services list (as in Consul), anything else under `/ui/` the
//! dashboard does not know gets a 404 page with the navigation still there.

use super::errors::{self, Refused};
use crate::cx::Cx;
use crate::links;
use crate::viewer::Viewer;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use weft_http::ApiState;

pub async fn ui_root(State(state): State<ApiState>) -> Redirect {
    let dc = state.agent.config().datacenter.clone();
    Redirect::temporary(&links::dc_path(&dc, "services"))
}

pub async fn dc_root(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
) -> Result<Redirect, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(Redirect::temporary(&links::dc_path(&cx.dc, "services")))
}

/// The nested router's fallback: `uri` has lost its `/ui` prefix.
pub async fn not_found(State(state): State<ApiState>, uri: Uri) -> Response {
    errors::not_found(&state, &format!("/ui{}", uri.path())).into_response()
}
