//! Prepared queries (`/v1/query`): a stored service query, run later by ID or name over HTTP or as
//! `<name>.query.consul` in DNS. A query with a `Template` answers every name that starts with its own (longest
//! prefix wins) and fills `${...}` placeholders in its `Service` block from the name asked.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a prepared query's `Token` reads as for callers who may not see it (Consul's redaction).
pub const REDACTED_TOKEN: &str = "<hidden>";

/// The only template type Consul defines.
pub const TEMPLATE_NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// Most `NodeMeta` pairs a query may filter on (Consul's node metadata limit).
const MAX_META_PAIRS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct PreparedQuery {
    #[serde(rename = "ID")]
    pub id: String,
    /// Optional; unique among queries regardless of case.
    pub name: String,
    /// A session whose end deletes the query.
    pub session: String,
    /// Run the query with this token's permissions (shown as `<hidden>` to callers without `acl:write`).
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    pub create_index: u64,
    pub modify_index: u64,
    /// Enterprise scoping: only the default (or nothing) is accepted, and it is not returned.
    #[serde(skip_serializing)]
    pub namespace: Option<String>,
    #[serde(skip_serializing)]
    pub partition: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct QueryTemplate {
    /// Empty for a static query; otherwise `name_prefix_match`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Matched against the whole name asked; its groups are `${match(N)}`.
    pub regexp: String,
    /// Drop tags that render empty.
    pub remove_empty_tags: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct ServiceQuery {
    pub service: String,
    pub sameness_group: String,
    pub failover: QueryFailover,
    /// Only instances whose checks all pass (otherwise warning counts as healthy; critical never does).
    pub only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Vec<String>,
    /// Node the results are sorted near: a node name, `_agent` or `_ip`.
    pub near: String,
    /// Every tag must be present; `!tag` must be absent. Case-insensitive.
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    /// Connect-capable instances (sidecar proxies and native services) instead of the service's own.
    pub connect: bool,
    pub peer: String,
    #[serde(skip_serializing)]
    pub namespace: Option<String>,
    #[serde(skip_serializing)]
    pub partition: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct QueryFailover {
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    pub datacenters: Vec<String>,
    pub targets: Vec<QueryTarget>,
}

impl QueryFailover {
    /// Whether the query fails over anywhere.
    pub fn is_configured(&self) -> bool {
        self.nearest_n > 0 || !self.datacenters.is_empty() || !self.targets.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default, deny_unknown_fields)]
pub struct QueryTarget {
    pub peer: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryDns {
    /// A Go duration; empty means the agent's `dns_config.service_ttl`.
    #[serde(rename = "TTL")]
    pub ttl: String,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The name ACL rules are checked against: the name, or `""` for a template without one; `None` for an
    /// unnamed static query, which anyone holding its ID may manage (as in Consul).
    pub fn acl_name(&self) -> Option<&str> {
        (!self.name.is_empty() || self.is_template()).then_some(self.name.as_str())
    }

    /// Checks the definition as Consul's `parseQuery` does. The text follows `Invalid prepared query: `.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() && !self.is_template() && self.session.is_empty() {
            return Err("Must be bound to a session".into());
        }
        if self.token == REDACTED_TOKEN {
            return Err(format!(
                "Bad Token '{REDACTED_TOKEN}', it looks like a query definition with a redacted token was submitted"
            ));
        }
        for scope in [
            &self.namespace,
            &self.partition,
            &self.service.namespace,
            &self.service.partition,
        ] {
            if scope
                .as_deref()
                .is_some_and(|s| !s.is_empty() && s != "default")
            {
                return Err(
                    "namespaces and partitions other than 'default' are not supported".into(),
                );
            }
        }
        let s = &self.service;
        if s.service.is_empty() {
            return Err("Must provide a Service name to query".into());
        }
        if s.failover.nearest_n < 0 {
            return Err(format!(
                "Bad NearestN '{}', must be >= 0",
                s.failover.nearest_n
            ));
        }
        if !s.failover.targets.is_empty()
            && (s.failover.nearest_n != 0 || !s.failover.datacenters.is_empty())
        {
            return Err("Targets cannot be populated with NearestN or Datacenters".into());
        }
        if !s.sameness_group.is_empty() {
            return Err("sameness-groups are an enterprise-only feature".into());
        }
        validate_node_meta(&s.node_meta)?;
        if !self.dns.ttl.is_empty() {
            if self.dns.ttl.trim_start().starts_with('-') {
                return Err(format!("DNS TTL '{}', must be >=0", self.dns.ttl));
            }
            crate::duration::parse_duration(&self.dns.ttl)
                .map_err(|e| format!("Bad DNS TTL '{}': {e}", self.dns.ttl))?;
        }
        Ok(())
    }

    /// The copy client agents hold: a stored token becomes the redaction marker, so an agent knows the query has
    /// one without holding it.
    pub fn without_token(&self) -> PreparedQuery {
        self.redacted()
    }

    /// A copy for a caller who may not see stored tokens.
    pub fn redacted(&self) -> PreparedQuery {
        let mut q = self.clone();
        if !q.token.is_empty() {
            q.token = REDACTED_TOKEN.into();
        }
        q
    }
}

fn validate_node_meta(meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > MAX_META_PAIRS {
        return Err(format!(
            "Node metadata cannot contain more than {MAX_META_PAIRS} key/value pairs"
        ));
    }
    for (k, v) in meta {
        let why = if k.is_empty() {
            Some("Key cannot be blank")
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            Some("Key contains invalid characters")
        } else if k.len() > 128 {
            Some("Key is too long (limit: 128 characters)")
        } else if v.len() > 512 {
            Some("Value is too long (limit: 512 characters)")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("Couldn't load metadata pair ('{k}', '{v}'): {why}"));
        }
    }
    Ok(())
}

/// `/v1/query/:id/execute`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecuteResponse<N> {
    pub service: String,
    pub nodes: Vec<N>,
    #[serde(rename = "DNS")]
    pub dns: QueryDns,
    pub datacenter: String,
    pub peer_name: String,
    pub failovers: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn named(name: &str, service: &str) -> PreparedQuery {
        PreparedQuery {
            name: name.into(),
            service: ServiceQuery {
                service: service.into(),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn validation_follows_consuls_rules() {
        assert_eq!(named("q", "web").validate(), Ok(()));
        assert_eq!(
            named("", "web").validate().unwrap_err(),
            "Must be bound to a session"
        );
        assert_eq!(
            named("q", "").validate().unwrap_err(),
            "Must provide a Service name to query"
        );
        let mut q = named("q", "web");
        q.token = REDACTED_TOKEN.into();
        assert!(q
            .validate()
            .unwrap_err()
            .starts_with("Bad Token '<hidden>'"));
        let mut q = named("q", "web");
        q.service.failover.nearest_n = -1;
        assert_eq!(q.validate().unwrap_err(), "Bad NearestN '-1', must be >= 0");
        let mut q = named("q", "web");
        q.service.failover.targets = vec![QueryTarget::default()];
        q.service.failover.datacenters = vec!["dc2".into()];
        assert!(q.validate().unwrap_err().starts_with("Targets cannot"));
        let mut q = named("q", "web");
        q.dns.ttl = "soon".into();
        assert!(q.validate().unwrap_err().starts_with("Bad DNS TTL 'soon'"));
        let mut q = named("q", "web");
        q.service.node_meta.insert("bad key".into(), "v".into());
        assert!(q
            .validate()
            .unwrap_err()
            .contains("Key contains invalid characters"));
        let mut q = named("q", "web");
        q.service.namespace = Some("team".into());
        assert!(q.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_refused_and_tokens_redacted() {
        let bad = serde_json::from_str::<PreparedQuery>(r#"{"Name":"q","Bogus":1}"#);
        assert!(bad.unwrap_err().to_string().contains("unknown field"));
        let mut q = named("q", "web");
        q.token = "secret".into();
        assert_eq!(q.redacted().token, REDACTED_TOKEN);
        assert_eq!(named("q", "web").redacted().token, "");
        assert_eq!(q.acl_name(), Some("q"));
        assert_eq!(named("", "web").acl_name(), None);
    }
}
