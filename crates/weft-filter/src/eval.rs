//! Evaluator: decides whether a parsed expression matches a JSON value.
//!
//! Selector resolution, comparison and membership rules are documented on
//! the crate root; this module is their single implementation.

use serde_json::{Map, Value};

use crate::ast::{Expr, Literal, MatchExpr, MatchOp, Number, Selector};

impl Expr {
    pub(crate) fn eval(&self, root: &Value) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.eval(root)),
            Expr::And(items) => items.iter().all(|e| e.eval(root)),
            Expr::Not(inner) => !inner.eval(root),
            Expr::Match(m) => m.eval(root),
        }
    }
}

impl MatchExpr {
    fn eval(&self, root: &Value) -> bool {
        let found = resolve(root, &self.selector);
        match &self.op {
            MatchOp::Equal(lit) => equals(&found, lit),
            MatchOp::NotEqual(lit) => !equals(&found, lit),
            MatchOp::IsEmpty => is_empty(&found),
            MatchOp::IsNotEmpty => !is_empty(&found),
            MatchOp::Contains(lit) => contains(&found, lit),
            MatchOp::NotContains(lit) => !contains(&found, lit),
            MatchOp::Matches(re) => regex_matches(&found, re),
            MatchOp::NotMatches(re) => !regex_matches(&found, re),
        }
    }
}

/// What a selector resolved to.
#[derive(Debug, PartialEq)]
enum Resolved<'a> {
    /// Some segment was absent (or hit a scalar) without crossing an array.
    Missing,
    /// A plain path to one value.
    One(&'a Value),
    /// The path crossed at least one array; the values collected from its
    /// elements (possibly none).
    Many(Vec<&'a Value>),
}

fn resolve<'a>(root: &'a Value, selector: &Selector) -> Resolved<'a> {
    let mut current = vec![root];
    let mut crossed = false;
    for key in &selector.path {
        let mut next = Vec::new();
        for value in current {
            step(value, key, &mut next, &mut crossed);
        }
        if next.is_empty() && !crossed {
            return Resolved::Missing;
        }
        current = next;
    }
    if crossed {
        Resolved::Many(current)
    } else {
        current
            .into_iter()
            .next()
            .map_or(Resolved::Missing, Resolved::One)
    }
}

/// Looks `key` up in `value`, descending through (nested) arrays and
/// collecting a result per element. Iterative, so deeply nested arrays
/// cannot overflow the stack.
fn step<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>, crossed: &mut bool) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => out.extend(lookup(map, key)),
            Value::Array(items) => {
                *crossed = true;
                stack.extend(items.iter().rev());
            }
            _ => {}
        }
    }
}

/// Exact key first, then the first key equal ignoring case.
fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| eq_ignore_case(k, key))
            .map(|(_, v)| v)
    })
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
}

fn equals(found: &Resolved<'_>, lit: &Literal) -> bool {
    match found {
        Resolved::Missing => false,
        Resolved::One(v) => value_eq(v, lit),
        Resolved::Many(vs) => vs.iter().any(|v| value_eq(v, lit)),
    }
}

/// Scalar equality between a JSON value and a literal.
fn value_eq(value: &Value, lit: &Literal) -> bool {
    match value {
        Value::String(s) => *s == lit.raw,
        Value::Number(n) => lit.number.is_some_and(|l| number_eq(n, l)),
        Value::Bool(b) => lit.boolean == Some(*b),
        Value::Null => lit.raw.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

fn number_eq(n: &serde_json::Number, lit: Number) -> bool {
    let int = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from));
    match (int, lit) {
        (Some(a), Number::Int(b)) => a == b,
        (None, Number::Int(b)) => n.as_f64() == Some(b as f64),
        (_, Number::Float(f)) => n.as_f64() == Some(f),
    }
}

fn is_empty(found: &Resolved<'_>) -> bool {
    match found {
        Resolved::Missing => true,
        Resolved::One(v) => is_empty_value(v),
        Resolved::Many(vs) => vs.is_empty(),
    }
}

fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

fn contains(found: &Resolved<'_>, lit: &Literal) -> bool {
    match found {
        Resolved::Missing => false,
        Resolved::One(v) => container_has(v, lit),
        Resolved::Many(vs) => vs.iter().any(|v| value_eq(v, lit) || container_has(v, lit)),
    }
}

/// Array: an element equals; object: has the key; string: substring.
fn container_has(value: &Value, lit: &Literal) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|v| value_eq(v, lit)),
        Value::Object(map) => lookup(map, &lit.raw).is_some(),
        Value::String(s) => s.contains(lit.raw.as_str()),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn regex_matches(found: &Resolved<'_>, re: &regex::Regex) -> bool {
    let one = |v: &Value| match v {
        Value::String(s) => re.is_match(s),
        Value::Array(items) => items
            .iter()
            .any(|i| matches!(i, Value::String(s) if re.is_match(s))),
        _ => false,
    };
    match found {
        Resolved::Missing => false,
        Resolved::One(v) => one(v),
        Resolved::Many(vs) => vs.iter().any(|v| one(v)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &[&str]) -> Selector {
        Selector {
            path: path.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn resolution() {
        let v = json!({"A": {"b": 1}, "L": [{"x": 1}, {"y": 2}, [{"x": 3}]], "S": "s"});
        assert_eq!(resolve(&v, &sel(&["A", "b"])), Resolved::One(&json!(1)));
        assert_eq!(resolve(&v, &sel(&["a", "B"])), Resolved::One(&json!(1)));
        assert_eq!(resolve(&v, &sel(&["A", "c"])), Resolved::Missing);
        assert_eq!(resolve(&v, &sel(&["S", "c"])), Resolved::Missing);
        assert_eq!(
            resolve(&v, &sel(&["L", "x"])),
            Resolved::Many(vec![&json!(1), &json!(3)])
        );
        assert_eq!(resolve(&v, &sel(&["L", "z"])), Resolved::Many(vec![]));
        assert_eq!(resolve(&v, &sel(&["L"])), Resolved::One(&v["L"]));
    }

    #[test]
    fn lookup_prefers_exact_key() {
        let v = json!({"a": 1, "A": 2, "É": 3});
        let map = v.as_object().unwrap();
        assert_eq!(lookup(map, "a"), Some(&json!(1)));
        assert_eq!(lookup(map, "A"), Some(&json!(2)));
        assert_eq!(lookup(map, "é"), Some(&json!(3)));
        assert_eq!(lookup(map, "b"), None);
    }

    #[test]
    fn numbers_compare_numerically() {
        let lit = |s: &str| Literal::new(s.to_owned());
        assert!(value_eq(&json!(8080), &lit("8080")));
        assert!(value_eq(&json!(8080), &lit("8080.0")));
        assert!(value_eq(&json!(8080.0), &lit("8080")));
        assert!(value_eq(&json!(u64::MAX), &lit("18446744073709551615")));
        assert!(!value_eq(&json!(u64::MAX), &lit("-1")));
        assert!(value_eq(&json!(-1.5), &lit("-1.5")));
        assert!(!value_eq(&json!(8080), &lit("web")));
        assert!(!value_eq(&json!(1), &lit("true")));
    }

    #[test]
    fn nested_arrays_are_flattened() {
        let mut v = json!({"x": 1});
        for _ in 0..1_000 {
            v = Value::Array(vec![v, json!({"x": 2})]);
        }
        let mut out = Vec::new();
        let mut crossed = false;
        step(&v, "x", &mut out, &mut crossed);
        assert!(crossed);
        assert_eq!(out.len(), 1_001);
        assert_eq!(out.first(), Some(&&json!(1)));
    }
}
