//! Abstract syntax tree: built by the parser, walked by the evaluator.

use regex::Regex;

/// A boolean expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// True if any operand is true (two or more operands).
    Or(Vec<Expr>),
    /// True if every operand is true (two or more operands).
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(MatchExpr),
}

/// One `<selector> <op> <value>` (or `<value> in <selector>`) comparison.
#[derive(Debug, Clone)]
pub(crate) struct MatchExpr {
    pub selector: Selector,
    pub op: MatchOp,
}

/// A path of field names / map keys, e.g. `Service.Meta["k-1"]` is
/// `["Service", "Meta", "k-1"]`. Dotted parts and bracket keys resolve the
/// same way.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub path: Vec<String>,
}

/// The operator of a match expression. `<v> in <sel>` is stored as
/// `Contains(v)`, `<v> not in <sel>` as `NotContains(v)`.
#[derive(Debug, Clone)]
pub(crate) enum MatchOp {
    Equal(Literal),
    NotEqual(Literal),
    IsEmpty,
    IsNotEmpty,
    Contains(Literal),
    NotContains(Literal),
    Matches(Regex),
    NotMatches(Regex),
}

/// A value as written in the filter, with its numeric and boolean readings
/// worked out once at parse time.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    /// The text of the value (quotes removed, escapes resolved).
    pub raw: String,
    /// The value read as a number, if it is one (`8080`, `"8080"`, `-1.5`).
    pub number: Option<Number>,
    /// The value read as a boolean (`true` / `false`, any case).
    pub boolean: Option<bool>,
}

/// A numeric reading of a literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// Exact integer (wide enough for every i64 and u64).
    Int(i128),
    /// Anything else that parses as a finite float.
    Float(f64),
}

impl Literal {
    pub(crate) fn new(raw: String) -> Self {
        let number = if let Ok(i) = raw.parse::<i128>() {
            Some(Number::Int(i))
        } else {
            raw.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Number::Float)
        };
        let boolean = if raw.eq_ignore_ascii_case("true") {
            Some(true)
        } else if raw.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        };
        Literal {
            raw,
            number,
            boolean,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn literal_readings() {
        let l = Literal::new("8080".into());
        assert_eq!(l.number, Some(Number::Int(8080)));
        assert_eq!(l.boolean, None);
        let l = Literal::new("-1.5".into());
        assert_eq!(l.number, Some(Number::Float(-1.5)));
        let l = Literal::new("18446744073709551615".into());
        assert_eq!(l.number, Some(Number::Int(u64::MAX.into())));
        let l = Literal::new("1e999".into());
        assert_eq!(l.number, None);
        let l = Literal::new("TRUE".into());
        assert_eq!(l.boolean, Some(true));
        let l = Literal::new("web".into());
        assert_eq!((l.number, l.boolean), (None, None));
    }
}
