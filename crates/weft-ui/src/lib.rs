//! The web dashboard at `/ui/`, with Consul's routes (`/ui/{dc}/services`, `/ui/{dc}/nodes`, ...).
//!
//! Pages are rendered on the server from the state store with askama templates, so the dashboard needs no build
//! step and no npm: one small stylesheet and one small script are compiled into the binary. Every page has a *live
//! region*; the script long-polls the same URL with `?live=<index>&hash=<hash>` and the server answers only when a
//! table the page reads has moved *and* the region's HTML differs (see [`live`]), so a page follows changes within
//! moments with one request in flight and no polling storm. Writes never go through this crate: the script calls
//! the `/v1/...` HTTP API the CLI uses and shows its plain-text errors inline, so the API's validation is the only
//! validation.
//!
//! Each file has one job: [`cx`] (the request's datacenter and chrome), [`live`] (the blocking fragment protocol),
//! [`assets`], [`links`] (URL building), `model/*` (view models computed from the store, no HTML) and `pages/*`
//! (one screen each: its template structs and its handler).

mod assets;
mod cx;
mod links;
mod live;
mod model;
mod other_dc;
mod pages;
pub mod viewer;

use axum::routing::get;
use axum::Router;
use weft_http::ApiState;

/// The dashboard's routes; merge them with the API router (`weft_ui::router(s.clone()).merge(weft_http::router(s))`).
/// Paths under `/ui/` the dashboard does not have get its own 404 page (a nested fallback, which stays within
/// `/ui/`, so the API router keeps answering everything else).
pub fn router(state: ApiState) -> Router {
    use pages::root;
    let ui = dc_pages()
        .route("/", get(root::ui_root))
        .route("/assets/{file}", get(assets::serve))
        .fallback(root::not_found);
    // The nested "/" is `/ui` itself; `/ui/` is routed here.
    with_viewer(
        Router::new()
            .route("/ui/", get(root::ui_root))
            .nest("/ui", ui),
        state,
    )
}

/// Signs the viewer in on every page, and passes other datacenters' pages on (see [`other_dc`]).
fn with_viewer(pages: Router<ApiState>, state: ApiState) -> Router {
    pages
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            viewer::sign_in,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            other_dc::pass_on,
        ))
        .with_state(state)
}

/// One datacenter's pages (`/{dc}/...`, to nest under `/ui`).
fn dc_pages() -> Router<ApiState> {
    use pages::{acls, intentions, kv, login, nodes, root, service, services};
    Router::new()
        .route("/{dc}", get(root::dc_root))
        .route("/{dc}/", get(root::dc_root))
        .route("/{dc}/login", get(login::handler))
        .route("/{dc}/acls", get(acls::root))
        .route("/{dc}/acls/{kind}", get(acls::handler))
        .route("/{dc}/services", get(services::handler))
        .route("/{dc}/services/{name}", get(service::default_tab))
        .route("/{dc}/services/{name}/instances", get(service::instances))
        .route("/{dc}/services/{name}/topology", get(service::topology))
        .route("/{dc}/services/{name}/intentions", get(service::intentions))
        .route("/{dc}/nodes", get(nodes::list))
        .route("/{dc}/nodes/{node}", get(nodes::default_tab))
        .route("/{dc}/nodes/{node}/health-checks", get(nodes::checks))
        .route(
            "/{dc}/nodes/{node}/service-instances",
            get(nodes::instances),
        )
        .route("/{dc}/intentions", get(intentions::list))
        .route("/{dc}/intentions/create", get(intentions::create))
        .route("/{dc}/intentions/{id}", get(intentions::edit))
        .route("/{dc}/kv", get(kv::kv_root_redirect))
        .route("/{dc}/kv/", get(kv::root))
        .route("/{dc}/kv/{*key}", get(kv::path))
}

/// The pages a server's RPC port renders for requests passed on to it: the KV pages (client agents hold no KV)
/// and every page of this datacenter, for another datacenter's dashboard (see [`other_dc`]).
/// A client agent's request for another datacenter's page reaches a server of its own first, which passes it on.
pub fn forwarded_router(state: ApiState) -> Router {
    with_viewer(Router::new().nest("/ui", dc_pages()), state)
}

#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod tests;
