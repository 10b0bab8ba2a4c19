#![allow(clippy::unwrap_used)]

use super::*;
use crate::{Authorizer, DefaultPolicy, Need};
use proptest::prelude::*;

#[test]
fn hcl_and_json_forms_read_the_same() {
    let hcl = r#"
        key_prefix "app/" { policy = "write" }
        service "web" { policy = "write" intentions = "read" }
        node_prefix "" { policy = "read" }
        service_prefix "" { policy = "read" }
        operator = "read"
    "#;
    let json = r#"{
        "key_prefix": {"app/": {"policy": "write"}},
        "service": {"web": {"policy": "write", "intentions": "read"}},
        "node_prefix": {"": {"policy": "read"}},
        "service_prefix": {"": {"policy": "read"}},
        "operator": "read"
    }"#;
    let a = Rules::parse(hcl).unwrap();
    assert_eq!(a, Rules::parse(json).unwrap());
    assert_eq!(a.named_level(Named::Key, "app/x"), Some(Level::Write));
    assert_eq!(a.whole_level(Whole::Operator), Some(Level::Read));
}

#[test]
fn repeated_blocks_all_count() {
    let r = Rules::parse(
        r#"service "a" { policy = "write" }
           service "b" { policy = "read" }
           key "k" { policy = "list" }"#,
    )
    .unwrap();
    assert_eq!(r.named_level(Named::Service, "a"), Some(Level::Write));
    assert_eq!(r.named_level(Named::Service, "b"), Some(Level::Read));
    assert_eq!(r.named_level(Named::Key, "k"), Some(Level::List));
}

#[test]
fn empty_rules_grant_nothing() {
    assert!(Rules::parse("").unwrap().is_empty());
    assert!(Rules::parse("  \n").unwrap().is_empty());
}

#[test]
fn mistakes_name_their_line() {
    let cases = [
        (
            "key_prefix \"\" {\n  policy = \"read\"\n}\nservice \"web\" {\n  policy = \"wrtie\"\n}\n",
            5,
            "policy",
        ),
        ("node_prefix \"\" { policy = \"read\" }\nsevice \"web\" { policy = \"read\" }\n", 2, "unknown rule \"sevice\""),
        ("service \"web\" { policy = \"list\" }\n", 1, "not one of"),
        ("\n\noperator = \"list\"\n", 3, "operator"),
        ("key \"a\" {\n policy = \"read\"\n colour = \"blue\"\n}\n", 3, "unknown attribute \"colour\""),
        ("service \"web\" {\n intentions = \"read\"\n}\n", 1, "a policy is required"),
        ("service {\n policy = \"read\"\n}\n", 1, "service \"policy\""),
        ("key_prefix \"\" { policy = \"read\" \n", 1, "unclosed"),
    ];
    for (text, line, words) in cases {
        let e = Rules::parse(text).unwrap_err();
        assert_eq!(e.line, Some(line), "{text:?}: {e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
    }
}

#[test]
fn intentions_only_on_service_rules() {
    assert!(Rules::parse(r#"node "n" { policy = "read" intentions = "write" }"#).is_err());
    assert!(Rules::parse(r#"service "s" { policy = "read" intentions = "list" }"#).is_err());
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::Read),
        Just(Level::List),
        Just(Level::Write),
        Just(Level::Deny)
    ]
}

/// Short names over a small alphabet, so prefixes of each other come up often.
fn name() -> impl Strategy<Value = String> {
    "[abc/]{0,5}"
}

fn rules() -> impl Strategy<Value = Rules> {
    // Up to 24 rules: both the scan (few prefix rules) and the lookups (many) decide.
    prop::collection::vec((name(), any::<bool>(), level()), 0..24).prop_map(|items| {
        let mut r = Rules::default();
        for (n, prefix, l) in items {
            r.set_named(Named::Key, &n, prefix, l);
        }
        r
    })
}

proptest! {
    /// The deciding rule is the exact one, else the longest prefix of the name, else none.
    #[test]
    fn decision_is_exact_then_longest_prefix(r in rules(), n in name()) {
        let segments = r.named.get(&Named::Key).cloned().unwrap_or_default();
        let expected = segments.exact.get(&n).copied().or_else(|| {
            segments
                .prefix
                .iter()
                .filter(|(p, _)| n.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, l)| *l)
        });
        prop_assert_eq!(r.named_level(Named::Key, &n), expected);
    }

    /// Merging is order-independent, and a merged rule is the highest-precedence one of the inputs.
    #[test]
    fn merging_commutes_and_keeps_the_strongest(a in rules(), b in rules(), n in name()) {
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        prop_assert_eq!(&ab, &ba);
        let exact = |r: &Rules| r.named.get(&Named::Key).and_then(|s| s.exact.get(&n).copied());
        if let (Some(x), Some(y)) = (exact(&a), exact(&b)) {
            prop_assert_eq!(exact(&ab), Some(x.merge(y)));
        }
    }

    /// A deny anywhere in the merge for a name means deny for that name.
    #[test]
    fn deny_wins_a_merge(a in rules(), n in name(), prefix in any::<bool>()) {
        let mut denied = Rules::default();
        denied.set_named(Named::Key, &n, prefix, Level::Deny);
        let mut merged = a.clone();
        merged.merge(&denied);
        let authz = Authorizer::new(merged, DefaultPolicy::Allow);
        if !prefix {
            prop_assert!(!authz.named(Named::Key, &n, Need::Read));
        }
    }

    /// Rule text never panics the reader, whatever it is.
    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = Rules::parse(&text);
    }
}
