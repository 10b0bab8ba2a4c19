//! Tokenizer: turns filter source text into a flat list of positioned tokens.
//!
//! Words (`[A-Za-z0-9_\-./:]` runs) are not classified here: whether a word
//! is a keyword, a selector or a bare value depends on where the parser
//! meets it.

use crate::error::FilterError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// Double-quoted string, escapes already resolved.
    Str(String),
    /// Backquoted raw string, taken verbatim.
    Raw(String),
    /// A run of word characters: keyword, selector, number or bare value.
    Word(String),
    Eof,
}

/// A token and the byte span `start..end` it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// Characters that make up bare words (selectors, numbers, unquoted values).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':')
}

/// Splits `src` into tokens. The returned list does not contain the final
/// [`TokenKind::Eof`]; the parser supplies it.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        chars.next();
        let single = |kind| Token {
            kind,
            start,
            end: start + 1,
        };
        match c {
            c if c.is_whitespace() => {}
            '(' => tokens.push(single(TokenKind::LParen)),
            ')' => tokens.push(single(TokenKind::RParen)),
            '[' => tokens.push(single(TokenKind::LBracket)),
            ']' => tokens.push(single(TokenKind::RBracket)),
            '=' | '!' => {
                if chars.next_if(|&(_, n)| n == '=').is_some() {
                    let kind = if c == '=' {
                        TokenKind::Eq
                    } else {
                        TokenKind::Ne
                    };
                    tokens.push(Token {
                        kind,
                        start,
                        end: start + 2,
                    });
                } else {
                    return Err(FilterError::at(
                        src,
                        start,
                        format!("unexpected character '{c}', did you mean \"{c}=\"?"),
                    ));
                }
            }
            '"' => {
                let mut text = String::new();
                let end = loop {
                    match chars.next() {
                        None => {
                            return Err(FilterError::at(
                                src,
                                start,
                                "unterminated string literal (missing closing '\"')",
                            ))
                        }
                        Some((i, '"')) => break i + 1,
                        Some((i, '\\')) => text.push(escape(src, start, i, &mut chars)?),
                        Some((_, ch)) => text.push(ch),
                    }
                };
                tokens.push(Token {
                    kind: TokenKind::Str(text),
                    start,
                    end,
                });
            }
            '`' => {
                let mut text = String::new();
                let end = loop {
                    match chars.next() {
                        None => {
                            return Err(FilterError::at(
                                src,
                                start,
                                "unterminated raw string literal (missing closing '`')",
                            ))
                        }
                        Some((i, '`')) => break i + 1,
                        Some((_, ch)) => text.push(ch),
                    }
                };
                tokens.push(Token {
                    kind: TokenKind::Raw(text),
                    start,
                    end,
                });
            }
            c if is_word_char(c) => {
                let mut word = String::from(c);
                let mut end = start + c.len_utf8();
                while let Some((i, n)) = chars.next_if(|&(_, n)| is_word_char(n)) {
                    word.push(n);
                    end = i + n.len_utf8();
                }
                tokens.push(Token {
                    kind: TokenKind::Word(word),
                    start,
                    end,
                });
            }
            other => {
                return Err(FilterError::at(
                    src,
                    start,
                    format!("unexpected character {other:?}"),
                ))
            }
        }
    }
    Ok(tokens)
}

/// Resolves the escape sequence whose backslash is at byte `backslash`
/// inside the string literal opened at byte `open`.
fn escape(
    src: &str,
    open: usize,
    backslash: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<char, FilterError> {
    let Some((_, c)) = chars.next() else {
        return Err(FilterError::at(
            src,
            open,
            "unterminated string literal (missing closing '\"')",
        ));
    };
    let simple = match c {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        '\'' => '\'',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\u{07}',
        'b' => '\u{08}',
        'f' => '\u{0c}',
        'v' => '\u{0b}',
        'u' | 'U' => {
            let digits = if c == 'u' { 4 } else { 8 };
            let mut code: u32 = 0;
            for _ in 0..digits {
                let digit = chars.next_if(|(_, h)| h.is_ascii_hexdigit());
                match digit.and_then(|(_, h)| h.to_digit(16)) {
                    Some(d) => code = code * 16 + d,
                    None => {
                        return Err(FilterError::at(
                            src,
                            backslash,
                            format!("invalid \\{c} escape: expected {digits} hex digits"),
                        ))
                    }
                }
            }
            return char::from_u32(code).ok_or_else(|| {
                FilterError::at(
                    src,
                    backslash,
                    format!("invalid \\{c} escape: {code:#x} is not a Unicode scalar value"),
                )
            });
        }
        other => {
            return Err(FilterError::at(
                src,
                backslash,
                format!("unknown escape sequence \"\\{other}\" in string literal"),
            ))
        }
    };
    Ok(simple)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    fn word(w: &str) -> TokenKind {
        TokenKind::Word(w.to_owned())
    }

    #[test]
    fn splits_operators_words_and_brackets() {
        assert_eq!(
            kinds(r#"Service.Meta["a-b"]==x and(y!=-1.5)"#),
            vec![
                word("Service.Meta"),
                TokenKind::LBracket,
                TokenKind::Str("a-b".into()),
                TokenKind::RBracket,
                TokenKind::Eq,
                word("x"),
                word("and"),
                TokenKind::LParen,
                word("y"),
                TokenKind::Ne,
                word("-1.5"),
                TokenKind::RParen,
            ]
        );
    }

    #[test]
    fn spans_are_byte_offsets() {
        let toks = tokenize("é == `x`").unwrap_err();
        assert_eq!(toks.offset(), 0);
        let toks = tokenize("a  ==  `x`").unwrap();
        let spans: Vec<_> = toks.iter().map(|t| (t.start, t.end)).collect();
        assert_eq!(spans, vec![(0, 1), (3, 5), (7, 10)]);
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c\nd\te\u00e9\/""#),
            vec![TokenKind::Str("a\"b\\c\nd\te\u{e9}/".into())]
        );
        assert_eq!(kinds(r"`a\nb`"), vec![TokenKind::Raw("a\\nb".into())]);
    }

    #[test]
    fn lexical_errors() {
        let e = tokenize(r#"x == "abc"#).unwrap_err();
        assert_eq!(e.offset(), 5);
        assert!(e.message().contains("unterminated string"), "{e}");
        let e = tokenize("x == `abc").unwrap_err();
        assert!(e.message().contains("unterminated raw string"), "{e}");
        let e = tokenize(r#"x == "a\qb""#).unwrap_err();
        assert_eq!(e.offset(), 7);
        assert!(e.message().contains("unknown escape"), "{e}");
        let e = tokenize(r#"x == "\u12""#).unwrap_err();
        assert!(e.message().contains("hex digits"), "{e}");
        let e = tokenize(r#"x == "\ud800""#).unwrap_err();
        assert!(e.message().contains("Unicode scalar"), "{e}");
        let e = tokenize("x = y").unwrap_err();
        assert!(e.message().contains("\"==\""), "{e}");
        let e = tokenize("x ~= y").unwrap_err();
        assert_eq!(e.to_string(), "1:3 (2): unexpected character '~'");
        let e = tokenize("x ! y").unwrap_err();
        assert!(e.message().contains("\"!=\""), "{e}");
        let e = tokenize("x == \"\\").unwrap_err();
        assert!(e.message().contains("unterminated"), "{e}");
    }
}
