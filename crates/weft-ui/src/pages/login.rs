//! `/ui/{dc}/login`: the sign-in page. The script checks the token with `GET /v1/acl/token/self` before keeping it,
//! so a mistyped secret is refused here with the API's own text rather than on the next page.

use crate::cx::chrome_for;
use crate::cx::Chrome;
use crate::live::html_response;
use crate::pages::errors::render_failed;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use weft_http::ApiState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    /// Why the viewer is here (a token that stopped resolving), shown above the form.
    reason: String,
    next: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in page; `reason` explains a forced sign-out.
pub fn page(state: &ApiState, status: StatusCode, reason: Option<String>) -> Response {
    let dc = state.agent.config().datacenter.clone();
    render(
        state,
        &dc,
        status,
        reason.unwrap_or_default(),
        String::new(),
    )
}

fn render(
    state: &ApiState,
    dc: &str,
    status: StatusCode,
    reason: String,
    next: String,
) -> Response {
    let page = LoginPage {
        chrome: chrome_for(state, dc, "Sign in".into(), None, false),
        reason,
        next,
    };
    match page.render() {
        Ok(html) => html_response(status, html),
        Err(e) => render_failed(&e),
    }
}

pub async fn handler(
    State(state): State<ApiState>,
    Path(dc): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let own = state.agent.config().datacenter.clone();
    if !state.agent.server().acl_enabled() || dc != own {
        return Redirect::temporary(&crate::links::dc_path(&own, "services")).into_response();
    }
    // Only a dashboard path may be the destination after signing in (no open redirect).
    let next = q
        .next
        .filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or_default();
    render(&state, &dc, StatusCode::OK, String::new(), next)
}
