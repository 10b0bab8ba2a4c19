//! ACL tables: tokens (by accessor ID, with a secret index), policies and roles (by ID), and the bootstrap mark.
//!
//! The store keeps the invariants that every server must agree on: one token per secret, one policy or role per
//! name, the built-in policy and the anonymous token never removed or rewritten, bootstrap only once (or again with
//! the reset index). Everything a request must also satisfy (policies that exist, valid names and rules) is checked
//! by the leader before it proposes the command. These tables never reach client agents: their replicas are built
//! without them, and agents ask the servers to resolve a token.

use crate::{Command, Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use weft_types::acl::{
    AclAuthMethod, AclBindingRule, AclPolicy, AclRole, AclToken, ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME, GLOBAL_MANAGEMENT_RULES,
};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AclTables {
    pub(crate) tokens: BTreeMap<String, AclToken>,
    pub(crate) policies: BTreeMap<String, AclPolicy>,
    pub(crate) roles: BTreeMap<String, AclRole>,
    /// The index of the bootstrap (Consul's reset index), once bootstrapped.
    pub(crate) bootstrapped_at: Option<u64>,
    /// Auth methods by name (older snapshots have none).
    #[serde(default)]
    pub(crate) auth_methods: BTreeMap<String, AclAuthMethod>,
    /// Binding rules by ID.
    #[serde(default)]
    pub(crate) binding_rules: BTreeMap<String, AclBindingRule>,
}

/// Policies and roles: stored by ID, unique by name, their create index kept across updates.
trait IdAndName: Clone {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn create_index(&self) -> u64;
    fn set_indexes(&mut self, create: u64, modify: u64);
}

macro_rules! id_and_name {
    ($t:ty) => {
        impl IdAndName for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn create_index(&self) -> u64 {
                self.create_index
            }
            fn set_indexes(&mut self, create: u64, modify: u64) {
                self.create_index = create;
                self.modify_index = modify;
            }
        }
    };
}
id_and_name!(AclPolicy);
id_and_name!(AclRole);

/// Creates or replaces `item` by ID, refusing a name another one holds.
fn upsert_unique_name<T: IdAndName>(
    map: &mut BTreeMap<String, T>,
    what: &str,
    item: &T,
    index: u64,
) -> Result<(), StoreError> {
    if map
        .values()
        .any(|other| other.name() == item.name() && other.id() != item.id())
    {
        return Err(StoreError::AclNameTaken(what.into(), item.name().into()));
    }
    let mut item = item.clone();
    let created = map.get(item.id()).map_or(index, IdAndName::create_index);
    item.set_indexes(created, index);
    map.insert(item.id().to_string(), item);
    Ok(())
}

impl Store {
    pub(crate) fn apply_acl(
        &mut self,
        index: u64,
        cmd: &Command,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        match cmd {
            Command::AclInit {
                anonymous,
                management,
            } => {
                self.ensure_global_management(index);
                if !self.t.acl.tokens.contains_key(ANONYMOUS_ACCESSOR) {
                    self.token_set(index, anonymous)?;
                }
                if let Some(token) = management {
                    // The operator's initial management token: created once, and left alone when its secret exists.
                    // As in Consul it counts as the bootstrap, so nobody can bootstrap a second management token.
                    if self.token_by_secret(&token.secret_id).is_none() {
                        self.token_set(index, token)?;
                    }
                    self.t.acl.bootstrapped_at.get_or_insert(index);
                }
            }
            Command::AclBootstrap { token, reset_index } => {
                if let Some(at) = self.t.acl.bootstrapped_at {
                    if *reset_index != Some(at) {
                        return Err(StoreError::AclBootstrapDone(at));
                    }
                }
                self.ensure_global_management(index);
                self.token_set(index, token)?;
                self.t.acl.bootstrapped_at = Some(index);
            }
            Command::AclTokenSet(token) => self.token_set(index, token)?,
            Command::AclTokenDelete { accessor_id } => {
                if accessor_id == ANONYMOUS_ACCESSOR {
                    return Err(StoreError::AclBuiltin("the anonymous token".into()));
                }
                if self.t.acl.tokens.remove(accessor_id).is_none() {
                    return Err(StoreError::AclNotFound("token".into()));
                }
                self.acl_secrets.retain(|_, a| a != accessor_id);
            }
            Command::AclPolicySet(policy) => {
                if policy.id == GLOBAL_MANAGEMENT_ID {
                    let current = self.t.acl.policies.get(GLOBAL_MANAGEMENT_ID);
                    if current.is_some_and(|c| c.rules != policy.rules) {
                        return Err(StoreError::AclBuiltin(
                            "the rules of the builtin global-management policy".into(),
                        ));
                    }
                }
                upsert_unique_name(&mut self.t.acl.policies, "policy", policy, index)?;
            }
            Command::AclPolicyDelete { id } => {
                if id == GLOBAL_MANAGEMENT_ID {
                    return Err(StoreError::AclBuiltin(
                        "the builtin global-management policy".into(),
                    ));
                }
                if self.t.acl.policies.remove(id).is_none() {
                    return Err(StoreError::AclNotFound("policy".into()));
                }
            }
            Command::AclRoleSet(role) => {
                upsert_unique_name(&mut self.t.acl.roles, "role", role, index)?;
            }
            Command::AclRoleDelete { id } => {
                if self.t.acl.roles.remove(id).is_none() {
                    return Err(StoreError::AclNotFound("role".into()));
                }
            }
            Command::AclAuthMethodSet(method) => {
                let mut method = (**method).clone();
                method.create_index = self
                    .t
                    .acl
                    .auth_methods
                    .get(&method.name)
                    .map_or(index, |m| m.create_index);
                method.modify_index = index;
                self.t.acl.auth_methods.insert(method.name.clone(), method);
            }
            Command::AclAuthMethodDelete { name } => {
                if self.t.acl.auth_methods.remove(name).is_none() {
                    return Err(StoreError::AclNotFound("auth method".into()));
                }
                // As in Consul: the method's binding rules and the tokens it minted go with it.
                self.t
                    .acl
                    .binding_rules
                    .retain(|_, r| r.auth_method != *name);
                let minted: Vec<String> = self
                    .t
                    .acl
                    .tokens
                    .values()
                    .filter(|t| t.auth_method == *name)
                    .map(|t| t.accessor_id.clone())
                    .collect();
                for accessor in &minted {
                    self.t.acl.tokens.remove(accessor);
                }
                self.acl_secrets.retain(|_, a| !minted.contains(a));
            }
            Command::AclBindingRuleSet(rule) => {
                if !self.t.acl.auth_methods.contains_key(&rule.auth_method) {
                    return Err(StoreError::AclNotFound("auth method".into()));
                }
                let mut rule = (**rule).clone();
                rule.create_index = self
                    .t
                    .acl
                    .binding_rules
                    .get(&rule.id)
                    .map_or(index, |r| r.create_index);
                rule.modify_index = index;
                self.t.acl.binding_rules.insert(rule.id.clone(), rule);
            }
            Command::AclBindingRuleDelete { id } => {
                if self.t.acl.binding_rules.remove(id).is_none() {
                    return Err(StoreError::AclNotFound("binding rule".into()));
                }
            }
            Command::AclReapExpired => {
                let now = self.clock_ms;
                let expired: Vec<String> = self
                    .t
                    .acl
                    .tokens
                    .values()
                    .filter(|t| t.expired(now))
                    .map(|t| t.accessor_id.clone())
                    .collect();
                if expired.is_empty() {
                    return Ok(());
                }
                for accessor in &expired {
                    self.t.acl.tokens.remove(accessor);
                }
                self.acl_secrets.retain(|_, a| !expired.contains(a));
            }
            _ => return Ok(()),
        }
        touched.insert(Table::Acl);
        Ok(())
    }

    fn ensure_global_management(&mut self, index: u64) {
        self.t
            .acl
            .policies
            .entry(GLOBAL_MANAGEMENT_ID.to_string())
            .or_insert_with(|| AclPolicy {
                id: GLOBAL_MANAGEMENT_ID.into(),
                name: GLOBAL_MANAGEMENT_NAME.into(),
                description: "Builtin Policy that grants unlimited access".into(),
                rules: GLOBAL_MANAGEMENT_RULES.into(),
                datacenters: None,
                hash: String::new(),
                create_index: index,
                modify_index: index,
            });
    }

    fn token_set(&mut self, index: u64, token: &AclToken) -> Result<(), StoreError> {
        if token.accessor_id.is_empty() || token.secret_id.is_empty() {
            return Err(StoreError::TxnFailed(
                "a token needs an AccessorID and a SecretID".into(),
            ));
        }
        if let Some(owner) = self.acl_secrets.get(&token.secret_id) {
            if *owner != token.accessor_id {
                return Err(StoreError::AclSecretTaken);
            }
        }
        let mut token = token.clone();
        if let Some(old) = self.t.acl.tokens.get(&token.accessor_id) {
            token.create_index = old.create_index;
            let old_secret = old.secret_id.clone();
            self.acl_secrets.remove(&old_secret);
        } else {
            token.create_index = index;
        }
        token.modify_index = index;
        self.acl_secrets
            .insert(token.secret_id.clone(), token.accessor_id.clone());
        self.t.acl.tokens.insert(token.accessor_id.clone(), token);
        Ok(())
    }

    pub(crate) fn rebuild_acl_secrets(&mut self) {
        self.acl_secrets = self
            .t
            .acl
            .tokens
            .values()
            .map(|t| (t.secret_id.clone(), t.accessor_id.clone()))
            .collect();
    }

    /// The token holding `secret`.
    pub fn token_by_secret(&self, secret: &str) -> Option<&AclToken> {
        self.acl_secrets
            .get(secret)
            .and_then(|accessor| self.t.acl.tokens.get(accessor))
    }

    pub fn token(&self, accessor_id: &str) -> Option<&AclToken> {
        self.t.acl.tokens.get(accessor_id)
    }

    pub fn tokens(&self) -> impl Iterator<Item = &AclToken> {
        self.t.acl.tokens.values()
    }

    pub fn acl_policy(&self, id: &str) -> Option<&AclPolicy> {
        self.t.acl.policies.get(id)
    }

    pub fn acl_policy_by_name(&self, name: &str) -> Option<&AclPolicy> {
        self.t.acl.policies.values().find(|p| p.name == name)
    }

    pub fn acl_policies(&self) -> impl Iterator<Item = &AclPolicy> {
        self.t.acl.policies.values()
    }

    pub fn acl_role(&self, id: &str) -> Option<&AclRole> {
        self.t.acl.roles.get(id)
    }

    pub fn acl_role_by_name(&self, name: &str) -> Option<&AclRole> {
        self.t.acl.roles.values().find(|r| r.name == name)
    }

    pub fn acl_roles(&self) -> impl Iterator<Item = &AclRole> {
        self.t.acl.roles.values()
    }

    pub fn acl_auth_method(&self, name: &str) -> Option<&AclAuthMethod> {
        self.t.acl.auth_methods.get(name)
    }

    pub fn acl_auth_methods(&self) -> impl Iterator<Item = &AclAuthMethod> {
        self.t.acl.auth_methods.values()
    }

    pub fn acl_binding_rule(&self, id: &str) -> Option<&AclBindingRule> {
        self.t.acl.binding_rules.get(id)
    }

    pub fn acl_binding_rules(&self) -> impl Iterator<Item = &AclBindingRule> {
        self.t.acl.binding_rules.values()
    }

    /// The reset index once bootstrapped (`None`: bootstrap is still allowed).
    pub fn acl_bootstrapped_at(&self) -> Option<u64> {
        self.t.acl.bootstrapped_at
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_types::acl::{AclGrants, AclLink, ANONYMOUS_SECRET};

    fn token(accessor: &str, secret: &str) -> AclToken {
        AclToken {
            accessor_id: accessor.into(),
            secret_id: secret.into(),
            ..AclToken::default()
        }
    }

    fn apply(store: &mut Store, cmd: Command) -> Result<crate::ApplyResult, StoreError> {
        let index = store.last_index() + 1;
        store.apply(index, 1_000, &cmd)
    }

    fn init(store: &mut Store) {
        apply(
            store,
            Command::AclInit {
                anonymous: Box::new(token(ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET)),
                management: None,
            },
        )
        .unwrap();
    }

    #[test]
    fn bootstrap_once_then_only_with_the_reset_index() {
        let mut s = Store::new();
        init(&mut s);
        let boot = |secret: &str, reset| Command::AclBootstrap {
            token: Box::new(token(&weft_types::ids::new_uuid(), secret)),
            reset_index: reset,
        };
        apply(&mut s, boot("s1", None)).unwrap();
        let at = s.acl_bootstrapped_at().unwrap();
        assert_eq!(
            apply(&mut s, boot("s2", None)),
            Err(StoreError::AclBootstrapDone(at))
        );
        assert_eq!(
            apply(&mut s, boot("s2", Some(at + 7))),
            Err(StoreError::AclBootstrapDone(at))
        );
        apply(&mut s, boot("s2", Some(at))).unwrap();
        assert!(s.token_by_secret("s2").is_some());
        assert!(s.acl_policy(GLOBAL_MANAGEMENT_ID).is_some());
    }

    #[test]
    fn the_initial_management_token_counts_as_the_bootstrap() {
        let mut s = Store::new();
        apply(
            &mut s,
            Command::AclInit {
                anonymous: Box::new(token(ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET)),
                management: Some(Box::new(token("m", "root"))),
            },
        )
        .unwrap();
        assert!(s.token_by_secret("root").is_some());
        assert!(s.acl_bootstrapped_at().is_some());
    }

    #[test]
    fn secrets_and_names_are_unique_and_builtins_stay() {
        let mut s = Store::new();
        init(&mut s);
        apply(&mut s, Command::AclTokenSet(Box::new(token("a", "x")))).unwrap();
        assert_eq!(
            apply(&mut s, Command::AclTokenSet(Box::new(token("b", "x")))),
            Err(StoreError::AclSecretTaken)
        );
        // Rewriting a token's secret frees the old one.
        apply(&mut s, Command::AclTokenSet(Box::new(token("a", "y")))).unwrap();
        assert!(s.token_by_secret("x").is_none());
        apply(&mut s, Command::AclTokenSet(Box::new(token("b", "x")))).unwrap();
        let p = |id: &str, name: &str| AclPolicy {
            id: id.into(),
            name: name.into(),
            ..AclPolicy::default()
        };
        apply(&mut s, Command::AclPolicySet(Box::new(p("p1", "ops")))).unwrap();
        assert_eq!(
            apply(&mut s, Command::AclPolicySet(Box::new(p("p2", "ops")))),
            Err(StoreError::AclNameTaken("policy".into(), "ops".into()))
        );
        assert!(matches!(
            apply(
                &mut s,
                Command::AclPolicyDelete {
                    id: GLOBAL_MANAGEMENT_ID.into()
                }
            ),
            Err(StoreError::AclBuiltin(_))
        ));
        assert!(matches!(
            apply(
                &mut s,
                Command::AclTokenDelete {
                    accessor_id: ANONYMOUS_ACCESSOR.into()
                }
            ),
            Err(StoreError::AclBuiltin(_))
        ));
        assert_eq!(
            apply(
                &mut s,
                Command::AclTokenDelete {
                    accessor_id: "nope".into()
                }
            ),
            Err(StoreError::AclNotFound("token".into()))
        );
    }

    #[test]
    fn expired_tokens_are_reaped_and_indexes_kept() {
        let mut s = Store::new();
        init(&mut s);
        let mut t = token("e", "es");
        t.expiration_time = Some(500);
        apply(&mut s, Command::AclTokenSet(Box::new(t))).unwrap();
        let created = s.token("e").unwrap().create_index;
        apply(&mut s, Command::AclTokenSet(Box::new(token("k", "ks")))).unwrap();
        apply(&mut s, Command::AclReapExpired).unwrap();
        assert!(s.token("e").is_none() && s.token_by_secret("es").is_none());
        assert!(s.token("k").is_some());
        assert!(created > 0);
    }

    #[test]
    fn deleting_an_auth_method_takes_its_rules_and_tokens() {
        let mut s = Store::new();
        init(&mut s);
        let method = |name: &str| AclAuthMethod {
            name: name.into(),
            kind: "jwt".into(),
            ..AclAuthMethod::default()
        };
        let rule = |id: &str, m: &str| AclBindingRule {
            id: id.into(),
            auth_method: m.into(),
            bind_type: "service".into(),
            bind_name: "web".into(),
            ..AclBindingRule::default()
        };
        assert_eq!(
            apply(
                &mut s,
                Command::AclBindingRuleSet(Box::new(rule("r0", "m1")))
            ),
            Err(StoreError::AclNotFound("auth method".into()))
        );
        apply(&mut s, Command::AclAuthMethodSet(Box::new(method("m1")))).unwrap();
        apply(&mut s, Command::AclAuthMethodSet(Box::new(method("m2")))).unwrap();
        let created = s.acl_auth_method("m1").unwrap().create_index;
        apply(&mut s, Command::AclAuthMethodSet(Box::new(method("m1")))).unwrap();
        assert_eq!(s.acl_auth_method("m1").unwrap().create_index, created);
        apply(
            &mut s,
            Command::AclBindingRuleSet(Box::new(rule("r1", "m1"))),
        )
        .unwrap();
        apply(
            &mut s,
            Command::AclBindingRuleSet(Box::new(rule("r2", "m2"))),
        )
        .unwrap();
        let mut minted = token("t1", "s1");
        minted.auth_method = "m1".into();
        apply(&mut s, Command::AclTokenSet(Box::new(minted))).unwrap();
        apply(&mut s, Command::AclTokenSet(Box::new(token("t2", "s2")))).unwrap();
        apply(&mut s, Command::AclAuthMethodDelete { name: "m1".into() }).unwrap();
        assert!(s.acl_auth_method("m1").is_none() && s.acl_binding_rule("r1").is_none());
        assert!(s.acl_binding_rule("r2").is_some());
        assert!(s.token("t1").is_none() && s.token_by_secret("s1").is_none());
        assert!(s.token("t2").is_some());
        let mut restored = Store::new();
        restored.restore(&s.snapshot()).unwrap();
        assert!(
            restored.acl_auth_method("m2").is_some() && restored.acl_binding_rule("r2").is_some()
        );
    }

    #[test]
    fn snapshots_keep_acls_and_replicas_get_none() {
        let mut s = Store::new();
        init(&mut s);
        let mut t = token("a", "secret-a");
        t.grants = AclGrants {
            policies: vec![AclLink {
                id: GLOBAL_MANAGEMENT_ID.into(),
                name: GLOBAL_MANAGEMENT_NAME.into(),
            }],
            ..AclGrants::default()
        };
        apply(&mut s, Command::AclTokenSet(Box::new(t))).unwrap();
        let mut restored = Store::new();
        restored.restore(&s.snapshot()).unwrap();
        assert!(restored.token_by_secret("secret-a").is_some());
        let replica_bytes = s.snapshot_without_kv();
        assert!(!String::from_utf8_lossy(&replica_bytes).contains("secret-a"));
        let mut replica = Store::new();
        replica.restore(&replica_bytes).unwrap();
        assert!(replica.tokens().next().is_none());
    }
}
