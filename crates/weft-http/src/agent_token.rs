//! The tokens an agent holds itself (`acl.tokens` in its config, `PUT /v1/agent/token/:type` at run time), and
//! their persistence under `acl.enable_token_persistence`.
//!
//! What each does in Weft: `default` answers requests that carry no token (and is passed on with requests the
//! agent forwards); `agent_recovery` grants `agent:write` on this agent and `node:read`, decided by the agent alone,
//! so an operator can still reach an agent whose servers are gone. `agent`, `replication`,
//! `config_file_service_registration` and `dns` are accepted and kept, as Consul's scripts set them, but change
//! nothing: agents authenticate to servers by their TLS identity or the gossip key's HMAC, not by a token.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where persisted tokens live under the data dir (Consul's name).
pub const PERSISTED_FILE: &str = "acl-tokens.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentTokens {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_recovery: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file_service_registration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

impl AgentTokens {
    /// The token the agent's own writes carry: `agent`, else `default` (Consul's order).
    pub fn for_agent(&self) -> Option<String> {
        self.agent.clone().or_else(|| self.default.clone())
    }

    /// The slot for a `/v1/agent/token/:type` name (Consul's, with its older spellings).
    fn slot(&mut self, kind: &str) -> Option<&mut Option<String>> {
        Some(match kind {
            "default" | "acl_token" => &mut self.default,
            "agent" | "acl_agent_token" => &mut self.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                &mut self.agent_recovery
            }
            "replication" | "acl_replication_token" => &mut self.replication,
            "config_file_service_registration" => &mut self.config_file_service_registration,
            "dns" => &mut self.dns,
            _ => return None,
        })
    }

    /// Tokens set later win over earlier ones (persisted over configured, as in Consul).
    pub fn overlay(&mut self, later: &AgentTokens) {
        let pairs = [
            (&mut self.default, &later.default),
            (&mut self.agent, &later.agent),
            (&mut self.agent_recovery, &later.agent_recovery),
            (&mut self.replication, &later.replication),
            (
                &mut self.config_file_service_registration,
                &later.config_file_service_registration,
            ),
            (&mut self.dns, &later.dns),
        ];
        for (mine, theirs) in pairs {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }

    /// Tokens persisted in `dir` (none when there is no file; an unreadable one is an error, not "no tokens").
    pub fn load(dir: &Path) -> Result<AgentTokens, String> {
        let path = dir.join(PERSISTED_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentTokens::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenBody {
    #[serde(default)]
    token: String,
}

/// `PUT /v1/agent/token/:type` with `{"Token": "..."}` (an empty token clears it).
pub async fn set(ctx: Ctx) -> Result<Reply, ApiError> {
    if !ctx.state.agent.server().acl_enabled() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ));
    }
    let body: TokenBody = ctx.decode()?;
    let token = Some(body.token).filter(|t| !t.is_empty());
    let acl = &ctx.state.acl;
    let mut persisted = match &acl.persist_dir {
        Some(dir) => AgentTokens::load(dir).map_err(ApiError::internal)?,
        None => AgentTokens::default(),
    };
    {
        let mut tokens = acl.tokens.write().unwrap_or_else(|p| p.into_inner());
        let slot = tokens
            .slot(&ctx.rest)
            .ok_or_else(|| ApiError::not_found(format!("Token {:?} is unknown", ctx.rest)))?;
        slot.clone_from(&token);
        ctx.state.agent.server().set_agent_token(tokens.for_agent());
    }
    if let Some(dir) = &acl.persist_dir {
        if let Some(slot) = persisted.slot(&ctx.rest) {
            *slot = token;
        }
        let bytes =
            serde_json::to_vec(&persisted).map_err(|e| ApiError::internal(e.to_string()))?;
        weft_types::fsio::atomic_write(&dir.join(PERSISTED_FILE), &bytes, 0o600)
            .map_err(|e| ApiError::internal(format!("cannot persist the token: {e}")))?;
    }
    Ok(Reply::empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn persisted_tokens_override_configured_ones_slot_by_slot() {
        let mut configured = AgentTokens {
            default: Some("config-default".into()),
            agent: Some("config-agent".into()),
            ..AgentTokens::default()
        };
        let persisted = AgentTokens {
            default: Some("api-default".into()),
            ..AgentTokens::default()
        };
        configured.overlay(&persisted);
        assert_eq!(configured.default.as_deref(), Some("api-default"));
        assert_eq!(configured.agent.as_deref(), Some("config-agent"));
        assert!(AgentTokens::default().slot("agent_master").is_some());
        assert!(AgentTokens::default().slot("nope").is_none());
    }
}
