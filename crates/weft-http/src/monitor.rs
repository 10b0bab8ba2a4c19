//! `GET /v1/agent/monitor?loglevel=&logjson`: the agent's log as it is written, streamed until the client hangs
//! up, at the level asked for even when the agent logs less (as Consul's monitor does). The composition root's
//! logging layer publishes into a [`LogStream`]; lines are only formatted while someone listens, and only down to
//! the most verbose level a listener asked for.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::body::{Body, Bytes};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;

/// Lines a slow listener may fall behind by before it skips (and is told how many it missed).
const BACKLOG: usize = 1024;
/// Most listeners at once; more are refused with 429.
const MAX_LISTENERS: usize = 32;

/// Log levels, most severe first (`0` means none).
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// One log event.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// 1 (error) to 5 (trace).
    pub level: u8,
    pub time: SystemTime,
    /// The module that logged it (`weft_agent::sync`).
    pub target: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Where the agent's log lines go for monitors.
pub struct LogStream {
    tx: broadcast::Sender<Arc<LogLine>>,
    /// The most verbose level any listener wants (0: nobody listens).
    wanted: AtomicU8,
    listeners: Mutex<BTreeMap<u64, u8>>,
    next: AtomicU64,
}

impl Default for LogStream {
    fn default() -> LogStream {
        LogStream {
            tx: broadcast::channel(BACKLOG).0,
            wanted: AtomicU8::new(0),
            listeners: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

/// A level's number: `error` 1 … `trace` 5 (Consul's names; `warning` and `err` too).
pub fn level_number(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "warning" => "warn",
        "err" => "error",
        other => other,
    };
    LEVELS.iter().position(|l| *l == name).map(|i| i as u8 + 1)
}

impl LogStream {
    /// Whether a line at `level` would reach any listener (checked before formatting it).
    pub fn wants(&self, level: u8) -> bool {
        level <= self.wanted.load(Ordering::Relaxed)
    }

    pub fn publish(&self, line: LogLine) {
        let _ = self.tx.send(Arc::new(line));
    }

    fn listen(self: &Arc<Self>, level: u8) -> Option<Listener> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if listeners.len() >= MAX_LISTENERS {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        listeners.insert(id, level);
        let rx = self.tx.subscribe();
        self.recompute(&listeners);
        Some(Listener {
            stream: self.clone(),
            id,
            level,
            rx,
        })
    }

    /// The most verbose level any listener wants (0: nobody listens).
    pub fn wanted(&self) -> u8 {
        self.wanted.load(Ordering::Relaxed)
    }

    fn recompute(&self, listeners: &BTreeMap<u64, u8>) {
        let most = listeners.values().copied().max().unwrap_or(0);
        if self.wanted.swap(most, Ordering::Relaxed) != most {
            // The logging layer's level hint changed: let every log site ask again, so that with nobody listening
            // the sites below the agent's own level go back to costing nothing.
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// One monitor's subscription; leaving (the client hung up) lowers the level others need.
struct Listener {
    stream: Arc<LogStream>,
    id: u64,
    level: u8,
    rx: broadcast::Receiver<Arc<LogLine>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut listeners = self
            .stream
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        listeners.remove(&self.id);
        self.stream.recompute(&listeners);
    }
}

/// A line as Consul's monitor prints it (hclog): `2026-12-07T01:02:03.456Z [INFO]  agent.sync: synced: node=n1`.
fn text(line: &LogLine) -> String {
    let level = LEVELS
        .get(usize::from(line.level.saturating_sub(1)))
        .copied()
        .unwrap_or("info")
        .to_ascii_uppercase();
    let mut out = format!(
        "{} [{level}] {:pad$}{}: {}",
        weft_types::timefmt::rfc3339_millis(line.time),
        "",
        module(&line.target),
        line.message,
        pad = 5usize.saturating_sub(level.len()),
    );
    // hclog's layout: the message, then `: key=value ...`.
    if !line.fields.is_empty() {
        out.push(':');
    }
    for (k, v) in &line.fields {
        out.push_str(&format!(" {k}={v}"));
    }
    out.push('\n');
    out
}

/// `weft_agent::sync` → `agent.sync`, as Consul names its loggers.
fn module(target: &str) -> String {
    target.trim_start_matches("weft_").replace("::", ".")
}

fn json(line: &LogLine) -> String {
    let mut map = serde_json::Map::new();
    let level = LEVELS
        .get(usize::from(line.level.saturating_sub(1)))
        .copied()
        .unwrap_or("info");
    map.insert("@level".into(), level.into());
    map.insert("@message".into(), line.message.clone().into());
    map.insert("@module".into(), module(&line.target).into());
    map.insert(
        "@timestamp".into(),
        weft_types::timefmt::rfc3339_millis(line.time).into(),
    );
    for (k, v) in &line.fields {
        map.insert(k.clone(), v.clone().into());
    }
    let mut out = serde_json::Value::Object(map).to_string();
    out.push('\n');
    out
}

pub async fn monitor(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let level = match ctx.param("loglevel") {
        None | Some("") => 3,
        Some(name) => level_number(name)
            .ok_or_else(|| ApiError::bad_request(format!("Unknown log level: {name}")))?,
    };
    let as_json = ctx.flag("logjson");
    let Some(stream) = ctx.state.logs.clone() else {
        return Err(ApiError::internal(
            "this agent does not keep a log to monitor",
        ));
    };
    let Some(listener) = stream.listen(level) else {
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!("too many monitors at once (at most {MAX_LISTENERS})"),
        ));
    };
    // Ends when the agent stops; a client hanging up drops the body, and with it the listener.
    let lines = futures_util::stream::unfold(listener, move |mut l| async move {
        loop {
            match l.rx.recv().await {
                Ok(line) if line.level <= l.level => {
                    let out = if as_json { json(&line) } else { text(&line) };
                    return Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(out)), l));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = format!("... {n} log lines skipped: this monitor fell behind\n");
                    return Some((Ok(Bytes::from(note)), l));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut r = Reply::empty();
    r.set(
        "content-type",
        if as_json {
            "application/x-ndjson"
        } else {
            "text/plain; charset=utf-8"
        },
    );
    r.stream = Some(Body::from_stream(lines));
    Ok(r)
}
