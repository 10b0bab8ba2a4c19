//! The error type returned when a filter expression cannot be parsed.

/// A filter expression could not be parsed.
///
/// `Display` renders a single line in Consul's style,
/// `line:column (byte offset): message`, for example
/// `1:12 (11): expected one of "==", "!=", ... found word "equals"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column} ({offset}): {message}")]
pub struct FilterError {
    line: usize,
    column: usize,
    offset: usize,
    message: String,
}

impl FilterError {
    /// Builds an error positioned at byte `offset` of `src`.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        // Keep the rendered error on one line whatever went into the message.
        let message: String = message
            .into()
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        FilterError {
            line,
            column,
            offset,
            message,
        }
    }

    /// 1-based line of the offending position.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column (in characters) of the offending position.
    pub fn column(&self) -> usize {
        self.column
    }

    /// 0-based byte offset of the offending position in the source.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The message without the position prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn position_is_line_column_offset() {
        let e = FilterError::at("ab\ncdé f", 8, "boom");
        assert_eq!((e.line(), e.column(), e.offset()), (2, 5, 8));
        assert_eq!(e.to_string(), "2:5 (8): boom");
    }

    #[test]
    fn message_is_single_line() {
        let e = FilterError::at("x", 0, "a\nb\r\nc");
        assert!(!e.to_string().contains('\n'));
        assert_eq!(e.message(), "a b  c");
    }

    #[test]
    fn offset_past_end_is_clamped() {
        let e = FilterError::at("abc", 99, "x");
        assert_eq!((e.line(), e.column(), e.offset()), (1, 4, 3));
    }
}
