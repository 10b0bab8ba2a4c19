//! A token's decisions: the merged rules of everything the token carries, over the agent's default policy.

use crate::level::{Level, Need};
use crate::rules::{Named, Rules, Whole};

/// What decides where no rule matches (`acl.default_policy`): the same type as the intention default.
pub use weft_types::DefaultPolicy;

/// Answers "may this token do `need` on that resource?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    rules: Rules,
    default: DefaultPolicy,
    /// Everything is allowed: ACLs are off.
    all: bool,
}

impl Authorizer {
    pub fn new(rules: Rules, default: DefaultPolicy) -> Authorizer {
        Authorizer {
            rules,
            default,
            all: false,
        }
    }

    /// Every check passes (ACLs disabled).
    pub fn allow_all() -> Authorizer {
        Authorizer {
            rules: Rules::default(),
            default: DefaultPolicy::Allow,
            all: true,
        }
    }

    pub fn is_allow_all(&self) -> bool {
        self.all
    }

    /// `kind:need` on `name`.
    pub fn named(&self, kind: Named, name: &str, need: Need) -> bool {
        if self.all {
            return true;
        }
        match self.rules.named_level(kind, name) {
            Some(level) => level.grants(need),
            None => self.default == DefaultPolicy::Allow,
        }
    }

    /// `kind:need` (`operator:read`, `acl:write`). Under the allow default, ACL management still needs a rule, as
    /// in Consul: an allow-by-default cluster does not hand every caller its tokens.
    pub fn whole(&self, kind: Whole, need: Need) -> bool {
        if self.all {
            return true;
        }
        match self.rules.whole_level(kind) {
            Some(level) => level.grants(need),
            None => self.default == DefaultPolicy::Allow && kind != Whole::Acl,
        }
    }

    /// Write on every key that starts with `prefix` (recursive deletes): the rule deciding the subtree grants
    /// write and no rule for a name under it takes write away.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.all {
            return true;
        }
        let subtree = self
            .rules
            .named_prefix_level(Named::Key, prefix)
            .map(|level| level.grants(Need::Write))
            .unwrap_or(self.default == DefaultPolicy::Allow);
        subtree
            && self
                .rules
                .named_below(Named::Key, prefix)
                .all(|level| level.grants(Need::Write))
    }

    /// Management: what `global-management` grants (snapshots, ACL writes).
    pub fn is_management(&self) -> bool {
        self.whole(Whole::Acl, Need::Write)
    }

    /// The level deciding `kind` on `name`, for explanations (`None`: the default decided).
    pub fn level(&self, kind: Named, name: &str) -> Option<Level> {
        self.rules.named_level(kind, name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn authz(rules: &str, default: DefaultPolicy) -> Authorizer {
        Authorizer::new(Rules::parse(rules).unwrap(), default)
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let a = authz(
            r#"
            key_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "write" }
            key_prefix "app/secret/" { policy = "deny" }
            key "app/secret/public" { policy = "read" }
            "#,
            DefaultPolicy::Deny,
        );
        assert!(a.named(Named::Key, "other", Need::Read));
        assert!(!a.named(Named::Key, "other", Need::Write));
        assert!(a.named(Named::Key, "app/x", Need::Write));
        assert!(!a.named(Named::Key, "app/secret/x", Need::Read));
        assert!(a.named(Named::Key, "app/secret/public", Need::Read));
        assert!(!a.named(Named::Key, "app/secret/public", Need::Write));
    }

    #[test]
    fn default_decides_without_a_rule_but_acl_needs_one() {
        let allow = authz("", DefaultPolicy::Allow);
        assert!(allow.named(Named::Service, "web", Need::Write));
        assert!(allow.whole(Whole::Operator, Need::Write));
        assert!(!allow.whole(Whole::Acl, Need::Read));
        let deny = authz("", DefaultPolicy::Deny);
        assert!(!deny.named(Named::Service, "web", Need::Read));
        assert!(!deny.whole(Whole::Operator, Need::Read));
    }

    #[test]
    fn service_rules_imply_intentions_read() {
        let a = authz(
            r#"service "web" { policy = "write" }
               service "db" { policy = "read" intentions = "write" }
               service "x" { policy = "deny" }"#,
            DefaultPolicy::Allow,
        );
        assert!(a.named(Named::Intention, "web", Need::Read));
        assert!(!a.named(Named::Intention, "web", Need::Write));
        assert!(a.named(Named::Intention, "db", Need::Write));
        assert!(!a.named(Named::Intention, "x", Need::Read));
    }

    #[test]
    fn recursive_key_write_needs_every_key_below() {
        let a = authz(
            r#"key_prefix "app/" { policy = "write" }
               key "app/locked" { policy = "read" }"#,
            DefaultPolicy::Deny,
        );
        assert!(a.key_write_prefix("app/config/"));
        assert!(!a.key_write_prefix("app/"));
        assert!(!a.key_write_prefix(""));
        assert!(!a.key_write_prefix("ap"));
    }

    #[test]
    fn allow_all_allows_acl_management() {
        let a = Authorizer::allow_all();
        assert!(a.is_management());
        assert!(a.key_write_prefix(""));
    }
}
