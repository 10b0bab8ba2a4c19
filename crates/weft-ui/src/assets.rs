//! The stylesheet and script, compiled into the binary (two small files do not justify an embedding crate).
//!
//! Pages link them as `/ui/assets/<file>?v=<content hash>`, so browsers may cache them for good and a new build is
//! fetched at once; a request without the current hash is answered uncached.

use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::OnceLock;

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

struct Asset {
    name: &'static str,
    body: &'static str,
    content_type: &'static str,
}

const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.css",
        body: CSS,
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        name: "app.js",
        body: JS,
        content_type: "text/javascript; charset=utf-8",
    },
];

/// FNV-1a, 64 bits, as hex: content fingerprints for cache busting and live-region comparison (not security).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn hashes() -> &'static [String; 2] {
    static HASHES: OnceLock<[String; 2]> = OnceLock::new();
    HASHES.get_or_init(|| ASSETS.map(|a| fingerprint(a.body.as_bytes())))
}

/// The URL of an asset, with its content hash.
pub fn url(name: &str) -> String {
    let hash = ASSETS
        .iter()
        .position(|a| a.name == name)
        .map(|i| hashes()[i].as_str())
        .unwrap_or("");
    format!("/ui/assets/{name}?v={hash}")
}

#[derive(Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn serve(Path(file): Path<String>, Query(version): Query<Version>) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let asset = &ASSETS[i];
    let cache = if version.v.as_deref() == Some(hashes()[i].as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}
