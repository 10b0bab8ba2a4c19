//! Who is looking at the dashboard. With ACLs on, every page is rendered for the viewer's token: lists show only
//! what it may read, a page about something it may not read is a 403, and write controls it could not use are
//! disabled with the missing permission as their tooltip.
//!
//! The token is kept in the browser. The sign-in page stores it in `localStorage` (the script sends it as
//! `X-Consul-Token` on every `/v1` call) and in a `SameSite=Strict` cookie scoped to `/ui`, so that ordinary
//! navigation and the live regions' long polls render for it too. The cookie is read here only, on `GET` pages
//! that change nothing: the API never accepts it, so a cross-site request cannot write with it.

use crate::pages::login;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use weft_acl::{Named, Need, Whole};
use weft_http::caller::{token_of, Caller};
use weft_http::ApiState;

/// The cookie the sign-in page sets.
pub const TOKEN_COOKIE: &str = "weft-token";

/// The viewer of one page.
#[derive(Clone)]
pub struct Viewer {
    pub caller: Arc<Caller>,
    /// ACLs are on: the chrome shows who is signed in and the access pages.
    pub acl: bool,
    /// The request carried a token (header or cookie), rather than falling back to the default or anonymous one.
    pub signed_in: bool,
}

impl Viewer {
    /// The viewer with ACLs off: everything is visible and writable.
    pub fn everything() -> Viewer {
        Viewer {
            caller: Caller::everything(),
            acl: false,
            signed_in: false,
        }
    }

    pub fn may(&self, kind: Named, name: &str, need: Need) -> bool {
        self.caller.identity.authorizer.named(kind, name, need)
    }

    pub fn may_whole(&self, kind: Whole, need: Need) -> bool {
        self.caller.identity.authorizer.whole(kind, need)
    }

    /// Why a control is disabled: `None` when the viewer may use it, else the permission it lacks (its tooltip).
    pub fn lacks(&self, kind: Named, name: &str, need: Need) -> Option<String> {
        (!self.may(kind, name, need)).then(|| {
            format!(
                "Your token lacks {}:{} on {name:?}",
                kind.as_str(),
                need.as_str()
            )
        })
    }

    pub fn lacks_whole(&self, kind: Whole, need: Need) -> Option<String> {
        (!self.may_whole(kind, need))
            .then(|| format!("Your token lacks {}:{}", kind.as_str(), need.as_str()))
    }

    /// The permission-denied text the API would give, for a 403 page.
    pub fn denied(&self, kind: &str, need: Need, name: Option<&str>) -> String {
        let mut text = format!(
            "Permission denied: token with AccessorID '{}' lacks permission '{kind}:{}'",
            self.caller.identity.accessor_id,
            need.as_str()
        );
        if let Some(name) = name {
            text.push_str(&format!(" on {name:?}"));
        }
        text
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    /// The viewer [`sign_in`] resolved. A route outside its layer has none and sees what ACLs off would show, so
    /// every dashboard router must carry the layer (a test walks them).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Viewer, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .unwrap_or_else(Viewer::closed))
    }
}

impl Viewer {
    /// A viewer with no permission at all (fails closed where no viewer was resolved).
    fn closed() -> Viewer {
        Viewer {
            caller: Arc::new(Caller::with_identity(
                weft_server::Identity::deny_all(),
                false,
            )),
            acl: true,
            signed_in: false,
        }
    }
}

/// The token a cookie header carries, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == TOKEN_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

/// Middleware: resolves the viewer of every dashboard request. A token that no longer resolves (deleted, expired)
/// gets the sign-in page with the reason, never a page rendered as someone else.
pub async fn sign_in(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    if !state.agent.server().acl_enabled() {
        req.extensions_mut().insert(Viewer::everything());
        return next.run(req).await;
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if token_of(&query, req.headers()).is_none() {
        // As a header, so that pages passed on to a server (client agents' KV pages) carry it as the API does.
        let from_cookie = cookie_token(req.headers()).and_then(|t| HeaderValue::from_str(t).ok());
        if let Some(value) = from_cookie {
            req.headers_mut().insert("x-consul-token", value);
        }
    }
    match Caller::resolve(&state, &query, req.headers()).await {
        Ok(caller) => {
            let signed_in = caller.token_given;
            req.extensions_mut().insert(Viewer {
                caller,
                acl: true,
                signed_in,
            });
            next.run(req).await
        }
        Err(e) => {
            let reason = format!(
                "{}: the token you signed in with is not valid any more (deleted, or expired). Sign in again.",
                e.message
            );
            let mut response = login::page(&state, StatusCode::UNAUTHORIZED, Some(reason));
            // The script sees this on a live poll and goes to the sign-in page.
            response
                .headers_mut()
                .insert("x-weft-signed-out", HeaderValue::from_static("1"));
            response.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cookie_token_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; weft-token=abc-123; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h), Some("abc-123"));
        h.insert(
            axum::http::header::COOKIE,
            "weft-token=; x=1".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h), None);
        h.insert(axum::http::header::COOKIE, "weft-tokens=x".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }
}
