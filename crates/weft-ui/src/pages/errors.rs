//! Error pages: an unknown datacenter, a path the dashboard does not have, and the (never expected) failure to
//! render a template. They keep the chrome so the user can navigate on.

use super::Link;
use crate::cx::{chrome_for, Chrome};
use crate::links;
use crate::live::html_response;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use weft_http::ApiState;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
    back: Link,
}

/// An answer that ends a request early (boxed: responses are large and this is the rare path).
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refused {
    fn from(r: Response) -> Refused {
        Refused(Box::new(r))
    }
}

pub fn page(
    state: &ApiState,
    dc: &str,
    status: StatusCode,
    heading: &str,
    message: String,
    back: Link,
    signed_in: bool,
) -> Response {
    let page = ErrorPage {
        chrome: chrome_for(state, dc, heading.to_string(), None, signed_in),
        heading: heading.to_string(),
        message,
        back,
    };
    match page.render() {
        Ok(html) => html_response(status, html),
        Err(e) => render_failed(&e),
    }
}

pub fn unknown_dc(state: &ApiState, dc: &str, own: &str) -> Response {
    page(
        state,
        own,
        StatusCode::NOT_FOUND,
        "Unknown datacenter",
        format!("This agent serves datacenter {own:?}; it knows nothing about {dc:?}."),
        Link {
            label: format!("Go to {own}"),
            href: links::dc_path(own, "services"),
        },
        false,
    )
}

pub fn not_found(state: &ApiState, path: &str) -> Response {
    let own = state.agent.config().datacenter.clone();
    page(
        state,
        &own,
        StatusCode::NOT_FOUND,
        "Page not found",
        format!("The dashboard has no page at {path}."),
        Link {
            label: "Go to services".into(),
            href: links::dc_path(&own, "services"),
        },
        false,
    )
}

pub fn render_failed(e: &askama::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot render the page: {e}\n"),
    )
        .into_response()
}
