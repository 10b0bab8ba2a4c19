//! Recursive-descent parser: tokens to [`Expr`], following go-bexpr's grammar.
//!
//! ```text
//! or       := and ("or" and)*
//! and      := unary ("and" unary)*
//! unary    := "not" unary | "(" or ")" | match
//! match    := selector ("==" | "!=") value
//!           | selector "is" ["not"] "empty"
//!           | selector ["not"] ("contains" | "matches") value
//!           | value ["not"] "in" selector
//! selector := ident ("." ident | "[" string "]")*
//! value    := string | raw-string | word      (word: not a keyword)
//! ```
//!
//! Nesting through `(` and `not` is limited to [`MAX_NESTING_DEPTH`] levels
//! so hostile input cannot exhaust the stack.

use regex::{Regex, RegexBuilder};

use crate::ast::{Expr, Literal, MatchExpr, MatchOp, Selector};
use crate::error::FilterError;
use crate::lexer::{tokenize, Token, TokenKind};

/// How many `(` / `not` levels may nest before parsing fails.
pub const MAX_NESTING_DEPTH: usize = 32;

/// Compiled-program size cap for `matches` patterns.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const KEYWORDS: [&str; 8] = [
    "and", "or", "not", "is", "empty", "in", "contains", "matches",
];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

/// Parses a complete filter expression.
pub(crate) fn parse(src: &str) -> Result<Expr, FilterError> {
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        eof: Token {
            kind: TokenKind::Eof,
            start: src.len(),
            end: src.len(),
        },
    };
    let expr = parser.parse_or(0)?;
    let tok = parser.peek();
    match tok.kind {
        TokenKind::Eof => Ok(expr),
        TokenKind::RParen => Err(parser.error(tok.start, "unmatched closing parenthesis \")\"")),
        _ => Err(parser.unexpected(tok, &["\"and\"", "\"or\"", "end of input"])),
    }
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    eof: Token,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens.get(self.pos + ahead).unwrap_or(&self.eof)
    }

    fn next(&mut self) -> Token {
        let tok = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn is_word_at(&self, ahead: usize, word: &str) -> bool {
        matches!(&self.peek_at(ahead).kind, TokenKind::Word(w) if w == word)
    }

    /// Consumes the keyword `word` if it is next.
    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word_at(0, word);
        if found {
            self.next();
        }
        found
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> FilterError {
        FilterError::at(self.src, offset, message)
    }

    /// "expected one of A, B or C, found X" at `tok`.
    fn unexpected(&self, tok: &Token, expected: &[&str]) -> FilterError {
        let list = match expected {
            [] => String::from("something else"),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("one of {} or {last}", init.join(", ")),
        };
        self.error(
            tok.start,
            format!("expected {list}, found {}", describe(tok)),
        )
    }

    fn parse_or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_and(depth)?];
        while self.eat_word("or") {
            items.push(self.parse_and(depth)?);
        }
        Ok(collapse(items, Expr::Or))
    }

    fn parse_and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_unary(depth)?];
        while self.eat_word("and") {
            items.push(self.parse_unary(depth)?);
        }
        Ok(collapse(items, Expr::And))
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let tok = self.peek();
        let is_paren = matches!(tok.kind, TokenKind::LParen);
        if (is_paren || self.is_word_at(0, "not")) && depth >= MAX_NESTING_DEPTH {
            return Err(self.error(
                tok.start,
                format!(
                    "expression nested too deeply (more than {MAX_NESTING_DEPTH} levels of parentheses / \"not\")"
                ),
            ));
        }
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.parse_unary(depth + 1)?)));
        }
        if is_paren {
            let open = self.next();
            let inner = self.parse_or(depth + 1)?;
            let close = self.peek();
            if matches!(close.kind, TokenKind::RParen) {
                self.next();
                return Ok(inner);
            }
            let err = self.unexpected(close, &["\"and\"", "\"or\"", "\")\""]);
            let (line, col) = {
                let e = self.error(open.start, "");
                (e.line(), e.column())
            };
            return Err(self.error(
                err.offset(),
                format!("{} (to close \"(\" at {line}:{col})", err.message()),
            ));
        }
        self.parse_match().map(Expr::Match)
    }

    fn parse_match(&mut self) -> Result<MatchExpr, FilterError> {
        let tok = self.peek().clone();
        match tok.kind {
            TokenKind::Str(_) | TokenKind::Raw(_) => {
                let (value, _) = self.parse_value()?;
                self.parse_in(value)
            }
            TokenKind::Word(ref w) if is_keyword(w) => Err(self.error(
                tok.start,
                format!("expected a selector, a value, \"not\" or \"(\", found keyword \"{w}\""),
            )),
            TokenKind::Word(_) => {
                let value_first = self.is_word_at(1, "in")
                    || (self.is_word_at(1, "not") && self.is_word_at(2, "in"));
                if value_first {
                    let (value, _) = self.parse_value()?;
                    self.parse_in(value)
                } else {
                    let selector = self.parse_selector()?;
                    self.parse_selector_op(selector)
                }
            }
            _ => Err(self.unexpected(&tok, &["a selector", "a value", "\"not\"", "\"(\""])),
        }
    }

    /// After a leading value: `in <selector>` or `not in <selector>`.
    fn parse_in(&mut self, value: Literal) -> Result<MatchExpr, FilterError> {
        let negated = if self.eat_word("in") {
            false
        } else if self.is_word_at(0, "not") && self.is_word_at(1, "in") {
            self.next();
            self.next();
            true
        } else {
            return Err(self.unexpected(self.peek(), &["\"in\"", "\"not in\""]));
        };
        let selector = self.parse_selector()?;
        let op = if negated {
            MatchOp::NotContains(value)
        } else {
            MatchOp::Contains(value)
        };
        Ok(MatchExpr { selector, op })
    }

    fn parse_selector_op(&mut self, selector: Selector) -> Result<MatchExpr, FilterError> {
        let tok = self.next();
        let op = match &tok.kind {
            TokenKind::Eq => MatchOp::Equal(self.parse_value()?.0),
            TokenKind::Ne => MatchOp::NotEqual(self.parse_value()?.0),
            TokenKind::Word(w) if w == "is" => {
                let negated = self.eat_word("not");
                if !self.eat_word("empty") {
                    let expected: &[&str] = if negated {
                        &["\"empty\""]
                    } else {
                        &["\"empty\"", "\"not empty\""]
                    };
                    return Err(self.unexpected(self.peek(), expected));
                }
                if negated {
                    MatchOp::IsNotEmpty
                } else {
                    MatchOp::IsEmpty
                }
            }
            TokenKind::Word(w) if w == "contains" => MatchOp::Contains(self.parse_value()?.0),
            TokenKind::Word(w) if w == "matches" => MatchOp::Matches(self.parse_regex()?),
            TokenKind::Word(w) if w == "not" => {
                let next = self.next();
                match &next.kind {
                    TokenKind::Word(w) if w == "contains" => {
                        MatchOp::NotContains(self.parse_value()?.0)
                    }
                    TokenKind::Word(w) if w == "matches" => {
                        MatchOp::NotMatches(self.parse_regex()?)
                    }
                    TokenKind::Word(w) if w == "in" => return Err(self.error(
                        tok.start,
                        "\"not in\" takes the value on the left: write <value> not in <selector>",
                    )),
                    _ => return Err(self.unexpected(&next, &["\"contains\"", "\"matches\""])),
                }
            }
            TokenKind::Word(w) if w == "in" => {
                return Err(self.error(
                    tok.start,
                    "\"in\" takes the value on the left: write <value> in <selector>",
                ))
            }
            _ => {
                return Err(self.unexpected(
                    &tok,
                    &[
                        "\"==\"",
                        "\"!=\"",
                        "\"is\"",
                        "\"contains\"",
                        "\"matches\"",
                        "\"not\"",
                        "\".\"",
                        "\"[\"",
                    ],
                ))
            }
        };
        Ok(MatchExpr { selector, op })
    }

    /// A value; also returns where it started (for regex errors).
    fn parse_value(&mut self) -> Result<(Literal, usize), FilterError> {
        let tok = self.next();
        match tok.kind {
            TokenKind::Str(s) | TokenKind::Raw(s) => Ok((Literal::new(s), tok.start)),
            TokenKind::Word(w) if is_keyword(&w) => Err(self.error(
                tok.start,
                format!("expected a value, found keyword \"{w}\" (quote it to use it as a string)"),
            )),
            TokenKind::Word(w) => Ok((Literal::new(w), tok.start)),
            _ => Err(self.unexpected(&tok, &["a value"])),
        }
    }

    fn parse_regex(&mut self) -> Result<Regex, FilterError> {
        let (value, start) = self.parse_value()?;
        RegexBuilder::new(&value.raw)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                self.error(
                    start,
                    format!(
                        "invalid regular expression {:?}: {}",
                        value.raw,
                        regex_reason(&e)
                    ),
                )
            })
    }

    fn parse_selector(&mut self) -> Result<Selector, FilterError> {
        let tok = self.next();
        let first = match &tok.kind {
            TokenKind::Word(w) if is_keyword(w) => {
                return Err(self.error(
                    tok.start,
                    format!("expected a selector, found keyword \"{w}\""),
                ))
            }
            TokenKind::Word(w) => w,
            _ => return Err(self.unexpected(&tok, &["a selector"])),
        };
        let mut path = Vec::new();
        self.push_segments(first, tok.start, &mut path)?;
        let mut last_end = tok.end;
        loop {
            let next = self.peek();
            match &next.kind {
                TokenKind::LBracket => {
                    self.next();
                    let key = self.next();
                    match key.kind {
                        TokenKind::Str(k) | TokenKind::Raw(k) => path.push(k),
                        _ => {
                            return Err(self.unexpected(&key, &["a quoted map key"]));
                        }
                    }
                    let close = self.next();
                    if !matches!(close.kind, TokenKind::RBracket) {
                        return Err(self.unexpected(&close, &["\"]\""]));
                    }
                    last_end = close.end;
                }
                TokenKind::Word(w) if next.start == last_end && w.starts_with('.') => {
                    let (start, end) = (next.start, next.end);
                    let rest = w.strip_prefix('.').unwrap_or(w).to_owned();
                    self.next();
                    self.push_segments(&rest, start + 1, &mut path)?;
                    last_end = end;
                }
                _ => break,
            }
        }
        Ok(Selector { path })
    }

    /// Splits a dotted word into identifier segments, checking each one.
    /// `offset` is where `text` starts in the source.
    fn push_segments(
        &self,
        text: &str,
        offset: usize,
        path: &mut Vec<String>,
    ) -> Result<(), FilterError> {
        let mut at = offset;
        for segment in text.split('.') {
            let mut chars = segment.char_indices();
            match chars.next() {
                None => {
                    return Err(
                        self.error(at, "empty selector segment (stray \".\" in the selector)")
                    )
                }
                Some((_, c)) if !(c.is_ascii_alphabetic() || c == '_') => {
                    return Err(self.error(
                        at,
                        format!(
                            "invalid selector \"{text}\": a field name must start with a letter \
                             (use [\"...\"] for map keys like {segment:?})"
                        ),
                    ))
                }
                Some(_) => {}
            }
            if let Some((i, c)) =
                chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            {
                return Err(self.error(
                    at + i,
                    format!(
                        "invalid character '{c}' in selector \"{text}\" \
                         (use [\"...\"] for map keys like {segment:?})"
                    ),
                ));
            }
            path.push(segment.to_owned());
            at += segment.len() + 1;
        }
        Ok(())
    }
}

/// One operand stays itself; several become `ctor(items)`.
fn collapse(mut items: Vec<Expr>, ctor: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    ctor(items)
}

/// A short, quoted description of a token for error messages.
fn describe(tok: &Token) -> String {
    fn clip(s: &str) -> String {
        let clipped: String = s.chars().take(40).collect();
        if clipped.len() < s.len() {
            format!("{clipped:?}...")
        } else {
            format!("{clipped:?}")
        }
    }
    match &tok.kind {
        TokenKind::LParen => "\"(\"".into(),
        TokenKind::RParen => "\")\"".into(),
        TokenKind::LBracket => "\"[\"".into(),
        TokenKind::RBracket => "\"]\"".into(),
        TokenKind::Eq => "\"==\"".into(),
        TokenKind::Ne => "\"!=\"".into(),
        TokenKind::Str(s) => format!("string {}", clip(s)),
        TokenKind::Raw(s) => format!("raw string {}", clip(s)),
        TokenKind::Word(w) if is_keyword(w) => format!("keyword \"{w}\""),
        TokenKind::Word(w) => format!("word {}", clip(w)),
        TokenKind::Eof => "end of input".into(),
    }
}

/// The regex crate's errors span several lines; keep the gist on one line.
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    if let Some(reason) = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error:"))
    {
        return reason.trim().to_owned();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn path(src: &str) -> Vec<String> {
        match parse(src).unwrap() {
            Expr::Match(m) => m.selector.path,
            other => panic!("not a match expression: {other:?}"),
        }
    }

    fn err(src: &str) -> FilterError {
        match parse(src) {
            Ok(e) => panic!("{src:?} parsed as {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn selectors() {
        assert_eq!(path("Service.Meta.env == x"), ["Service", "Meta", "env"]);
        assert_eq!(
            path(r#"Service.Meta["a-b"] is empty"#),
            ["Service", "Meta", "a-b"]
        );
        assert_eq!(path(r#"Meta["x.y"] == 1"#), ["Meta", "x.y"]);
        assert_eq!(
            path(r#"A["b"].c.d[`e f`]["g"].h contains x"#),
            ["A", "b", "c", "d", "e f", "g", "h"]
        );
        assert_eq!(path("x in Node.Meta.rack-id"), ["Node", "Meta", "rack-id"]);
        assert_eq!(path(r#"A[ "b" ] == c"#), ["A", "b"]);
    }

    #[test]
    fn operators_map_to_ops() {
        let op = |src: &str| match parse(src).unwrap() {
            Expr::Match(m) => format!("{:?}", m.op).split('(').next().unwrap().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(op("a == b"), "Equal");
        assert_eq!(op("a != b"), "NotEqual");
        assert_eq!(op("a is empty"), "IsEmpty");
        assert_eq!(op("a is not empty"), "IsNotEmpty");
        assert_eq!(op("a contains b"), "Contains");
        assert_eq!(op("a not contains b"), "NotContains");
        assert_eq!(op("b in a"), "Contains");
        assert_eq!(op("\"b\" not in a"), "NotContains");
        assert_eq!(op("a matches b"), "Matches");
        assert_eq!(op("a not matches b"), "NotMatches");
    }

    #[test]
    fn precedence_shapes() {
        let shape = |src: &str| {
            fn walk(e: &Expr) -> String {
                match e {
                    Expr::Or(v) => {
                        format!("or({})", v.iter().map(walk).collect::<Vec<_>>().join(","))
                    }
                    Expr::And(v) => {
                        format!("and({})", v.iter().map(walk).collect::<Vec<_>>().join(","))
                    }
                    Expr::Not(e) => format!("not({})", walk(e)),
                    Expr::Match(m) => m.selector.path.join("."),
                }
            }
            walk(&parse(src).unwrap())
        };
        assert_eq!(shape("a == 1 or b == 1 and c == 1"), "or(a,and(b,c))");
        assert_eq!(shape("not a == 1 and b == 1"), "and(not(a),b)");
        assert_eq!(shape("(a == 1 or b == 1) and c == 1"), "and(or(a,b),c)");
        assert_eq!(shape("a == 1 or b == 1 or c == 1"), "or(a,b,c)");
        assert_eq!(shape("not not a is empty"), "not(not(a))");
        assert_eq!(shape("((a is empty))"), "a");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = err("Service.ID equals web");
        assert_eq!(e.offset(), 11);
        assert!(e.message().contains("found word \"equals\""), "{e}");
        let e = err("a == 1 and");
        assert_eq!(e.offset(), 10);
        assert!(e.message().contains("end of input"), "{e}");
        let e = err("a == 1 b == 2");
        assert!(e.message().contains("\"and\", \"or\""), "{e}");
        let e = err("(a == 1");
        assert!(e.message().contains("to close \"(\" at 1:1"), "{e}");
        let e = err("a == 1)");
        assert!(e.message().contains("unmatched closing"), "{e}");
        let e = err("a.1b == 1");
        assert!(e.message().contains("must start with a letter"), "{e}");
        let e = err("a..b == 1");
        assert_eq!(e.offset(), 2);
        let e = err("a.b: == 1");
        assert_eq!(e.offset(), 3);
        let e = err("a[b] == 1");
        assert!(e.message().contains("quoted map key"), "{e}");
        let e = err(r#"a["b" == 1"#);
        assert!(e.message().contains("\"]\""), "{e}");
        let e = err("a in and");
        assert!(
            e.message().contains("expected a selector, found keyword"),
            "{e}"
        );
        let e = err("a in \"b\"");
        assert!(
            e.message().contains("expected a selector, found string"),
            "{e}"
        );
        let e = err("a == and");
        assert!(e.message().contains("keyword \"and\""), "{e}");
        let e = err("a is full");
        assert!(e.message().contains("\"empty\""), "{e}");
        let e = err("a not equals b");
        assert!(e.message().contains("\"contains\""), "{e}");
        let e = err("\"x\" == a");
        assert!(e.message().contains("\"in\""), "{e}");
        let e = err(r#"Meta["a"] in X"#);
        assert!(e.message().contains("value on the left"), "{e}");
        let e = err("");
        assert_eq!(e.offset(), 0);
        assert!(e.message().contains("end of input"), "{e}");
    }

    #[test]
    fn nesting_limit() {
        let ok = format!(
            "{}a is empty{}",
            "(".repeat(MAX_NESTING_DEPTH),
            ")".repeat(MAX_NESTING_DEPTH)
        );
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a is empty{}", "(".repeat(64), ")".repeat(64));
        assert!(err(&deep).message().contains("nested too deeply"));
        let nots = format!("{}a is empty", "not ".repeat(MAX_NESTING_DEPTH + 1));
        assert!(err(&nots).message().contains("nested too deeply"));
        let huge = "(".repeat(100_000);
        assert!(err(&huge).message().contains("nested too deeply"));
    }

    #[test]
    fn regex_errors_are_one_line() {
        let e = err(r#"a matches "(""#);
        assert_eq!(e.offset(), 10);
        assert!(e.message().starts_with("invalid regular expression"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
