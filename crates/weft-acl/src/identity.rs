//! Service and node identities, and Consul's templated policies: rules written once and filled in with a name.
//!
//! A service identity for `web` is `builtin/service` with `web`: write on `web` and on its sidecar `web-sidecar-proxy`,
//! read on every service and node (for discovery). A node identity is `builtin/node`: write on the node, read on
//! every service. The texts are Consul's templates, parsed by the same rule reader as any policy.

use crate::rules::Rules;

/// One templated policy: its name, what it is for, whether it takes a name, and its rules with `{{.Name}}`.
#[derive(Debug)]
pub struct TemplatedPolicy {
    pub name: &'static str,
    pub description: &'static str,
    pub needs_name: bool,
    pub template: &'static str,
}

pub const TEMPLATED_POLICIES: &[TemplatedPolicy] = &[
    TemplatedPolicy {
        name: "builtin/service",
        description: "Gives the token or role permissions to register a service and discover services in the Consul catalog. It also gives the specified service's sidecar proxy the permission to discover and route traffic to other services.",
        needs_name: true,
        template: r#"
service "{{.Name}}" {
	policy = "write"
}
service "{{.Name}}-sidecar-proxy" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}
node_prefix "" {
	policy = "read"
}"#,
    },
    TemplatedPolicy {
        name: "builtin/node",
        description: "Gives the token or role permissions for a register an agent/node into the catalog. A node is typically a consul agent but can also be a physical server, cloud instance or a container.",
        needs_name: true,
        template: r#"
node "{{.Name}}" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}"#,
    },
    TemplatedPolicy {
        name: "builtin/dns",
        description: "Gives the token or role permissions for the Consul DNS to query services in the network.",
        needs_name: false,
        template: r#"
node_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
}
query_prefix "" {
	policy = "read"
}"#,
    },
];

/// Why a templated policy could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplatedPolicyError {
    #[error("templated policy {0:?} does not exist")]
    Unknown(String),
    #[error("templated policy {0:?} requires a name")]
    NameRequired(&'static str),
    #[error("invalid name {0:?}: names are lowercase letters, digits, '-' and '_', starting and ending with a letter or digit, at most 256 characters")]
    InvalidName(String),
}

/// Consul's rule for identity names: `^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$`, at most 256 characters. It also keeps a
/// name from breaking out of the template's quotes.
pub fn valid_identity_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 256
        && name.starts_with(ok)
        && name.ends_with(ok)
        && name.chars().all(|c| ok(c) || c == '-' || c == '_')
}

/// The rule text of templated policy `template` for `name`.
pub fn render(template: &str, name: Option<&str>) -> Result<String, TemplatedPolicyError> {
    let policy = TEMPLATED_POLICIES
        .iter()
        .find(|p| p.name == template)
        .ok_or_else(|| TemplatedPolicyError::Unknown(template.to_string()))?;
    if !policy.needs_name {
        return Ok(policy.template.to_string());
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or(TemplatedPolicyError::NameRequired(policy.name))?;
    if !valid_identity_name(name) {
        return Err(TemplatedPolicyError::InvalidName(name.to_string()));
    }
    Ok(policy.template.replace("{{.Name}}", name))
}

/// The rules templated policy `template` grants for `name`.
pub fn templated_policy(template: &str, name: Option<&str>) -> Result<Rules, TemplatedPolicyError> {
    let text = render(template, name)?;
    // The templates are ours and the name was checked, so they always parse; an error would be a bug here, and
    // granting nothing is the safe answer to it.
    Ok(Rules::parse(&text).unwrap_or_default())
}

/// A service identity's rules (`builtin/service`).
pub fn service_identity(name: &str) -> Result<Rules, TemplatedPolicyError> {
    templated_policy("builtin/service", Some(name))
}

/// A node identity's rules (`builtin/node`).
pub fn node_identity(name: &str) -> Result<Rules, TemplatedPolicyError> {
    templated_policy("builtin/node", Some(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Authorizer, DefaultPolicy, Named, Need};

    #[test]
    fn service_identity_writes_itself_and_its_sidecar_and_reads_the_rest() {
        let a = Authorizer::new(service_identity("web").unwrap(), DefaultPolicy::Deny);
        assert!(a.named(Named::Service, "web", Need::Write));
        assert!(a.named(Named::Service, "web-sidecar-proxy", Need::Write));
        assert!(!a.named(Named::Service, "db", Need::Write));
        assert!(a.named(Named::Service, "db", Need::Read));
        assert!(a.named(Named::Node, "any", Need::Read));
        assert!(!a.named(Named::Node, "any", Need::Write));
        assert!(!a.named(Named::Key, "k", Need::Read));
        assert!(a.named(Named::Intention, "web", Need::Read));
        assert!(!a.named(Named::Intention, "web", Need::Write));
    }

    #[test]
    fn node_identity_writes_its_node() {
        let a = Authorizer::new(node_identity("n1").unwrap(), DefaultPolicy::Deny);
        assert!(a.named(Named::Node, "n1", Need::Write));
        assert!(!a.named(Named::Node, "n2", Need::Read));
        assert!(a.named(Named::Service, "x", Need::Read));
    }

    #[test]
    fn names_that_would_break_the_template_are_refused() {
        for bad in [
            "",
            "Web",
            "web\" { policy = \"write\" } key_prefix \"",
            "-web",
            "web-",
        ] {
            assert!(service_identity(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            templated_policy("builtin/nope", None),
            Err(TemplatedPolicyError::Unknown("builtin/nope".into()))
        );
        assert!(templated_policy("builtin/dns", None).is_ok());
    }
}
