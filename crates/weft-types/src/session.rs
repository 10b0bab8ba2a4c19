//! Sessions: the lock-holder records behind KV `?acquire`, with Consul's create-body and wire shapes.

use crate::duration::opt_go;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionBehavior {
    #[default]
    Release,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheckRef {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Session {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds on the wire.
    pub lock_delay: u64,
    pub behavior: SessionBehavior,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheckRef>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// All check IDs the session is tied to.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.node_checks
            .iter()
            .map(String::as_str)
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }
}

/// `LockDelay` in a create body: a Go duration string, or a number that is seconds below 1000 and nanoseconds above.
fn lock_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) if n < 0.0 => Ok(Some(Duration::ZERO)),
        Some(Raw::Number(n)) if n < 1000.0 => Ok(Some(Duration::from_secs_f64(n))),
        Some(Raw::Number(n)) => Ok(Some(Duration::from_nanos(n as u64))),
        Some(Raw::Text(t)) => crate::duration::parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// The body of `PUT /v1/session/create`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionRequest {
    pub name: String,
    pub node: String,
    #[serde(deserialize_with = "lock_delay")]
    pub lock_delay: Option<Duration>,
    pub behavior: Option<String>,
    #[serde(rename = "TTL", with = "opt_go")]
    pub ttl: Option<Duration>,
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Option<Vec<ServiceCheckRef>>,
    /// Deprecated: node check IDs; `[]` means "no checks".
    pub checks: Option<Vec<String>>,
}
