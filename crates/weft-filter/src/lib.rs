//! Consul's `?filter` expression language (HashiCorp go-bexpr): parse a
//! filter once with [`Filter::parse`], then test JSON values (the objects a
//! Consul list endpoint returns) with [`Filter::matches`].
//!
//! ```
//! use weft_filter::Filter;
//! let f = Filter::parse(r#"Service.Service == web and "v1" in Service.Tags"#).unwrap();
//! let node = serde_json::json!({"Service": {"Service": "web", "Tags": ["v1"]}});
//! assert!(f.matches(&node));
//! ```
//!
//! # Grammar
//!
//! * Match expressions: `S == V`, `S != V`, `S is empty`, `S is not empty`,
//!   `V in S`, `V not in S`, `S contains V`, `S not contains V`,
//!   `S matches V`, `S not matches V` (S a selector, V a value).
//! * Logic: `not` binds tighter than `and`, which binds tighter than `or`;
//!   parentheses group. Keywords are lowercase and case-sensitive. Nesting of
//!   `(` / `not` is limited to [`MAX_NESTING_DEPTH`] levels.
//! * Values: `"double quoted"` (escapes `\" \\ \/ \' \n \t \r \a \b \f \v
//!   \uXXXX \UXXXXXXXX`), `` `raw` ``, or a bare word made of
//!   `[A-Za-z0-9_\-./:]` that is not a keyword (`8080`, `-1.5`, `true`,
//!   `service:web1`), which is taken as its text.
//! * Selectors: dotted field names (`[A-Za-z_][A-Za-z0-9_-]*`) and quoted
//!   bracket keys, freely mixed: `Service.Meta["k-1"].x`.
//!
//! # Evaluation
//!
//! * Each selector segment looks its name up in an object: exact key first,
//!   then the first key equal ignoring case. This applies to struct fields
//!   and map keys alike.
//! * When a segment meets an array, it is applied to every element (nested
//!   arrays are flattened) and the selector yields the collected values:
//!   `Checks.Status` on a node with two checks yields both statuses.
//!   go-bexpr rejects such selectors; here `==` means "any collected value
//!   equals", `!=` "none equals", `in`/`contains`/`matches` "any collected
//!   value contains/equals/matches", and `is empty` "nothing collected".
//! * A missing field (or a path through a string/number/...) never matches
//!   a positive operator (`==`, `is not empty`, `in`, `contains`,
//!   `matches`) and always matches its negation (`!=`, `is empty`,
//!   `not in`, ...). Every `not`-form is exactly the negation of its
//!   positive form.
//! * `==`: strings compare by text; numbers numerically against the value
//!   read as a number (`8080`, `"8080"` and `8080.0` all equal 8080);
//!   booleans against `true`/`false` (any case, quoted or not); JSON `null`
//!   equals the empty string. Arrays and objects never equal a value.
//! * `is empty`: `null`, `""`, `[]` and `{}` are empty; numbers and
//!   booleans are not.
//! * `V in S` / `S contains V`: an array contains V if an element equals it
//!   (by the `==` rules), an object if it has the key V (exact, then ignoring
//!   case), a string if V is a substring. Anything else contains nothing.
//! * `matches`: the regex (Rust `regex` syntax, close to Go's RE2) is
//!   compiled when the filter is parsed; an invalid one is a parse error. It
//!   is tried against a string, or against each string element of an array;
//!   other values never match.

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;

use std::fmt;
use std::str::FromStr;

pub use error::FilterError;
pub use parser::MAX_NESTING_DEPTH;

/// A parsed filter expression, ready to be evaluated many times.
#[derive(Debug, Clone)]
pub struct Filter {
    source: String,
    expr: ast::Expr,
}

impl Filter {
    /// Parses `src`. Empty or whitespace-only input is an error (callers
    /// treat an absent `?filter` as "match everything" themselves).
    pub fn parse(src: &str) -> Result<Filter, FilterError> {
        let expr = parser::parse(src)?;
        Ok(Filter {
            source: src.to_owned(),
            expr,
        })
    }

    /// Whether `value` (one JSON object from a list response) satisfies
    /// the filter.
    pub fn matches(&self, value: &serde_json::Value) -> bool {
        self.expr.eval(value)
    }

    /// The text the filter was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// Displays the original filter text.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn sample() -> Value {
        json!({
            "Node": {"Node": "n1", "Meta": {"env": "prod", "rack-id": "r1"}},
            "Service": {
                "ID": "web1",
                "Service": "web",
                "Tags": ["v1", "primary"],
                "Port": 8080,
                "Meta": {"version": "2"},
                "EnableTagOverride": false,
                "Proxy": {"Upstreams": [{"DestinationName": "db"}]}
            },
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing"},
                {"CheckID": "service:web1", "Status": "critical"}
            ]
        })
    }

    fn eval_on(src: &str, value: &Value) -> bool {
        Filter::parse(src)
            .unwrap_or_else(|e| panic!("{src:?} failed to parse: {e}"))
            .matches(value)
    }

    #[track_caller]
    fn yes(src: &str) {
        assert!(eval_on(src, &sample()), "expected match: {src}");
    }

    #[track_caller]
    fn no(src: &str) {
        assert!(!eval_on(src, &sample()), "expected no match: {src}");
    }

    #[track_caller]
    fn parse_err(src: &str) -> FilterError {
        match Filter::parse(src) {
            Ok(f) => panic!("{src:?} should not parse, got {f:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains('\n'), "multi-line error: {text}");
                assert!(
                    text.starts_with(&format!("{}:{} ({}): ", e.line(), e.column(), e.offset())),
                    "no position: {text}"
                );
                e
            }
        }
    }

    #[test]
    fn equality() {
        yes("Service.Service == web");
        yes(r#"Service.Service == "web""#);
        no("Service.Service == db");
        yes("Service.Service != db");
        no("Service.Service != web");
        yes("Node.Node == n1");
        yes("Node.Meta.env == prod");
        yes("Service.Meta.version == 2");
        yes(r#"Service.Meta.version == "2""#);
        no("Service.Meta.version == 2.0");
        yes("Service.ID==web1");
    }

    #[test]
    fn numbers() {
        yes("Service.Port == 8080");
        yes(r#"Service.Port == "8080""#);
        yes("Service.Port == 8080.0");
        no("Service.Port == 80");
        yes("Service.Port != 8081");
        no("Service.Port != 8080");
        no("Service.Port == web");
        let v = json!({"N": -5, "F": 1.5, "Big": u64::MAX});
        assert!(eval_on("N == -5", &v));
        assert!(eval_on("F == 1.5", &v));
        assert!(eval_on("F != 1.50001", &v));
        assert!(eval_on("Big == 18446744073709551615", &v));
    }

    #[test]
    fn booleans() {
        yes("Service.EnableTagOverride == false");
        yes(r#"Service.EnableTagOverride == "false""#);
        yes("Service.EnableTagOverride == False");
        no("Service.EnableTagOverride == true");
        yes("Service.EnableTagOverride != true");
        no("Service.EnableTagOverride == 0");
    }

    #[test]
    fn null_and_emptiness() {
        let v = json!({"Null": null, "Str": "", "Arr": [], "Obj": {}, "Zero": 0, "F": false});
        for sel in ["Null", "Str", "Arr", "Obj", "Missing"] {
            assert!(eval_on(&format!("{sel} is empty"), &v), "{sel}");
            assert!(!eval_on(&format!("{sel} is not empty"), &v), "{sel}");
        }
        for sel in ["Zero", "F"] {
            assert!(!eval_on(&format!("{sel} is empty"), &v), "{sel}");
            assert!(eval_on(&format!("{sel} is not empty"), &v), "{sel}");
        }
        assert!(eval_on(r#"Null == """#, &v));
        assert!(eval_on("Null != x", &v));
        assert!(!eval_on("Arr == x", &v));
        yes("Service.Tags is not empty");
        yes("Service.Meta is not empty");
        no("Service.Tags is empty");
    }

    #[test]
    fn membership() {
        yes("v1 in Service.Tags");
        yes(r#""primary" in Service.Tags"#);
        no("v3 in Service.Tags");
        yes("v3 not in Service.Tags");
        no("v1 not in Service.Tags");
        yes("Service.Tags contains v1");
        no("Service.Tags contains v3");
        yes("Service.Tags not contains v3");
        no("Service.Tags not contains primary");
        no("prim in Service.Tags"); // array membership is by equality
                                    // Objects: key membership.
        yes("env in Node.Meta");
        yes(r#""rack-id" in Node.Meta"#);
        yes("Node.Meta contains rack-id");
        no("prod in Node.Meta");
        yes("prod not in Node.Meta");
        // Strings: substring.
        yes("Service.Service contains eb");
        yes(r#""we" in Service.Service"#);
        no("Service.Service contains db");
        // Numbers and booleans contain nothing.
        no("Service.Port contains 80");
        yes("Service.Port not contains 80");
        no("Service.EnableTagOverride contains false");
    }

    #[test]
    fn regex_matching() {
        yes(r#"Service.ID matches "^web[0-9]+$""#);
        no(r#"Service.ID matches "^db""#);
        yes(r#"Service.ID not matches "^db""#);
        no(r#"Service.ID not matches "web""#);
        yes(r#"Service.Tags matches "^prim""#);
        no(r#"Service.Tags matches "^v2""#);
        no(r#"Service.Port matches "80""#);
        yes(r#"Service.Port not matches "80""#);
        yes(r"Service.ID matches `^web\d$`");
        yes("Node.Node matches n.");
    }

    #[test]
    fn missing_fields() {
        no("Service.Nope == x");
        yes("Service.Nope != x");
        yes("Service.Nope is empty");
        no("Service.Nope is not empty");
        no("x in Service.Nope");
        yes("x not in Service.Nope");
        no("Service.Nope contains x");
        yes("Service.Nope not contains x");
        no(r#"Service.Nope matches ".*""#);
        yes(r#"Service.Nope not matches ".*""#);
        // Through a scalar.
        no("Service.Port.Value == 1");
        yes("Service.Port.Value is empty");
        // Deep missing.
        yes("A.B.C.D != 1");
        no("A.B.C.D == \"\"");
    }

    #[test]
    fn arrays_crossed_in_the_middle() {
        yes("Checks.Status == passing");
        yes("Checks.Status == critical");
        no("Checks.Status == warning");
        yes("Checks.Status != warning");
        no("Checks.Status != passing");
        yes("passing in Checks.Status");
        yes("warning not in Checks.Status");
        no("critical not in Checks.Status");
        yes("Checks.Status contains crit");
        yes(r#"Checks.Status matches "^crit""#);
        no(r#"Checks.Status matches "^warn""#);
        yes("Checks.Status is not empty");
        yes("Checks.Missing is empty");
        no("Checks.Missing == x");
        yes(r#"Checks.CheckID == "service:web1""#);
        yes("Checks.CheckID == service:web1");
        yes("Service.Proxy.Upstreams.DestinationName == db");
        yes("db in Service.Proxy.Upstreams.DestinationName");
        let v = json!({"Checks": []});
        assert!(eval_on("Checks.Status is empty", &v));
        assert!(eval_on("Checks.Status != passing", &v));
        let v = json!({"Nodes": [{"Tags": ["a"]}, {"Tags": ["b", "c"]}]});
        assert!(eval_on("c in Nodes.Tags", &v));
        assert!(eval_on("Nodes.Tags contains a", &v));
        assert!(!eval_on("Nodes.Tags contains d", &v));
    }

    #[test]
    fn case_insensitive_names() {
        yes("service.service == web");
        yes("SERVICE.PORT == 8080");
        yes("Node.meta.ENV == prod");
        yes(r#"node.meta["RACK-ID"] == r1"#);
        yes("checks.status == critical");
        no("Service.Service == WEB"); // values stay case-sensitive
        let v = json!({"a": 1, "A": 2});
        assert!(eval_on("a == 1", &v));
        assert!(eval_on("A == 2", &v));
    }

    #[test]
    fn logic_and_precedence() {
        // T = Service.Port == 8080, F = Service.Port == 1
        yes("Service.Port == 8080 and Service.Service == web");
        no("Service.Port == 8080 and Service.Service == db");
        yes("Service.Port == 1 or Service.Service == web");
        no("Service.Port == 1 or Service.Service == db");
        // a or b and c == a or (b and c)
        yes("Service.Port == 8080 or Service.Port == 1 and Service.Port == 1");
        no("(Service.Port == 8080 or Service.Port == 1) and Service.Port == 1");
        // not a and b == (not a) and b
        no("not Service.Port == 8080 and Service.Port == 1");
        yes("not (Service.Port == 8080 and Service.Port == 1)");
        yes("not Service.Port == 8080 or Service.Port == 8080");
        no("not (Service.Port == 8080 or Service.Port == 8080)");
        yes("not not Service.Port == 8080");
        yes("not Service.Tags contains v3");
        yes("((Service.Port == 8080))");
        yes("(Service.Port == 1 or Node.Node == n1) and (v1 in Service.Tags)");
        yes("\n\tService.Port\r\n==\t8080\n");
        yes("(Service.Port==8080)and(Node.Node==n1)");
    }

    #[test]
    fn strings_raw_and_escaped() {
        let v = json!({"Q": "say \"hi\"\n\tok\\", "B": "a\\b", "U": "é", "K": {"x.y": "z", "a b": "c"}});
        assert!(eval_on(r#"Q == "say \"hi\"\n\tok\\""#, &v));
        assert!(eval_on(r"B == `a\b`", &v));
        assert!(eval_on(r#"B == "a\\b""#, &v));
        assert!(eval_on(r#"U == "\u00e9""#, &v));
        assert!(eval_on("U == \"é\"", &v));
        assert!(eval_on(r#"K["x.y"] == z"#, &v));
        assert!(eval_on("K[`a b`] == c", &v));
        assert!(eval_on(r#""x.y" in K"#, &v));
        yes("Service.ID == `web1`");
        yes("`v1` in Service.Tags");
    }

    #[test]
    fn bracket_selectors() {
        yes(r#"Node.Meta["rack-id"] == r1"#);
        yes(r#"Node["Meta"]["env"] == prod"#);
        yes("Node.Meta[`rack-id`] == r1");
        yes(r#"Service["Proxy"].Upstreams.DestinationName == db"#);
        yes(r#"Service["Meta"].version == 2"#);
        yes(r#"Node.Meta["rack-id"] is not empty"#);
        yes(r#"r1 in Node.Meta["rack-id"]"#);
        yes("Node.Meta.rack-id == r1");
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = parse_err(r#"Service.ID == "web"#);
        assert_eq!(e.offset(), 14);
        assert!(e.message().contains("unterminated string"), "{e}");

        let e = parse_err("Service.ID == `web");
        assert!(e.message().contains("unterminated raw string"), "{e}");

        let e = parse_err("Service.ID == web1 and");
        assert_eq!(e.offset(), 22);
        assert!(e.message().contains("found end of input"), "{e}");

        let e = parse_err("and Service.ID == web1");
        assert!(e.message().contains("keyword \"and\""), "{e}");

        let e = parse_err("Service.ID equals web1");
        assert_eq!(e.to_string(), "1:12 (11): expected one of \"==\", \"!=\", \"is\", \"contains\", \"matches\", \"not\", \".\" or \"[\", found word \"equals\"");

        let e = parse_err("Service.ID ~= web1");
        assert_eq!(e.offset(), 11);
        assert!(e.message().contains("unexpected character '~'"), "{e}");

        let e = parse_err("Service.ID = web1");
        assert!(e.message().contains("\"==\""), "{e}");

        let e = parse_err(r#"Service.ID matches "([a-z""#);
        assert_eq!(e.offset(), 19);
        assert!(e.message().contains("invalid regular expression"), "{e}");

        let deep = format!("{}Service.ID == web1{}", "(".repeat(64), ")".repeat(64));
        let e = parse_err(&deep);
        assert!(e.message().contains("nested too deeply"), "{e}");

        let e = parse_err("(Service.ID == web1");
        assert!(e.message().contains("\")\""), "{e}");
        let e = parse_err("Service.ID == web1)");
        assert!(e.message().contains("unmatched"), "{e}");
        let e = parse_err("Service.ID == web1 Node.Node == n1");
        assert!(e.message().contains("\"and\""), "{e}");
        let e = parse_err("Service.ID ==");
        assert!(
            e.message().contains("expected a value, found end of input"),
            "{e}"
        );
        let e = parse_err("Service.ID is");
        assert!(e.message().contains("\"empty\""), "{e}");
        // `Service.Tags in v1` is grammatical (the word is the value), but a
        // quoted string cannot be a selector.
        let e = parse_err(r#"Service.Tags in "v1""#);
        assert!(
            e.message().contains("expected a selector, found string"),
            "{e}"
        );
        let e = parse_err(r#""v1" Service.Tags"#);
        assert!(
            e.message().contains("expected one of \"in\" or \"not in\""),
            "{e}"
        );
        let e = parse_err("   ");
        assert_eq!((e.line(), e.column(), e.offset()), (1, 4, 3));
        let e = parse_err("Service.ID == web1 and\n  Node.Node @ n1");
        assert_eq!((e.line(), e.column()), (2, 13));
    }

    #[test]
    fn api_conveniences() {
        let f: Filter = "Service.Port == 8080".parse().unwrap();
        assert_eq!(f.to_string(), "Service.Port == 8080");
        assert_eq!(f.source(), "Service.Port == 8080");
        assert!(f.clone().matches(&sample()));
        assert!(!f.matches(&json!(null)));
        assert!(!f.matches(&json!([1, 2])));
        assert!(!f.matches(&json!("Service")));
    }

    // ---- property tests ------------------------------------------------

    const TOKENS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "==",
        "!=",
        "=",
        "!",
        "and",
        "or",
        "not",
        "is",
        "empty",
        "in",
        "contains",
        "matches",
        ".",
        "Service",
        "Service.Port",
        "Checks.Status",
        "Node.Meta",
        "Service.Tags",
        "8080",
        "-1.5",
        "true",
        "false",
        "web",
        "v1",
        "\"web\"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u12\"",
        "`raw`",
        "`",
        "\"",
        "[\"rack-id\"]",
        "\".*\"",
        "\"(\"",
        "\"[a-\"",
        "\\",
        "é",
        "\n",
        "\u{0}",
        "..",
        ".x",
        "Meta[",
        "1e9999",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9 .]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop::sample::select(vec![
                "Service", "service", "Port", "Tags", "Status", "Checks", "Meta", "x", "",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((keys, inner), 0..5).prop_map(|kvs| {
                    Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    /// Source text of a well-formed expression.
    fn arb_expr() -> impl Strategy<Value = String> {
        let selector = prop::sample::select(vec![
            "Service.Port",
            "Service.Tags",
            "Checks.Status",
            "Node.Meta[\"rack-id\"]",
            "service.service",
            "Missing.Field",
            "Service.Proxy.Upstreams.DestinationName",
        ]);
        let value = prop::sample::select(vec![
            "8080",
            "web",
            "\"v1\"",
            "`critical`",
            "true",
            "-1",
            "db",
            "\"\"",
        ]);
        let op = prop::sample::select(vec![
            "==",
            "!=",
            "contains",
            "not contains",
            "matches",
            "not matches",
        ]);
        let leaf = prop_oneof![
            (selector.clone(), op, value.clone()).prop_map(|(s, o, v)| format!("{s} {o} {v}")),
            (
                value,
                prop::sample::select(vec!["in", "not in"]),
                selector.clone()
            )
                .prop_map(|(v, o, s)| format!("{v} {o} {s}")),
            (
                selector,
                prop::sample::select(vec!["is empty", "is not empty"])
            )
                .prop_map(|(s, o)| format!("{s} {o}")),
        ];
        leaf.prop_recursive(6, 32, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
                inner.clone().prop_map(|a| format!("not {a}")),
                inner.prop_map(|a| format!("({a})")),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(src in "\\PC{0,120}", json in arb_json()) {
            if let Ok(f) = Filter::parse(&src) {
                let _ = f.matches(&sample());
                let _ = f.matches(&json);
            }
        }

        #[test]
        fn token_soup_never_panics(
            toks in prop::collection::vec(prop::sample::select(TOKENS), 0..24),
            sep in prop::sample::select(vec![" ", ""]),
            json in arb_json(),
        ) {
            let src = toks.join(sep);
            match Filter::parse(&src) {
                Ok(f) => {
                    let _ = f.matches(&sample());
                    let _ = f.matches(&json);
                }
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }

        #[test]
        fn well_formed_expressions_parse(src in arb_expr(), json in arb_json()) {
            let f = Filter::parse(&src);
            prop_assert!(f.is_ok(), "{src:?}: {f:?}");
            let f = f.expect("checked above");
            for v in [sample(), json] {
                let m = f.matches(&v);
                let negated = Filter::parse(&format!("not ({src})")).expect("negation parses");
                prop_assert_eq!(negated.matches(&v), !m);
            }
        }
    }
}
