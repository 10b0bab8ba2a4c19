//! ACL auth methods: how `/v1/acl/login` turns a bearer credential into a token.
//!
//! Weft has Consul's `jwt` method type: a JWT is verified against trusted public keys (PEM or a JWKS file), its
//! expiry, not-before, issuer and audience are checked, and its claims are mapped to attributes
//! (`ClaimMappings` to `value.<name>`, `ListClaimMappings` to `list.<name>`). Binding rules then select on those
//! attributes and say what the login token grants (a service or node identity, a role, a policy or a templated
//! policy), with `${value.<name>}` filled into the names.
//!
//! Everything fails closed: an unknown config field, an algorithm outside the method's list, a missing `exp`, a key
//! that cannot verify, a claim that is not a string: each refuses the login (or the method's config) with the
//! reason.

mod binding;
mod claims;
mod jwt;
mod keys;

pub use binding::{bind, check_rule, BindType, Bound};
pub use claims::Identity;
pub use jwt::JwtMethod;
pub use keys::{Alg, PublicKey, TrustedKey};

/// The only auth method type Weft has (Consul's `jwt`).
pub const JWT: &str = "jwt";

/// The largest bearer token a login accepts.
pub const MAX_BEARER_TOKEN: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The auth method's config (or a binding rule) cannot work: the operator's mistake, refused when written.
    #[error("{0}")]
    Config(String),
    /// The credential is refused: bad signature, expired, wrong audience, ...
    #[error("{0}")]
    Rejected(String),
}

pub(crate) fn config(msg: impl Into<String>) -> LoginError {
    LoginError::Config(msg.into())
}

pub(crate) fn rejected(msg: impl Into<String>) -> LoginError {
    LoginError::Rejected(msg.into())
}
