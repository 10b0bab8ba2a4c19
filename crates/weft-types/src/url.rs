//! Percent-encoding of names that go into the agent's URLs, in one place: service, node and KV key names may hold
//! spaces, `?`, `#`, `%`, `/` or non-ASCII characters.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded, so a segment never breaks out of its place.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment (a service ID, a node name), percent-encoded; a `/` in it is encoded too.
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A slash-separated path (a KV key): each segment encoded, the slashes kept.
pub fn path(s: &str) -> String {
    s.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// A query-string value.
pub fn query_value(s: &str) -> String {
    segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_out_of_their_place() {
        assert_eq!(segment("web-1.a_b~c"), "web-1.a_b~c");
        assert_eq!(segment("a b?c#d%e/f"), "a%20b%3Fc%23d%25e%2Ff");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(path("app/config key/x?"), "app/config%20key/x%3F");
        assert_eq!(query_value("a&b=c"), "a%26b%3Dc");
    }
}
