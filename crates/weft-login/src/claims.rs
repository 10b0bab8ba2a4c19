//! Claims to attributes: `ClaimMappings` (`{"claim": "attribute"}`) give `value.<attribute>`, `ListClaimMappings`
//! give `list.<attribute>`. A claim name starting with `/` is a JSON pointer into nested claims
//! (`/kubernetes.io/namespace`), as Consul reads it.

use crate::{rejected, LoginError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What a verified credential says about its bearer, as binding rules see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Every mapped attribute: a claim that is absent reads as `""`, so `value.x == ""` selects it.
    pub values: BTreeMap<String, String>,
    pub lists: BTreeMap<String, Vec<String>>,
}

fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(pointer) = name.strip_prefix('/') {
        let mut at: Option<&Value> = None;
        for (i, raw) in pointer.split('/').enumerate() {
            let part = raw.replace("~1", "/").replace("~0", "~");
            at = match (i, at) {
                (0, _) => claims.get(&part),
                (_, Some(Value::Object(m))) => m.get(&part),
                (_, Some(Value::Array(a))) => part.parse::<usize>().ok().and_then(|n| a.get(n)),
                _ => None,
            };
            at?;
        }
        at
    } else {
        claims.get(name)
    }
}

fn scalar(name: &str, v: &Value) -> Result<String, LoginError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(rejected(format!(
            "error converting claim '{name}' to string"
        ))),
    }
}

impl Identity {
    pub fn from_claims(
        claims: &Map<String, Value>,
        value_mappings: &BTreeMap<String, String>,
        list_mappings: &BTreeMap<String, String>,
    ) -> Result<Identity, LoginError> {
        let mut id = Identity::default();
        for (claim_name, attr) in value_mappings {
            let v = match claim(claims, claim_name) {
                None | Some(Value::Null) => String::new(),
                Some(v) => scalar(claim_name, v)?,
            };
            id.values.insert(attr.clone(), v);
        }
        for (claim_name, attr) in list_mappings {
            let list = match claim(claims, claim_name) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| scalar(claim_name, i))
                    .collect::<Result<_, _>>()?,
                Some(v) => vec![scalar(claim_name, v)?],
            };
            id.lists.insert(attr.clone(), list);
        }
        Ok(id)
    }

    /// The document binding rule selectors are evaluated against: `{"value": {...}, "list": {...}}`.
    pub fn selectable(&self) -> Value {
        serde_json::json!({ "value": self.values, "list": self.lists })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn claims_map_to_values_and_lists() {
        let claims = json!({
            "sub": "svc-1", "admin": true, "n": 3,
            "groups": ["a", "b"], "one": "solo",
            "k8s": {"ns": "prod", "a/b": "slash"},
            "obj": {"x": 1},
        });
        let claims = claims.as_object().unwrap();
        let id = Identity::from_claims(
            claims,
            &map(&[
                ("sub", "name"),
                ("admin", "admin"),
                ("n", "n"),
                ("/k8s/ns", "ns"),
                ("/k8s/a~1b", "slashed"),
                ("missing", "gone"),
            ]),
            &map(&[("groups", "groups"), ("one", "one"), ("nope", "none")]),
        )
        .unwrap();
        assert_eq!(id.values["name"], "svc-1");
        assert_eq!(id.values["admin"], "true");
        assert_eq!(id.values["n"], "3");
        assert_eq!(id.values["ns"], "prod");
        assert_eq!(id.values["slashed"], "slash");
        assert_eq!(id.values["gone"], "");
        assert_eq!(id.lists["groups"], vec!["a", "b"]);
        assert_eq!(id.lists["one"], vec!["solo"]);
        assert!(id.lists["none"].is_empty());
        assert!(Identity::from_claims(claims, &map(&[("obj", "o")]), &BTreeMap::new()).is_err());
        assert!(Identity::from_claims(claims, &BTreeMap::new(), &map(&[("obj", "o")])).is_err());
    }
}
