//! One request as handlers see it: the path remainder after the route's prefix, the query string as a multimap,
//! the body, and the helpers every Consul endpoint shares (consistency, datacenter, filter, blocking options).

use crate::reply::{ApiError, Reply};
use crate::ApiState;
use axum::http::{HeaderMap, Method};
use rand::RngExt;
use serde_json::Value;
use std::time::Duration;
use weft_filter::Filter;
use weft_types::duration::parse_duration;

pub struct Ctx {
    pub state: ApiState,
    pub method: Method,
    /// The whole decoded path (`/v1/kv/a/b`).
    pub path: String,
    /// The path after the route's prefix, URL-decoded (`/v1/kv/a/b` → `a/b`).
    pub rest: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Who is calling, and what the caller may do.
    pub caller: std::sync::Arc<crate::caller::Caller>,
    /// On the server RPC listener: the role the caller's certificate names (`None` elsewhere).
    pub rpc_role: Option<weft_rpc::PeerRole>,
}

/// How a read was served (`X-Consul-Effective-Consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Leader,
    Stale,
    Consistent,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// `?index` and `?wait` of a blocking query.
#[derive(Debug, Clone, Copy)]
pub struct Blocking {
    pub min_index: u64,
    pub wait: Duration,
}

const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

impl Ctx {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter (`?tag=a&tag=b`).
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Presence-style flags: `?recurse`, `?recurse=`, `?recurse=1` all mean yes; `=false`/`=0` mean no.
    pub fn flag(&self, name: &str) -> bool {
        match self.param(name) {
            None => false,
            Some(v) => !matches!(v, "false" | "0"),
        }
    }

    pub fn pretty(&self) -> bool {
        self.flag("pretty")
    }

    pub fn json(&self, value: &Value) -> Reply {
        Reply::json(value, self.pretty())
    }

    pub fn datacenter(&self) -> &str {
        &self.state.agent.config().datacenter
    }

    /// Checks `?dc`, `?ns` and `?partition` against what this agent serves.
    pub fn check_scope(&self) -> Result<(), ApiError> {
        if let Some(dc) = self.param("dc") {
            if !dc.is_empty() && dc != self.datacenter() {
                return Err(ApiError::internal("No path to datacenter"));
            }
        }
        for (param, header, what) in [
            ("ns", "x-consul-namespace", "Namespaces"),
            ("partition", "x-consul-partition", "Partitions"),
        ] {
            let value = self.param(param).map(str::to_string).or_else(|| {
                self.headers
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            if let Some(v) = value {
                if !v.is_empty() && v != "default" {
                    return Err(ApiError::bad_request(format!(
                        "Invalid query parameter: {param:?} - {what} are a Consul Enterprise feature"
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        let stale = self.param("stale").is_some();
        let consistent = self.param("consistent").is_some();
        if stale && consistent {
            return Err(ApiError::bad_request(
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        if self.param("cached").is_some() && consistent {
            return Err(ApiError::bad_request(
                "Cannot specify ?cached with ?consistent, conflicting semantics.",
            ));
        }
        if let Some(ms) = self.param("max_stale") {
            if parse_duration(ms).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Invalid max_stale value {ms:?}"
                )));
            }
        }
        Ok(if stale {
            Consistency::Stale
        } else if consistent {
            Consistency::Consistent
        } else {
            Consistency::Leader
        })
    }

    /// `?wait`: 5 minutes by default, at most 10.
    pub fn blocking_wait(&self) -> Result<Duration, ApiError> {
        match self.param("wait") {
            None | Some("") => Ok(DEFAULT_WAIT),
            Some(w) => Ok(parse_duration(w)
                .map_err(|_| ApiError::bad_request("Invalid wait time"))?
                .min(MAX_WAIT)),
        }
    }

    pub fn blocking(&self) -> Result<Option<Blocking>, ApiError> {
        let wait = self.blocking_wait()?;
        let index = match self.param("index") {
            None | Some("") => 0,
            Some(i) => i
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Invalid index"))?,
        };
        if index == 0 {
            return Ok(None);
        }
        let jitter_ms = (wait.as_millis() as u64) / 16;
        let jitter = if jitter_ms > 0 {
            rand::rng().random_range(0..jitter_ms)
        } else {
            0
        };
        Ok(Some(Blocking {
            min_index: index,
            wait: wait + Duration::from_millis(jitter),
        }))
    }

    /// `?filter`, parsed once; a malformed expression is a 400 with the parser's reason.
    pub fn filter(&self) -> Result<Option<Filter>, ApiError> {
        match self.param("filter") {
            None | Some("") => Ok(None),
            Some(src) => Filter::parse(src).map(Some).map_err(|e| {
                ApiError::bad_request(format!(
                    "Failed to create boolean expression evaluator: {e}"
                ))
            }),
        }
    }

    /// `?node-meta=key:value` pairs (repeatable; all must match).
    pub fn node_meta(&self) -> Vec<(String, String)> {
        self.params("node-meta")
            .into_iter()
            .map(|kv| match kv.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }

    /// Adds the query-meta headers every read carries. The index is never 0.
    pub fn read_meta(&self, mut reply: Reply, index: u64, consistency: Consistency) -> Reply {
        use crate::reply::names;
        reply.set(names::X_CONSUL_INDEX, index.max(1).to_string());
        let server = self.state.agent.server();
        let known = server.leader().is_some();
        reply.set(
            names::X_CONSUL_KNOWNLEADER,
            if known { "true" } else { "false" },
        );
        let contact = if server.is_leader() {
            0
        } else {
            server.last_contact_ms().unwrap_or(0)
        };
        reply.set(names::X_CONSUL_LASTCONTACT, contact.to_string());
        reply.set(names::X_CONSUL_EFFECTIVE_CONSISTENCY, consistency.as_str());
        reply.set(names::X_CONSUL_QUERY_BACKEND, "blocking-query");
        reply
    }

    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        weft_types::lenient::decode(&self.body).map_err(crate::reply::decode_error)
    }

    pub fn decode_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
    ) -> Result<T, ApiError> {
        weft_types::lenient::decode_or_default(&self.body).map_err(crate::reply::decode_error)
    }

    /// What identifies a read for sharing one evaluation among identical blocking queries: the path and the query
    /// without the parameters that only say how long to wait.
    pub fn share_key(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self
            .query
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "index" | "wait" | "hash"))
            .collect();
        pairs.sort();
        let mut key = self.path.clone();
        // Lists are filtered per token: callers share an evaluation only when they are the same token.
        if !self.caller.identity.authorizer.is_allow_all() {
            key.push('\u{1e}');
            key.push_str(self.caller.share_key());
        }
        for (k, v) in pairs {
            key.push('\u{1f}');
            key.push_str(k);
            key.push('=');
            key.push_str(v);
            // `_agent` names a different node for each agent a request comes through.
            if v == "_agent" {
                key.push('@');
                key.push_str(&self.origin_node());
            }
        }
        key
    }

    /// The node of the agent the request reached first: this one, or for a request a cluster member forwarded, its
    /// (what `_agent` means in `?near=` and prepared queries).
    pub fn origin_node(&self) -> String {
        self.rpc_role
            .and_then(|_| self.headers.get(crate::forward::ORIGIN_NODE))
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || self.state.agent.config().node_name.clone(),
                str::to_string,
            )
    }

    /// `?near=<node>` (`_agent`: the receiving agent's node): lists sort by estimated round trip from it.
    pub fn near(&self) -> Option<String> {
        match self.param("near") {
            None | Some("") => None,
            Some("_agent") => Some(self.origin_node()),
            Some(node) => Some(node.to_string()),
        }
    }

    /// The path remainder, required to be non-empty.
    pub fn required_rest(&self, what: &str) -> Result<String, ApiError> {
        if self.rest.is_empty() {
            Err(ApiError::bad_request(format!("Missing {what}")))
        } else {
            Ok(self.rest.clone())
        }
    }
}

/// Keeps the items a filter accepts. Items are JSON values, so one evaluator serves every endpoint.
pub fn filter_list(items: Vec<Value>, filter: &Option<Filter>) -> Vec<Value> {
    match filter {
        None => items,
        Some(f) => items.into_iter().filter(|v| f.matches(v)).collect(),
    }
}

/// Keeps the map entries whose value a filter accepts (`/agent/services`, `/agent/checks`).
pub fn filter_map(
    map: serde_json::Map<String, Value>,
    filter: &Option<Filter>,
) -> serde_json::Map<String, Value> {
    match filter {
        None => map,
        Some(f) => map.into_iter().filter(|(_, v)| f.matches(v)).collect(),
    }
}
