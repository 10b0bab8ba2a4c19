//! `/ui/{dc}/kv/...`: folders (a path ending in `/`, or the root) list what is one level below them; any other path
//! is a key, shown with its value and metadata and an edit form. Writes go through `/v1/kv/...` from the script
//! (creates with `?cas=0` so they never overwrite, edits with `?cas=<index seen>` so they never clobber).

use super::errors::Refused;
use super::Link;
use crate::cx::{Chrome, Cx, Section};
use crate::links;
use crate::live::{serve, LiveQuery, Region, Screen};
use crate::model::kv::{self, EntryView, Folder};
use crate::viewer::Viewer;
use askama::Template;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use weft_acl::{Named, Need};
use weft_http::ApiState;
use weft_state::{Store, Table};

// ---- folders ----

#[derive(Template)]
#[template(path = "kv_folder_live.html")]
struct FolderLive<'a> {
    prefix: &'a str,
    rows: &'a [kv::KvRow],
}

#[derive(Template)]
#[template(path = "kv_folder.html")]
struct FolderPage<'a> {
    chrome: Chrome,
    region: &'a Region,
    crumbs: Vec<Link>,
    heading: String,
    prefix: &'a str,
    ui_base: String,
    open_create: bool,
    new_key: &'a str,
}

struct FolderScreen {
    prefix: String,
    create: Option<String>,
}

impl Screen for FolderScreen {
    /// The folder, and whether anything at all is stored under its prefix.
    type Model = (Folder, bool);

    fn tables(&self) -> &'static [Table] {
        &[Table::Kv]
    }

    fn model(&self, cx: &Cx, store: &Store) -> Self::Model {
        let mut folder = kv::folder(&cx.dc, store, &self.prefix);
        folder.rows.retain(|r| cx.sees(Named::Key, &r.key));
        for row in folder.rows.iter_mut() {
            row.locked = if row.folder {
                (!cx.viewer
                    .caller
                    .identity
                    .authorizer
                    .key_write_prefix(&row.key))
                .then(|| {
                    format!(
                        "Your token lacks key:write on every key under {:?}",
                        row.key
                    )
                })
            } else {
                cx.viewer.lacks(Named::Key, &row.key, Need::Write)
            };
        }
        (
            folder,
            self.prefix.is_empty() || kv::has_children(store, &self.prefix),
        )
    }

    fn live(&self, _cx: &Cx, (folder, _): &Self::Model) -> askama::Result<String> {
        FolderLive {
            prefix: &folder.prefix,
            rows: &folder.rows,
        }
        .render()
    }

    fn page(&self, cx: &Cx, _m: &Self::Model, region: &Region) -> askama::Result<String> {
        let parent = self.prefix.strip_suffix('/').unwrap_or(&self.prefix);
        let heading = match parent.rsplit_once('/') {
            _ if self.prefix.is_empty() => "Key/Value".to_string(),
            Some((_, last)) => format!("{last}/"),
            None => self.prefix.clone(),
        };
        FolderPage {
            chrome: cx.chrome(
                if self.prefix.is_empty() {
                    "Key/Value".to_string()
                } else {
                    self.prefix.clone()
                },
                Some(Section::Kv),
            ),
            region,
            crumbs: if self.prefix.is_empty() {
                Vec::new()
            } else {
                kv::crumbs(&cx.dc, parent)
            },
            heading,
            prefix: &self.prefix,
            ui_base: links::kv(&cx.dc, ""),
            open_create: self.create.is_some(),
            new_key: self.create.as_deref().unwrap_or(""),
        }
        .render()
    }

    fn status(&self, (_, exists): &Self::Model) -> StatusCode {
        if *exists {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        }
    }
}

// ---- keys ----

#[derive(Template)]
#[template(path = "kv_key_live.html")]
struct KeyLive<'a> {
    key: &'a str,
    entry: &'a Option<EntryView>,
    create_href: String,
}

#[derive(Template)]
#[template(path = "kv_key.html")]
struct KeyPage<'a> {
    locked: Option<String>,
    chrome: Chrome,
    region: &'a Region,
    crumbs: Vec<Link>,
    heading: &'a str,
    key: &'a str,
    entry: &'a Option<EntryView>,
    api_url: String,
    parent_href: String,
}

struct KeyScreen {
    key: String,
}

impl KeyScreen {
    fn parent(&self) -> &str {
        match self.key.rfind('/') {
            Some(at) => &self.key[..=at],
            None => "",
        }
    }

    fn name(&self) -> &str {
        &self.key[self.parent().len()..]
    }
}

impl Screen for KeyScreen {
    type Model = Option<EntryView>;

    fn tables(&self) -> &'static [Table] {
        &[Table::Kv]
    }

    fn model(&self, _cx: &Cx, store: &Store) -> Self::Model {
        kv::entry(store, &self.key)
    }

    fn live(&self, cx: &Cx, entry: &Self::Model) -> askama::Result<String> {
        KeyLive {
            key: &self.key,
            entry,
            create_href: format!(
                "{}?create={}",
                links::kv(&cx.dc, self.parent()),
                links::query_value(self.name())
            ),
        }
        .render()
    }

    fn page(&self, cx: &Cx, entry: &Self::Model, region: &Region) -> askama::Result<String> {
        KeyPage {
            locked: cx.viewer.lacks(Named::Key, &self.key, Need::Write),
            chrome: cx.chrome(self.key.clone(), Some(Section::Kv)),
            region,
            crumbs: kv::crumbs(&cx.dc, &self.key),
            heading: self.name(),
            key: &self.key,
            entry,
            api_url: links::kv_api(&self.key),
            parent_href: links::kv(&cx.dc, self.parent()),
        }
        .render()
    }

    fn status(&self, entry: &Self::Model) -> StatusCode {
        if entry.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        }
    }
}

// ---- handlers ----

#[derive(Debug, Default, Deserialize)]
pub struct FolderQuery {
    /// Open the create form with this name filled in (the "Create it" link of a missing key).
    create: Option<String>,
}

pub async fn kv_root_redirect(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
) -> Result<Redirect, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    Ok(Redirect::temporary(&links::kv(&cx.dc, "")))
}

/// Client agents hold no KV (see `weft_server::replica`): a server renders their KV pages, live updates included.
/// `uri` is the request's own (`OriginalUri`: the dashboard's router is nested under `/ui`).
async fn from_servers(cx: &Cx, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    weft_http::forward::to_servers(&cx.state, &Method::GET, path_and_query, headers)
        .await
        .map(IntoResponse::into_response)
}

pub async fn root(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(dc): Path<String>,
    Query(live): Query<LiveQuery>,
    Query(q): Query<FolderQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    if let Some(answer) = from_servers(&cx, &uri, &headers).await {
        return Ok(answer);
    }
    cx.require(Named::Key, "", list_need(&cx))?;
    let screen = FolderScreen {
        prefix: String::new(),
        create: q.create,
    };
    Ok(serve(&cx, &screen, live).await)
}

pub async fn path(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path((dc, key)): Path<(String, String)>,
    Query(live): Query<LiveQuery>,
    Query(q): Query<FolderQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let cx = Cx::new(state, dc, viewer)?;
    if let Some(answer) = from_servers(&cx, &uri, &headers).await {
        return Ok(answer);
    }
    if key.ends_with('/') {
        cx.require(Named::Key, &key, list_need(&cx))?;
        let screen = FolderScreen {
            prefix: key,
            create: q.create,
        };
        return Ok(serve(&cx, &screen, live).await);
    }
    if live.live.is_none() {
        // A path without a value but with keys below it is a folder typed without its slash.
        let folder = format!("{key}/");
        let is_folder = {
            let store = cx.state.agent.server().read();
            store.kv_get(&key).is_none() && kv::has_children(&store, &folder)
        };
        if is_folder {
            return Ok(Redirect::temporary(&links::kv(&cx.dc, &folder)).into_response());
        }
    }
    cx.require(Named::Key, &key, Need::Read)?;
    Ok(serve(&cx, &KeyScreen { key }, live).await)
}

/// Listing a folder needs `key:list` where `acl.enable_key_list_policy` is on, else `key:read` (as the API).
fn list_need(cx: &Cx) -> Need {
    if cx.state.acl.enable_key_list_policy {
        Need::List
    } else {
        Need::Read
    }
}
