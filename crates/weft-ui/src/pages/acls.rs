//! `/ui/{dc}/acls/{tokens,policies,roles}`: the access pages. The script lists and edits through `/v1/acl/...`
//! with the viewer's token, because ACL state lives on the servers only (a client agent's replica holds none of
//! it); the page around it is drawn here, with the create and edit forms disabled when the token lacks
//! `acl:write`, and the whole page refused without `acl:read`.

use super::errors::{self, Refused};
use super::{Link, Tab};
use crate::cx::{Chrome, Cx, Section};
use crate::links;
use crate::live::html_response;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use weft_acl::{Need, Whole};
use weft_http::ApiState;

/// The three lists: URL segment, heading, the singular the forms use.
const KINDS: [(&str, &str, &str); 3] = [
    ("tokens", "Tokens", "token"),
    ("policies", "Policies", "policy"),
    ("roles", "Roles", "role"),
];

#[derive(Template)]
#[template(path = "acls.html")]
struct AclPage {
    chrome: Chrome,
    kind: &'static str,
    heading: &'static str,
    singular: &'static str,
    tabs: Vec<Tab>,
    /// Why the viewer cannot create, edit or delete (the permission its token lacks).
    locked: Option<String>,
}

pub async fn root(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
) -> Result<Redirect, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(Redirect::temporary(&links::dc_path(&cx.dc, "acls/tokens")))
}

pub async fn handler(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, kind)): Path<(String, String)>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    let Some(&(kind, heading, singular)) = KINDS.iter().find(|(k, _, _)| *k == kind) else {
        return Ok(errors::not_found(
            &cx.state,
            &links::dc_path(&cx.dc, &format!("acls/{kind}")),
        ));
    };
    if !cx.state.agent.server().acl_enabled() {
        return Ok(errors::page(
            &cx.state,
            &cx.dc,
            StatusCode::NOT_FOUND,
            "ACLs are not enabled",
            "This agent runs without ACLs (acl.enabled = false): there are no tokens, policies or roles to manage."
                .into(),
            Link {
                label: "Go to services".into(),
                href: links::dc_path(&cx.dc, "services"),
            },
            false,
        ));
    }
    cx.require_whole(Whole::Acl, Need::Read)?;
    let page = AclPage {
        chrome: cx.chrome(heading, Some(Section::Acls)),
        kind,
        heading,
        singular,
        tabs: KINDS
            .iter()
            .map(|(k, label, _)| Tab {
                label,
                href: links::dc_path(&cx.dc, &format!("acls/{k}")),
                current: *k == kind,
            })
            .collect(),
        locked: cx.viewer.lacks_whole(Whole::Acl, Need::Write),
    };
    Ok(match page.render() {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => errors::render_failed(&e).into_response(),
    })
}
