//! ACL tokens, policies and roles as Consul's `/v1/acl/...` endpoints write them, and as the store keeps them.

use crate::timefmt;
use serde::{Deserialize, Serialize};

/// The built-in policy that grants everything (Consul's fixed ID and name).
pub const GLOBAL_MANAGEMENT_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// Consul's rules for `global-management`: write on everything.
pub const GLOBAL_MANAGEMENT_RULES: &str = r#"
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
identity_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"#;

/// The token used when a request carries none and the agent has no default token.
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";

/// A reference to a policy or role, by ID or by name (requests may give either; stored tokens carry both).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AclLink {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIdentity {
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeIdentity {
    pub node_name: String,
    #[serde(default)]
    pub datacenter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplateVariables {
    #[serde(default)]
    pub name: String,
}

/// A templated policy attached to a token or role (`builtin/service` with `{"Name": "web"}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplatedPolicyLink {
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<TemplateVariables>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// Everything a token or role grants besides its own ID: the part both share.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclGrants {
    #[serde(default)]
    pub policies: Vec<AclLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_identities: Vec<ServiceIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_identities: Vec<NodeIdentity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templated_policies: Vec<TemplatedPolicyLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(rename = "SecretID", default)]
    pub secret_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub grants: AclGrants,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<AclLink>,
    #[serde(default)]
    pub local: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_method: String,
    /// Unix milliseconds; written as RFC 3339.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timefmt::rfc3339_ms_opt"
    )]
    pub expiration_time: Option<u64>,
    /// Unix milliseconds; written as RFC 3339.
    #[serde(default, with = "timefmt::rfc3339_ms")]
    pub create_time: u64,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl AclToken {
    /// Whether the token has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expiration_time.is_some_and(|t| t <= now_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default)]
    pub datacenters: Option<Vec<String>>,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclRole {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(flatten)]
    pub grants: AclGrants,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// Consul's rule for policy and role names.
pub fn valid_acl_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An auth method (`/v1/acl/auth-method`): how `/v1/acl/login` checks a bearer credential. `Config` is the type's
/// own settings (for `jwt`: the trusted keys, bound issuer and audiences, claim mappings).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclAuthMethod {
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    /// A Go duration (`"1h0m0s"`); empty: login tokens do not expire.
    #[serde(
        rename = "MaxTokenTTL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub max_token_ttl: String,
    /// `local` (the default) or `global`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_locality: String,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A binding rule (`/v1/acl/binding-rule`): for logins through `AuthMethod` whose attributes match `Selector`,
/// the token gets what `BindType` and `BindName` say (`${value.x}` filled in from the login's attributes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclBindingRule {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub auth_method: String,
    #[serde(default)]
    pub selector: String,
    /// `service`, `node`, `role`, `policy` or `templated-policy`.
    #[serde(default)]
    pub bind_type: String,
    #[serde(default)]
    pub bind_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_vars: Option<TemplateVariables>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}
