//! Intentions: which services may open connections to which, by SPIFFE service name, with Consul's precedence and
//! evaluation (highest precedence first; the first intention whose source matches decides).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

pub const WILDCARD: &str = "*";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Intention {
    #[serde(rename = "ID")]
    pub id: String,
    pub description: String,
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    pub source_name: String,
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    pub destination_name: String,
    pub source_partition: String,
    pub destination_partition: String,
    pub source_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Value>,
    pub meta: BTreeMap<String, String>,
    pub precedence: i32,
    pub created_at: String,
    pub updated_at: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Consul's precedence for the default namespace: exact→exact 9, *→exact 8, exact→* 6, *→* 5.
pub fn precedence(source: &str, destination: &str) -> i32 {
    let max = if destination == WILDCARD { 6 } else { 9 };
    max - if source == WILDCARD { 1 } else { 0 }
}

/// Evaluation order: precedence, highest first, then names for a stable order.
pub fn compare(a: &Intention, b: &Intention) -> Ordering {
    b.precedence
        .cmp(&a.precedence)
        .then_with(|| a.source_name.cmp(&b.source_name))
        .then_with(|| a.destination_name.cmp(&b.destination_name))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IntentionError(pub String);

/// Names usable on either side: `*` or a service name.
pub fn valid_name(name: &str) -> bool {
    name == WILDCARD
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
}

impl Intention {
    /// Checks an intention as written by a client and fills the computed fields.
    pub fn normalize(&mut self) -> Result<(), IntentionError> {
        for (what, name) in [
            ("SourceName", &self.source_name),
            ("DestinationName", &self.destination_name),
        ] {
            if name.is_empty() {
                return Err(IntentionError(format!("{what} must be set")));
            }
            if !valid_name(name) {
                return Err(IntentionError(format!(
                    "{what} {name:?} is invalid: use a service name (letters, digits, '-', '_', '.') or '*'"
                )));
            }
        }
        for ns in [&self.source_ns, &self.destination_ns] {
            if !ns.is_empty() && ns != "default" {
                return Err(IntentionError(format!(
                    "namespace {ns:?} is not supported (namespaces are Enterprise)"
                )));
            }
        }
        match (self.action.as_str(), self.permissions.is_empty()) {
            ("allow" | "deny", true) => {}
            ("", false) => {
                if self.destination_name == WILDCARD {
                    return Err(IntentionError(
                        "Permissions cannot be used on intentions with a wildcard destination"
                            .into(),
                    ));
                }
            }
            ("", true) => {
                return Err(IntentionError(
                    "Action must be set to 'allow' or 'deny'".into(),
                ))
            }
            ("allow" | "deny", false) => {
                return Err(IntentionError(
                    "Action must not be set when Permissions are set".into(),
                ))
            }
            (other, _) => {
                return Err(IntentionError(format!(
                    "Action must be set to 'allow' or 'deny', got {other:?}"
                )))
            }
        }
        if !self.source_type.is_empty() && self.source_type != "consul" {
            return Err(IntentionError(format!(
                "SourceType must be 'consul', got {:?}",
                self.source_type
            )));
        }
        self.source_type = "consul".into();
        self.source_ns = "default".into();
        self.destination_ns = "default".into();
        self.source_partition = "default".into();
        self.destination_partition = "default".into();
        self.precedence = precedence(&self.source_name, &self.destination_name);
        Ok(())
    }

    fn matches_name(pattern: &str, name: &str) -> bool {
        pattern == WILDCARD || pattern == name
    }

    /// `source => destination (action)`, as Consul writes it in reasons.
    pub fn describe(&self) -> String {
        let action = if self.permissions.is_empty() {
            self.action.as_str()
        } else {
            "L7"
        };
        format!(
            "{} => {} ({action})",
            self.source_name, self.destination_name
        )
    }
}

/// The outcome of authorizing `source` to connect to `destination`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    pub matched: Option<Intention>,
}

/// The header that tells proxies the decision for connections no intention covers (Weft's own: Consul's
/// `X-Consul-Default-ACL-Policy` tells the ACL default, which Weft keeps apart from it).
pub const DEFAULT_INTENTION_POLICY_HEADER: &str = "x-weft-default-intention-policy";

/// `allow` or `deny`: the ACL default (`X-Consul-Default-ACL-Policy`) and the intention default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    Allow,
    Deny,
}

impl DefaultPolicy {
    /// The header's value; anything but exactly `allow` or `deny` is not a policy (callers deny).
    pub fn parse(text: &str) -> Option<DefaultPolicy> {
        match text {
            "allow" => Some(DefaultPolicy::Allow),
            "deny" => Some(DefaultPolicy::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Allow => "allow",
            DefaultPolicy::Deny => "deny",
        }
    }

    pub fn allows(self) -> bool {
        self == DefaultPolicy::Allow
    }
}

/// Evaluates intentions for a connection: the highest-precedence intention whose source and destination match
/// decides; L7 intentions (with `Permissions`) deny, since the L4 proxy cannot enforce them; an action other than
/// `allow` denies; nothing matching falls back to `default`.
pub fn authorize<'a>(
    intentions: impl IntoIterator<Item = &'a Intention>,
    source: &str,
    destination: &str,
    default: DefaultPolicy,
) -> Decision {
    let mut candidates: Vec<&Intention> = intentions
        .into_iter()
        .filter(|i| Intention::matches_name(&i.destination_name, destination))
        .filter(|i| Intention::matches_name(&i.source_name, source))
        .collect();
    candidates.sort_by(|a, b| compare(a, b));
    match candidates.first() {
        Some(i) if !i.permissions.is_empty() => Decision {
            allowed: false,
            reason: format!("Matched L7 intention: {}", i.describe()),
            matched: Some((*i).clone()),
        },
        Some(i) => Decision {
            allowed: i.action == "allow",
            reason: format!("Matched L4 intention: {}", i.describe()),
            matched: Some((*i).clone()),
        },
        None => Decision {
            allowed: default.allows(),
            reason: "Default behavior configured by ACLs".into(),
            matched: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn i(src: &str, dst: &str, action: &str) -> Intention {
        let mut x = Intention {
            source_name: src.into(),
            destination_name: dst.into(),
            action: action.into(),
            ..Intention::default()
        };
        x.normalize().unwrap();
        x
    }

    #[test]
    fn precedence_table() {
        assert_eq!(precedence("a", "b"), 9);
        assert_eq!(precedence("*", "b"), 8);
        assert_eq!(precedence("a", "*"), 6);
        assert_eq!(precedence("*", "*"), 5);
    }

    #[test]
    fn most_specific_wins() {
        let all = vec![
            i("*", "*", "deny"),
            i("web", "db", "allow"),
            i("*", "db", "deny"),
        ];
        assert!(authorize(&all, "web", "db", DefaultPolicy::Deny).allowed);
        let d = authorize(&all, "api", "db", DefaultPolicy::Allow);
        assert!(!d.allowed);
        assert_eq!(d.reason, "Matched L4 intention: * => db (deny)");
        assert!(!authorize(&all, "api", "cache", DefaultPolicy::Allow).allowed);
        let none: Vec<Intention> = Vec::new();
        assert!(authorize(&none, "a", "b", DefaultPolicy::Allow).allowed);
        assert!(!authorize(&none, "a", "b", DefaultPolicy::Deny).allowed);
    }

    #[test]
    fn l7_counts_as_deny_and_validation() {
        let mut l7 = Intention {
            source_name: "web".into(),
            destination_name: "db".into(),
            permissions: vec![serde_json::json!({"Action":"allow"})],
            ..Intention::default()
        };
        l7.normalize().unwrap();
        assert!(!authorize(&[l7], "web", "db", DefaultPolicy::Allow).allowed);
        for (src, dst, action) in [
            ("", "db", "allow"),
            ("we b", "db", "allow"),
            ("a", "b", "maybe"),
            ("a", "b", ""),
        ] {
            let mut x = Intention {
                source_name: src.into(),
                destination_name: dst.into(),
                action: action.into(),
                ..Intention::default()
            };
            assert!(x.normalize().is_err(), "{src} {dst} {action}");
        }
    }
}
