//! `/ui/{dc}/intentions`: every intention in evaluation order with its precedence, and the create and edit forms
//! (`/intentions/create`, `/intentions/{id}`). The forms write through `/v1/connect/intentions`, so the API's
//! validation decides and its error text is what the user sees.

use super::errors::Refused;
use super::{options, Filter, Link, ListPage};
use crate::cx::{Chrome, Cx, Section};
use crate::links;
use crate::live::{html_response, serve, LiveQuery, Region, Screen};
use crate::model::intentions::{rows, IntentionRow};
use crate::pages::errors::render_failed;
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use weft_http::ApiState;
use weft_state::{Store, Table};
use weft_types::intention::precedence;
use weft_types::Intention;

const ACTION_FILTER: [(&str, &str); 4] = [
    ("", "Any action"),
    ("allow", "Allow"),
    ("deny", "Deny"),
    ("app-aware", "App aware"),
];

#[derive(Template)]
#[template(path = "intentions_live.html")]
struct Live<'a> {
    rows: &'a [IntentionRow],
    default_allow: bool,
}

struct Intentions {
    filter: Filter,
}

impl Screen for Intentions {
    type Model = Vec<IntentionRow>;

    fn tables(&self) -> &'static [Table] {
        &[Table::Intentions]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        rows(&cx.dc, store, |i| {
            cx.sees(weft_acl::Named::Intention, &i.destination_name)
        })
    }

    fn live(&self, cx: &Cx, rows: &Self::Model) -> askama::Result<String> {
        Live {
            rows,
            default_allow: cx.state.default_policy.allows(),
        }
        .render()
    }

    fn page(&self, cx: &Cx, _rows: &Self::Model, region: &Region) -> askama::Result<String> {
        ListPage {
            chrome: cx.chrome("Intentions", Some(Section::Intentions)),
            region,
            heading: "Intentions",
            q: &self.filter.q,
            placeholder: "Search by source, destination or description",
            select_name: "action",
            select_label: "Action",
            options: options(&ACTION_FILTER, &self.filter.action),
            action: Some(Link {
                label: "Create intention".into(),
                href: links::intention_create(&cx.dc, "", ""),
            }),
        }
        .render()
    }
}

pub async fn list(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
    Query(live): Query<LiveQuery>,
    Query(filter): Query<Filter>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(serve(&cx, &Intentions { filter }, live).await)
}

// ---- the form ----

#[derive(Template)]
#[template(path = "intention_form.html")]
struct Form {
    chrome: Chrome,
    heading: String,
    list_href: String,
    return_href: String,
    missing: bool,
    /// Editing an existing intention (its source and destination are fixed), or creating one.
    editing: bool,
    /// What the URL named, for the "not found" message.
    wanted: String,
    /// The exact endpoint of the intention being edited.
    api_url: String,
    /// The stored intention as JSON, so an edit keeps the fields the form does not show.
    original: String,
    source: String,
    destination: String,
    action: String,
    permissions: usize,
    precedence: i32,
    description: String,
    services: Vec<String>,
    /// Why the viewer cannot save or delete (the permission its token lacks): the buttons are disabled.
    locked: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FormQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
    /// Where to go after saving: a dashboard path (anything else is ignored).
    #[serde(default, rename = "return")]
    back: String,
}

impl Form {
    fn new(cx: &Cx, q: &FormQuery, heading: &str) -> Form {
        let list_href = links::dc_path(&cx.dc, "intentions");
        let return_href = if q.back.starts_with("/ui/") && !q.back.starts_with("/ui//") {
            q.back.clone()
        } else {
            list_href.clone()
        };
        let services = cx
            .state
            .agent
            .server()
            .read()
            .service_tags()
            .keys()
            .filter(|s| cx.sees(weft_acl::Named::Service, s))
            .map(|s| s.to_string())
            .collect();
        Form {
            chrome: cx.chrome(heading, Some(Section::Intentions)),
            heading: heading.to_string(),
            list_href,
            return_href,
            missing: false,
            editing: false,
            wanted: String::new(),
            api_url: String::new(),
            original: "{}".into(),
            source: q.source.clone(),
            destination: q.destination.clone(),
            action: "allow".into(),
            permissions: 0,
            precedence: precedence(
                if q.source.is_empty() { "x" } else { &q.source },
                if q.destination.is_empty() {
                    "x"
                } else {
                    &q.destination
                },
            ),
            description: String::new(),
            services,
            locked: None,
        }
    }

    fn respond(self) -> Response {
        let status = if self.missing {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        match self.render() {
            Ok(html) => html_response(status, html),
            Err(e) => render_failed(&e),
        }
    }
}

pub async fn create(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
    Query(q): Query<FormQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(Form::new(&cx, &q, "Create intention").respond())
}

/// `/ui/{dc}/intentions/{id}`: `id` is the pair in Consul's UI form (`default:default:web:default:default:db`) or,
/// for intentions made through the legacy API, their ID.
pub async fn edit(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, id)): Path<(String, String)>,
    Query(q): Query<FormQuery>,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    let found: Option<Intention> = {
        let store = cx.state.agent.server().read();
        match links::intention_pair(&id) {
            Some((source, destination)) => store.intention(source, destination).cloned(),
            None => store.intention_by_id(&id).cloned(),
        }
    };
    let mut form = Form::new(&cx, &q, "Edit intention");
    form.editing = true;
    form.wanted = id;
    match found {
        None => form.missing = true,
        Some(i) => {
            cx.require(
                weft_acl::Named::Intention,
                &i.destination_name,
                weft_acl::Need::Read,
            )?;
            form.locked = cx.viewer.lacks(
                weft_acl::Named::Intention,
                &i.destination_name,
                weft_acl::Need::Write,
            );
            form.heading = format!("{} → {}", i.source_name, i.destination_name);
            form.chrome.title = form.heading.clone();
            form.api_url = links::intention_api(&i.source_name, &i.destination_name);
            form.original = serde_json::to_string(&i).unwrap_or_else(|_| "{}".into());
            form.source = i.source_name.clone();
            form.destination = i.destination_name.clone();
            form.action = i.action.clone();
            form.permissions = i.permissions.len();
            form.precedence = i.precedence;
            form.description = i.description.clone();
        }
    }
    Ok(form.respond())
}
