//! Consul's ACL decisions, with no I/O: what a policy's rules say ([`Rules`], read from HCL or JSON), how a token's
//! policies, roles and identities merge into one [`Authorizer`], and which access that authorizer grants on a
//! resource.
//!
//! Resolution is Consul's: for a named resource, an exact rule beats every prefix rule, and the longest matching
//! prefix beats shorter ones; where no rule matches, the default policy decides. Rules for the same name from
//! several policies merge as deny > write > list > read. Write implies list and read; list implies read.
//!
//! Where Weft differs, on purpose: a rule key that is not Consul's (`sevice "web"`) is an error naming its line
//! rather than silently ignored, since an ignored typo is a permission nobody meant to grant or to withhold.

mod authorizer;
mod identity;
mod level;
mod rules;

pub use authorizer::{Authorizer, DefaultPolicy};
pub use identity::{
    node_identity, render as render_template, service_identity, templated_policy,
    valid_identity_name, TemplatedPolicy, TemplatedPolicyError, TEMPLATED_POLICIES,
};
pub use level::{Level, Need};
pub use rules::{Named, RuleError, Rules, Whole};
