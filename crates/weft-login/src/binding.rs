//! Binding rules: which logins they apply to (a selector over `value.*` and `list.*`) and what the login token
//! gets from them (`BindName`, with `${value.x}` filled in).

use crate::claims::Identity;
use crate::jwt::JwtMethod;
use crate::{config, rejected, LoginError};
use weft_filter::Filter;
use weft_types::acl::{valid_acl_name, AclBindingRule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindType {
    Service,
    Node,
    Role,
    Policy,
    TemplatedPolicy,
}

impl BindType {
    pub fn parse(s: &str) -> Option<BindType> {
        Some(match s {
            "service" => BindType::Service,
            "node" => BindType::Node,
            "role" => BindType::Role,
            "policy" => BindType::Policy,
            "templated-policy" => BindType::TemplatedPolicy,
            _ => return None,
        })
    }
}

/// What matching binding rules grant a login token. Role and policy names are checked against the store by the
/// caller (Consul skips names that do not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bound {
    pub services: Vec<String>,
    pub nodes: Vec<String>,
    pub roles: Vec<String>,
    pub policies: Vec<String>,
    /// Template name and its `Name` variable.
    pub templated: Vec<(String, String)>,
}

impl Bound {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.nodes.is_empty()
            && self.roles.is_empty()
            && self.policies.is_empty()
            && self.templated.is_empty()
    }
}

/// `text` with each `${var}` replaced by what `value_of(var)` answers (an error for an unclosed `${`).
fn substitute(
    text: &str,
    value_of: impl Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        out.push_str(&value_of(after[..end].trim())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` with every `${value.x}` replaced by the login's attribute `x`.
fn fill(text: &str, id: &Identity) -> Result<String, String> {
    substitute(text, |var| {
        var.strip_prefix("value.")
            .and_then(|name| id.values.get(name))
            .cloned()
            .ok_or_else(|| format!("unknown variable ${{{var}}}"))
    })
}

fn valid_bound_name(kind: BindType, name: &str) -> bool {
    match kind {
        BindType::Service | BindType::Node | BindType::TemplatedPolicy => {
            weft_acl::valid_identity_name(name)
        }
        BindType::Role | BindType::Policy => valid_acl_name(name),
    }
}

/// Checks a binding rule before it is written: a known bind type, a name, a selector that parses, and variables
/// that the method's claim mappings define (`${value.x}` only: a list has no single value to fill in).
pub fn check_rule(rule: &AclBindingRule, method: &JwtMethod) -> Result<(), LoginError> {
    let kind = BindType::parse(&rule.bind_type).ok_or_else(|| {
        config(format!(
            "Invalid Binding Rule: unknown BindType {:?} (service, node, role, policy, templated-policy)",
            rule.bind_type
        ))
    })?;
    if rule.bind_name.trim().is_empty() {
        return Err(config("Invalid Binding Rule: missing BindName"));
    }
    if !rule.selector.trim().is_empty() {
        Filter::parse(&rule.selector)
            .map_err(|e| config(format!("Invalid Binding Rule: invalid Selector: {e}")))?;
    }
    let var_name = rule
        .bind_vars
        .as_ref()
        .map(|v| v.name.as_str())
        .unwrap_or("");
    if kind == BindType::TemplatedPolicy && var_name.is_empty() {
        // Checked against the template when bound; a template that needs a name gets one here.
        if weft_acl::render_template(&rule.bind_name, None).is_err() {
            return Err(config(format!(
                "Invalid Binding Rule: templated policy {:?} needs BindVars.Name",
                rule.bind_name
            )));
        }
    }
    // Every variable must be a `value.<attribute>` the method maps; the name with each one as a plain word must
    // be valid (the filled-in name is checked again at login).
    let sample = |text: &str| {
        substitute(text, |var| {
            if var.strip_prefix("value.").is_some_and(|n| method.has_value(n)) {
                Ok("x".to_string())
            } else {
                Err(format!(
                    "BindName uses ${{{var}}}, which is not a value.<attribute> of the auth method's ClaimMappings"
                ))
            }
        })
        .map_err(|e| config(format!("Invalid Binding Rule: {e}")))
    };
    let (name_sample, var_sample) = (sample(&rule.bind_name)?, sample(var_name)?);
    let checked = if kind == BindType::TemplatedPolicy {
        if var_name.is_empty() {
            return Ok(());
        }
        var_sample
    } else {
        name_sample
    };
    if !valid_bound_name(kind, &checked) {
        return Err(config(format!(
            "Invalid Binding Rule: invalid BindName {:?}",
            rule.bind_name
        )));
    }
    Ok(())
}

/// What the `rules` whose selectors match `id` grant. A filled-in name that is not valid refuses the login.
pub fn bind(rules: &[&AclBindingRule], id: &Identity) -> Result<Bound, LoginError> {
    let doc = id.selectable();
    let mut bound = Bound::default();
    for rule in rules {
        let selected = rule.selector.trim().is_empty()
            || Filter::parse(&rule.selector).is_ok_and(|f| f.matches(&doc));
        if !selected {
            continue;
        }
        let Some(kind) = BindType::parse(&rule.bind_type) else {
            continue;
        };
        let name = fill(&rule.bind_name, id).map_err(rejected)?;
        let push = |list: &mut Vec<String>, name: String| {
            if !list.contains(&name) {
                list.push(name);
            }
        };
        if kind == BindType::TemplatedPolicy {
            let var = rule
                .bind_vars
                .as_ref()
                .map(|v| fill(&v.name, id))
                .transpose()
                .map_err(rejected)?
                .unwrap_or_default();
            if !var.is_empty() && !valid_bound_name(kind, &var) {
                return Err(rejected(format!(
                    "binding rule {} computed an invalid name {var:?}",
                    rule.id
                )));
            }
            if !bound.templated.contains(&(name.clone(), var.clone())) {
                bound.templated.push((name, var));
            }
            continue;
        }
        if !valid_bound_name(kind, &name) {
            return Err(rejected(format!(
                "binding rule {} computed an invalid name {name:?}",
                rule.id
            )));
        }
        match kind {
            BindType::Service => push(&mut bound.services, name),
            BindType::Node => push(&mut bound.nodes, name),
            BindType::Role => push(&mut bound.roles, name),
            BindType::Policy => push(&mut bound.policies, name),
            BindType::TemplatedPolicy => {}
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use weft_types::acl::TemplateVariables;

    fn method() -> JwtMethod {
        let signer = crate::jwt::tests::Signer::new();
        JwtMethod::from_config(&json!({
            "JWTValidationPubKeys": [signer.public_pem],
            "ClaimMappings": {"svc": "service", "ns": "namespace"},
            "ListClaimMappings": {"groups": "groups"},
        }))
        .unwrap()
    }

    fn rule(kind: &str, name: &str, selector: &str) -> AclBindingRule {
        AclBindingRule {
            id: format!("r-{name}"),
            auth_method: "m".into(),
            selector: selector.into(),
            bind_type: kind.into(),
            bind_name: name.into(),
            ..AclBindingRule::default()
        }
    }

    fn identity(service: &str, ns: &str, groups: &[&str]) -> Identity {
        let mut id = Identity::default();
        id.values.insert("service".into(), service.into());
        id.values.insert("namespace".into(), ns.into());
        id.lists.insert(
            "groups".into(),
            groups.iter().map(|g| g.to_string()).collect(),
        );
        id
    }

    #[test]
    fn rules_are_checked_against_the_method() {
        let m = method();
        assert!(check_rule(&rule("service", "${value.service}", ""), &m).is_ok());
        assert!(check_rule(
            &rule(
                "service",
                "web-${value.namespace}",
                "value.namespace == prod"
            ),
            &m
        )
        .is_ok());
        assert!(check_rule(&rule("role", "ops", r#""admins" in list.groups"#), &m).is_ok());
        for bad in [
            rule("bogus", "x", ""),
            rule("service", "", ""),
            rule("service", "${value.nope}", ""),
            rule("service", "${list.groups}", ""),
            rule("service", "${value.service", ""),
            rule("service", "Web", ""),
            rule("service", "web", "value.service =="),
            rule("templated-policy", "builtin/service", ""),
        ] {
            assert!(check_rule(&bad, &m).is_err(), "{bad:?}");
        }
        let mut t = rule("templated-policy", "builtin/service", "");
        t.bind_vars = Some(TemplateVariables {
            name: "${value.service}".into(),
        });
        assert!(check_rule(&t, &m).is_ok());
        assert!(check_rule(&rule("templated-policy", "builtin/dns", ""), &m).is_ok());
    }

    #[test]
    fn matching_rules_bind_with_their_names_filled_in() {
        let svc = rule("service", "${value.service}", "value.namespace == prod");
        let node = rule("node", "node-${value.service}", "");
        let role = rule("role", "ops", r#""admins" in list.groups"#);
        let mut tpl = rule("templated-policy", "builtin/service", "");
        tpl.bind_vars = Some(TemplateVariables {
            name: "${value.service}".into(),
        });
        let rules = [&svc, &node, &role, &tpl];
        let b = bind(&rules, &identity("web", "prod", &["admins"])).unwrap();
        assert_eq!(b.services, vec!["web"]);
        assert_eq!(b.nodes, vec!["node-web"]);
        assert_eq!(b.roles, vec!["ops"]);
        assert_eq!(b.templated, vec![("builtin/service".into(), "web".into())]);
        let b = bind(&rules, &identity("web", "dev", &[])).unwrap();
        assert!(b.services.is_empty() && b.roles.is_empty());
        assert_eq!(b.nodes, vec!["node-web"]);
        assert!(bind(&[&svc], &identity("web", "dev", &[]))
            .unwrap()
            .is_empty());
        // A claim that fills in a name no identity may have refuses the login.
        assert!(matches!(
            bind(&[&svc], &identity("Web Server", "prod", &[])),
            Err(LoginError::Rejected(_))
        ));
    }
}
