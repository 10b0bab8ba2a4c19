//! Live pages: a page is a [`Screen`] whose *live region* is re-rendered when the tables it reads change.
//!
//! The protocol is a blocking query on the page's own URL. The first load renders the whole page, stamping the live
//! region with the index of the tables it read and a fingerprint of its HTML. The script then asks for
//! `?live=<index>&hash=<fingerprint>`; the server parks on the watches of those tables and answers with the new
//! region only when a table has moved from `index` *and* the re-rendered HTML differs (a check re-reporting the same
//! output wakes the server but sends nothing). After [`LIVE_WAIT`] without a difference it answers 204. So each open
//! page holds at most one request, a change reaches it within moments, and a quiet cluster costs one request every
//! [`LIVE_WAIT`]. Writes in bursts are coalesced by a short [`SETTLE`] pause before rendering.

use crate::assets::fingerprint;
use crate::cx::Cx;
use crate::pages::errors;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_state::{Store, Table};

/// How long a live request waits for a difference before answering 204.
pub const LIVE_WAIT: Duration = Duration::from_secs(30);
/// Pause after a wake-up before rendering, so a burst of writes becomes one update.
pub const SETTLE: Duration = Duration::from_millis(40);

/// The rendered live region of a page.
pub struct Region {
    pub index: u64,
    pub hash: String,
    pub html: String,
}

/// `?live=<index>&hash=<fingerprint>`: present when the script asks for the next version of the region.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    pub live: Option<u64>,
    pub hash: Option<String>,
}

/// One page: a model computed from the store under its read lock, a live region and the page around it.
pub trait Screen: Send + Sync {
    type Model: Send;

    /// The tables whose changes may change the live region.
    fn tables(&self) -> &'static [Table];

    /// Everything the page shows, as owned data (computed under the store's read lock, so keep it quick).
    fn model(&self, cx: &Cx, store: &Store) -> Self::Model;

    /// The live region's HTML.
    fn live(&self, cx: &Cx, model: &Self::Model) -> askama::Result<String>;

    /// The whole page around a rendered live region.
    fn page(&self, cx: &Cx, model: &Self::Model, region: &Region) -> askama::Result<String>;

    /// The status of a full page (404 when what the URL names does not exist).
    fn status(&self, _model: &Self::Model) -> StatusCode {
        StatusCode::OK
    }
}

/// The highest index among `tables`: it only grows, and moves whenever one of them is written.
pub fn index_of(store: &Store, tables: &[Table]) -> u64 {
    tables
        .iter()
        .map(|t| store.table_index(*t))
        .max()
        .unwrap_or(0)
}

/// Answers a page request: the whole page, or with `?live=` the next version of its live region.
pub async fn serve<S: Screen>(cx: &Cx, screen: &S, q: LiveQuery) -> Response {
    match q.live {
        Some(since) => poll(cx, screen, since, q.hash.unwrap_or_default()).await,
        None => full(cx, screen),
    }
}

fn full<S: Screen>(cx: &Cx, screen: &S) -> Response {
    let (index, model) = {
        let store = cx.state.agent.server().read();
        (index_of(&store, screen.tables()), screen.model(cx, &store))
    };
    let rendered = screen.live(cx, &model).and_then(|html| {
        let region = Region {
            index,
            hash: fingerprint(html.as_bytes()),
            html,
        };
        screen.page(cx, &model, &region)
    });
    match rendered {
        Ok(page) => html_response(screen.status(&model), page),
        Err(e) => errors::render_failed(&e),
    }
}

async fn poll<S: Screen>(cx: &Cx, screen: &S, mut since: u64, client_hash: String) -> Response {
    let server = cx.state.agent.server();
    let mut receivers: Vec<watch::Receiver<u64>> = screen
        .tables()
        .iter()
        .map(|t| server.subscribe(*t))
        .collect();
    let deadline = Instant::now() + LIVE_WAIT;
    loop {
        for r in receivers.iter_mut() {
            r.borrow_and_update();
        }
        let (index, model) = {
            let store = server.read();
            let index = index_of(&store, screen.tables());
            // An index below the client's means the store started over (a restarted agent): answer too.
            (index, (index != since).then(|| screen.model(cx, &store)))
        };
        if let Some(model) = model {
            let html = match screen.live(cx, &model) {
                Ok(html) => html,
                Err(e) => return errors::render_failed(&e),
            };
            let hash = fingerprint(html.as_bytes());
            if hash != client_hash {
                return fragment(cx, index, &hash, html);
            }
            since = index;
        }
        tokio::select! {
            _ = any_changed(&mut receivers) => tokio::time::sleep(SETTLE).await,
            _ = tokio::time::sleep_until(deadline) => return unchanged(cx, since),
        }
    }
}

/// Resolves when any receiver sees a new value. A receiver whose sender is gone never resolves (the store lives as
/// long as the process, so that does not happen; the wait's deadline bounds it anyway).
async fn any_changed(receivers: &mut [watch::Receiver<u64>]) {
    type Changed<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
    let mut futures: Vec<Option<Changed<'_>>> = receivers
        .iter_mut()
        .map(|r| Some(Box::pin(async move { r.changed().await.is_ok() }) as Changed<'_>))
        .collect();
    poll_fn(|task| {
        for slot in futures.iter_mut() {
            if let Some(f) = slot {
                if let Poll::Ready(ok) = f.as_mut().poll(task) {
                    *slot = None;
                    if ok {
                        return Poll::Ready(());
                    }
                }
            }
        }
        Poll::Pending
    })
    .await
}

fn live_headers(cx: &Cx, response: &mut Response, index: u64) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        headers.insert("x-weft-index", v);
    }
    // The leader can change while a page is open; the script keeps the "no leader" banner in step with this.
    if let Ok(v) = HeaderValue::from_str(&cx.leader()) {
        headers.insert("x-weft-leader", v);
    }
}

fn fragment(cx: &Cx, index: u64, hash: &str, html: String) -> Response {
    let mut response = Html(html).into_response();
    live_headers(cx, &mut response, index);
    if let Ok(v) = HeaderValue::from_str(hash) {
        response.headers_mut().insert("x-weft-hash", v);
    }
    response
}

fn unchanged(cx: &Cx, index: u64) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    live_headers(cx, &mut response, index);
    response
}

/// A full HTML page; pages are never cached, since they carry live state.
pub fn html_response(status: StatusCode, page: String) -> Response {
    let mut response = (status, Html(page)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
