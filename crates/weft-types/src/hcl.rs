//! A parser for HCL version 1 (`hashicorp/hcl` v1, the dialect of Consul's agent config files, not HCL2), producing
//! the JSON Consul's decoder sees.
//!
//! It is hand-written because HCL2 parsers reject everyday HCL1: `connect { sidecar_service {} }` on one line,
//! several attributes on a line (`ports { http = 8500  dns = 8600 }`) and commas between attributes. HCL1 is
//! whitespace-insensitive: an item ends where its value ends, so newlines, spaces and one optional comma all separate
//! items alike.
//!
//! Grammar: `#`, `//` and `/* */` comments; items `key = value`, blocks `key { .. }` (`key = { .. }` is the same) and
//! labelled blocks `key "a" b { .. }` (labels may be quoted or bare), giving `{"key": {"a": {"b": {..}}}}`. Keys are
//! identifiers (a letter or `_`, then letters, digits, `_`, `-`, `.`) or quoted strings. Values: strings with Go's
//! escapes (`\"  \\  \n  \t  \r  \a  \b  \f  \v  \xHH  \NNN  \uXXXX  \UXXXXXXXX`), heredocs `<<EOF` and `<<-EOF`,
//! integers (decimal, `0x` hex, and octal for a leading `0`, as Go's `ParseInt` base 0 reads them), floats
//! (`1.5`, `.5`, `1e3`), `true`/`false`, lists (commas between elements, stray commas ignored as HCL1 does) and
//! objects. Text whose first non-space character is `{` is JSON, as `hcl.Parse` decides.
//!
//! Repeated keys: HCL1 keeps every item, and its decoder turns objects into lists of maps that Consul flattens. Here
//! a key seen once keeps its value; a key whose occurrences at one level are all objects (blocks, `= { }` or
//! labelled blocks) becomes an array of them in source order (two `service { }` blocks give
//! `"service": [{..}, {..}]`); otherwise the last occurrence wins (`a = 1  a = 2` gives 2, and a scalar after
//! objects replaces them). The consumer normalises one-or-many itself.
//!
//! Where this differs from hashicorp/hcl v1, on purpose: a heredoc terminator may end the file without a newline, and
//! the indentation before a plain `<<EOF` terminator is not copied into the value (HCL1 leaks it there); `\x` and
//! octal escapes above 0x7f are errors, because Go turns them into raw bytes that a JSON string cannot hold;
//! `true`/`false` are accepted as keys. As in HCL1, `${ .. }` interpolations are kept verbatim and never evaluated,
//! integers must fit in an i64, and columns count characters. Nesting is limited to 64 objects and lists (block
//! labels count as levels), so hostile text cannot exhaust the stack.

use serde_json::{Map, Number, Value};
use std::collections::HashSet;

/// The deepest nesting of objects and lists accepted; the limit also bounds recursion when the value is dropped.
const MAX_DEPTH: usize = 64;

/// A syntax error, at a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct HclError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses HCL1 text into JSON the way Consul's decoder sees it: always an object on success.
pub fn parse(text: &str) -> Result<Value, HclError> {
    if text.trim_start().starts_with('{') {
        return parse_json(text);
    }
    let mut parser = Parser {
        src: text.chars().collect(),
        pos: 0,
    };
    parser.body(0, None).map(Value::Object)
}

fn parse_json(text: &str) -> Result<Value, HclError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with its own " at line L column C"; ours carries the position separately.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string();
        HclError {
            line: e.line(),
            column: e.column().max(1),
            message,
        }
    })?;
    // serde_json stops at 128 levels, so this recursion is bounded; the top-level object is not a nesting level.
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    if depth(&value) > MAX_DEPTH + 1 {
        let message = format!("nesting deeper than {MAX_DEPTH} levels");
        return Err(HclError {
            line: 1,
            column: 1,
            message,
        });
    }
    Ok(value)
}

/// A recursive-descent parser over the text's characters (not bytes, so positions never split a character).
struct Parser {
    src: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.src.get(self.pos.saturating_add(ahead)).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn eat(&mut self, want: char) -> bool {
        let found = self.peek() == Some(want);
        self.pos += usize::from(found);
        found
    }

    /// The text from `start` to the current position.
    fn text(&self, start: usize) -> String {
        self.src
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect()
    }

    /// An error at character offset `at`; the line and column are only worked out when an error happens.
    fn error(&self, at: usize, message: impl Into<String>) -> HclError {
        let before = self.src.get(..at).unwrap_or(&self.src);
        HclError {
            line: 1 + before.iter().filter(|&&c| c == '\n').count(),
            column: 1 + before.iter().rev().take_while(|&&c| c != '\n').count(),
            message: message.into(),
        }
    }

    /// The current character, quoted, for messages.
    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of input".to_string(), |c| format!("{c:?}"))
    }

    fn skip_trivia(&mut self) -> Result<(), HclError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(' ' | '\t' | '\n' | '\r'), _) => self.pos += 1,
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.pos += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos;
                    self.pos += 2;
                    while !(self.peek() == Some('*') && self.peek_at(1) == Some('/')) {
                        if self.bump().is_none() {
                            return Err(self.error(start, "unterminated comment"));
                        }
                    }
                    self.pos += 2;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Items up to the end of input (top level, `open` is None) or up to the `}` matching the `{` at `open`.
    fn body(&mut self, depth: usize, open: Option<usize>) -> Result<Map<String, Value>, HclError> {
        let mut map = Map::new();
        let mut repeated = HashSet::new();
        loop {
            self.skip_trivia()?;
            match (self.peek(), open) {
                (None, None) => return Ok(map),
                (None, Some(at)) => return Err(self.error(at, "unclosed '{'")),
                (Some('}'), Some(_)) => {
                    self.pos += 1;
                    return Ok(map);
                }
                _ => self.item(depth, &mut map, &mut repeated)?,
            }
            self.skip_trivia()?;
            self.eat(',');
        }
    }

    /// One `key = value`, `key { }` or `key "label" .. { }` item, added to `map`.
    fn item(
        &mut self,
        depth: usize,
        map: &mut Map<String, Value>,
        repeated: &mut HashSet<String>,
    ) -> Result<(), HclError> {
        let start = self.pos;
        let key = self
            .key()?
            .ok_or_else(|| self.error(start, format!("unexpected {}", self.found())))?;
        let mut labels: Vec<String> = Vec::new();
        loop {
            self.skip_trivia()?;
            let at = self.pos;
            match self.peek() {
                Some('=') if labels.is_empty() => {
                    self.pos += 1;
                    let value = self.value(depth)?;
                    insert(map, repeated, key, value);
                    return Ok(());
                }
                Some('=') => {
                    return Err(self.error(
                        at,
                        format!("expected '{{' after the labels of block {key:?}"),
                    ))
                }
                Some('{') => {
                    let inner = depth + labels.len() + 1;
                    if inner > MAX_DEPTH {
                        return Err(
                            self.error(at, format!("nesting deeper than {MAX_DEPTH} levels"))
                        );
                    }
                    self.pos += 1;
                    let mut value = Value::Object(self.body(inner, Some(at))?);
                    for label in labels.into_iter().rev() {
                        value = Value::Object(Map::from_iter([(label, value)]));
                    }
                    insert(map, repeated, key, value);
                    return Ok(());
                }
                _ => match self.key()? {
                    Some(label) => labels.push(label),
                    None => {
                        let last = labels.last().unwrap_or(&key);
                        return Err(
                            self.error(at, format!("expected '=' or '{{' after key {last:?}"))
                        );
                    }
                },
            }
        }
    }

    /// An identifier or a quoted string, or None (consuming nothing) when neither starts here.
    fn key(&mut self) -> Result<Option<String>, HclError> {
        match self.peek() {
            Some('"') => self.string().map(Some),
            Some(c) if c.is_alphabetic() || c == '_' => Ok(Some(self.ident())),
            _ => Ok(None),
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            self.pos += 1;
        }
        self.text(start)
    }

    /// A value inside a container at `depth`.
    fn value(&mut self, depth: usize) -> Result<Value, HclError> {
        self.skip_trivia()?;
        let at = self.pos;
        let digit_next = self.peek_at(1).is_some_and(|c| c.is_ascii_digit());
        match self.peek() {
            Some('"') => self.string().map(Value::String),
            Some('<') => self.heredoc().map(Value::String),
            Some('{' | '[') if depth >= MAX_DEPTH => {
                Err(self.error(at, format!("nesting deeper than {MAX_DEPTH} levels")))
            }
            Some('{') => {
                self.pos += 1;
                self.body(depth + 1, Some(at)).map(Value::Object)
            }
            Some('[') => {
                self.pos += 1;
                self.list(depth + 1, at)
            }
            Some('0'..='9') => self.number(),
            Some('-' | '.') if digit_next => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => match self.ident().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                word => Err(self.error(
                    at,
                    format!("expected a value, found {word:?} (strings must be quoted)"),
                )),
            },
            _ => Err(self.error(at, format!("expected a value, found {}", self.found()))),
        }
    }

    /// The elements of a list opened at `open`, the `[` already consumed.
    fn list(&mut self, depth: usize, open: usize) -> Result<Value, HclError> {
        let mut items = Vec::new();
        let mut need_comma = false;
        loop {
            self.skip_trivia()?;
            match self.peek() {
                None => return Err(self.error(open, "unclosed '['")),
                Some(']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                // HCL1 skips stray commas: `[1,,2,]` is `[1, 2]`.
                Some(',') => {
                    self.pos += 1;
                    need_comma = false;
                }
                Some(_) if need_comma => {
                    return Err(self.error(
                        self.pos,
                        format!("expected ',' or ']' in list, found {}", self.found()),
                    ));
                }
                Some(_) => {
                    items.push(self.value(depth)?);
                    need_comma = true;
                }
            }
        }
    }

    /// A quoted string. As in HCL1, a `${ .. }` interpolation is copied verbatim up to its matching brace (quotes
    /// and newlines included), since it belongs to a later evaluation stage rather than to the string syntax.
    fn string(&mut self) -> Result<String, HclError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error(open, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape()?),
                Some('$') if self.eat('{') => {
                    out.push_str("${");
                    let mut braces = 1_usize;
                    while braces > 0 {
                        let c = self
                            .bump()
                            .ok_or_else(|| self.error(open, "unterminated string"))?;
                        match c {
                            '{' => braces += 1,
                            '}' => braces -= 1,
                            _ => {}
                        }
                        out.push(c);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The character of the escape whose backslash was just consumed.
    fn escape(&mut self) -> Result<char, HclError> {
        let at = self.pos.saturating_sub(1);
        let kind = self.bump();
        let (digits, radix) = match kind {
            Some('a') => return Ok('\u{7}'),
            Some('b') => return Ok('\u{8}'),
            Some('f') => return Ok('\u{c}'),
            Some('n') => return Ok('\n'),
            Some('r') => return Ok('\r'),
            Some('t') => return Ok('\t'),
            Some('v') => return Ok('\u{b}'),
            Some(c @ ('\\' | '"')) => return Ok(c),
            Some('x') => (2, 16),
            Some('u') => (4, 16),
            Some('U') => (8, 16),
            Some('0'..='7') => {
                self.pos -= 1; // the first octal digit is part of the value
                (3, 8)
            }
            _ => return Err(self.error(at, "invalid escape sequence")),
        };
        let mut code = 0_u32;
        for _ in 0..digits {
            let digit = self.bump().and_then(|c| c.to_digit(radix));
            code = code * radix + digit.ok_or_else(|| self.error(at, "invalid escape sequence"))?;
        }
        if code > 0x7f && !matches!(kind, Some('u' | 'U')) {
            return Err(self.error(at, "byte escape above \\x7f is not valid UTF-8; use \\u"));
        }
        char::from_u32(code).ok_or_else(|| self.error(at, "escape is not a Unicode scalar value"))
    }

    /// A heredoc at `<<`: the lines up to one holding only the anchor (after optional whitespace). `<<-` strips the
    /// terminator's indentation from every line, but only if every line has it, as HCL1 does.
    fn heredoc(&mut self) -> Result<String, HclError> {
        let open = self.pos;
        if self.peek_at(1) != Some('<') {
            return Err(self.error(open, "expected a value, found '<'"));
        }
        self.pos += 2;
        let indented = self.eat('-');
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let anchor = self.text(start);
        if anchor.is_empty() {
            return Err(self.error(self.pos, "expected a heredoc anchor after '<<'"));
        }
        self.eat('\r');
        if !self.eat('\n') {
            return Err(self.error(self.pos, "expected a newline after the heredoc anchor"));
        }
        let mut lines = Vec::new();
        while self.peek().is_some() {
            let line_start = self.pos;
            while !matches!(self.peek(), None | Some('\n')) {
                self.pos += 1;
            }
            let line = self.text(line_start);
            let rest = line.trim_start_matches([' ', '\t', '\r', '\u{b}', '\u{c}']);
            if rest.trim_end_matches('\r') == anchor {
                let prefix = line.get(..line.len() - rest.len()).unwrap_or_default();
                let unindent = indented && lines.iter().all(|l: &String| l.starts_with(prefix));
                let strip = |l: &String| {
                    if unindent {
                        l.get(prefix.len()..).unwrap_or_default().to_string()
                    } else {
                        l.clone()
                    }
                };
                return Ok(lines.iter().map(|l| strip(l) + "\n").collect());
            }
            lines.push(line);
            self.eat('\n');
        }
        Err(self.error(open, "unterminated heredoc"))
    }

    /// A number: the same characters HCL1's scanner takes, converted as Go's ParseInt (base 0) or ParseFloat would.
    fn number(&mut self) -> Result<Value, HclError> {
        let start = self.pos;
        let negative = self.eat('-');
        let digits = |p: &mut Self, radix: u32| {
            let from = p.pos;
            while p.peek().is_some_and(|c| c.is_digit(radix)) {
                p.pos += 1;
            }
            p.text(from)
        };
        let (magnitude, radix) =
            if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
                self.pos += 2;
                let hex = digits(self, 16);
                if hex.is_empty() {
                    return Err(self.error(start, "invalid hexadecimal number"));
                }
                (hex, 16)
            } else {
                let whole = digits(self, 10);
                let mut float = self.eat('.');
                if float {
                    digits(self, 10);
                }
                if matches!(self.peek(), Some('e' | 'E')) {
                    float = true;
                    self.pos += 1;
                    if matches!(self.peek(), Some('+' | '-')) {
                        self.pos += 1;
                    }
                    if digits(self, 10).is_empty() {
                        return Err(self.error(start, "invalid number: the exponent has no digits"));
                    }
                }
                if float {
                    let parsed = self
                        .text(start)
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64);
                    return parsed
                        .map(Value::Number)
                        .ok_or_else(|| self.error(start, "number out of range"));
                }
                // Go's ParseInt with base 0, as HCL1 uses it, reads a leading 0 as octal.
                if whole.len() > 1 && whole.starts_with('0') {
                    if whole.contains(['8', '9']) {
                        return Err(self.error(start, "invalid octal number"));
                    }
                    (whole, 8)
                } else {
                    (whole, 10)
                }
            };
        let value = i128::from_str_radix(&magnitude, radix)
            .ok()
            .map(|m| if negative { -m } else { m });
        match value.and_then(|v| i64::try_from(v).ok()) {
            Some(v) => Ok(Value::from(v)),
            None => Err(self.error(start, "integer out of range")),
        }
    }
}

/// Adds `key = value` under the repeated-key rule in the module docs. `repeated` holds the keys whose array was built
/// by repetition, so that a list literal (`key = [ .. ]`) is never mistaken for one and appended to.
fn insert(map: &mut Map<String, Value>, repeated: &mut HashSet<String>, key: String, value: Value) {
    match map.get_mut(&key) {
        Some(Value::Array(items)) if value.is_object() && repeated.contains(&key) => {
            items.push(value)
        }
        Some(existing) if value.is_object() && existing.is_object() => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
            repeated.insert(key);
        }
        _ => {
            repeated.remove(&key);
            map.insert(key, value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The error for `text` as "line:column message".
    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        format!("{}:{} {}", e.line, e.column, e.message)
    }

    #[test]
    fn spec_service_sidecar_example() {
        let text = r#"
service { name = "greeter"  port = 9090
  connect { sidecar_service {} }             # → greeter-sidecar-proxy on :21000, local app 127.0.0.1:9090
}
service { name = "test" port = 8000
  connect { sidecar_service { proxy { upstreams = [{ destination_name = "greeter", local_bind_port = 8080 }] } } }
}
"#;
        let upstream = json!({"destination_name": "greeter", "local_bind_port": 8080});
        let want = json!({"service": [
            {"name": "greeter", "port": 9090, "connect": {"sidecar_service": {}}},
            {"name": "test", "port": 8000, "connect": {"sidecar_service": {"proxy": {"upstreams": [upstream]}}}},
        ]});
        assert_eq!(parse(text).unwrap(), want);
    }

    #[test]
    fn spec_intentions_example() {
        let text = r#"
Kind = "service-intentions"
Name = "greeter"                       # destination (may be "*")
Sources = [
  { Name = "test",  Action = "allow" },
  { Name = "*",     Action = "deny", Description = "default deny" },
  { Name = "web",   Permissions = [{ Action = "allow", HTTP = { PathPrefix = "/api", Methods = ["GET"] } }] },
]
"#;
        let permission =
            json!({"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["GET"]}});
        let want = json!({"Kind": "service-intentions", "Name": "greeter", "Sources": [
            {"Name": "test", "Action": "allow"},
            {"Name": "*", "Action": "deny", "Description": "default deny"},
            {"Name": "web", "Permissions": [permission]},
        ]});
        assert_eq!(parse(text).unwrap(), want);
    }

    #[test]
    fn spec_ingress_gateway_example() {
        // The spec's `{…}` and bare field names are placeholders; real values stand in for them here.
        let text = r#"
Kind = "ingress-gateway"
Name = "ingress-service"        # must equal the registered gateway service name (Kind ingress-gateway)
TLS  = { Enabled = false, SDS = { ClusterName = "sds", CertResource = "cert" }, TLSMinVersion = "TLSv1_2", CipherSuites = [] }
Defaults = { MaxConnections = 100, MaxPendingRequests = 50, PassiveHealthCheck = { Interval = "10s" } }
Listeners = [
  { Port = 8080, Protocol = "tcp",  Services = [{ Name = "web" }] },
  { Port = 8081, Protocol = "http", Services = [{ Name = "api", Hosts = ["api.example.com"] }, { Name = "*" }] },
]
"#;
        let want = json!({
            "Kind": "ingress-gateway", "Name": "ingress-service",
            "TLS": {"Enabled": false, "SDS": {"ClusterName": "sds", "CertResource": "cert"}, "TLSMinVersion": "TLSv1_2", "CipherSuites": []},
            "Defaults": {"MaxConnections": 100, "MaxPendingRequests": 50, "PassiveHealthCheck": {"Interval": "10s"}},
            "Listeners": [
                {"Port": 8080, "Protocol": "tcp", "Services": [{"Name": "web"}]},
                {"Port": 8081, "Protocol": "http", "Services": [{"Name": "api", "Hosts": ["api.example.com"]}, {"Name": "*"}]},
            ],
        });
        assert_eq!(parse(text).unwrap(), want);
    }

    /// Section 7's agent config; the bare `…` placeholders are replaced (those inside strings are valid and kept).
    const AGENT_CONFIG: &str = r#"
datacenter = "dc1"            node_name = "node-1"          data_dir = "/opt/consul"
server = true                 bootstrap_expect = 3          retry_join = ["10.0.0.10", "provider=aws tag_key=…"]
bind_addr = "0.0.0.0"         advertise_addr = "10.0.0.11"  client_addr = "0.0.0.0"
encrypt = "<keygen>"          log_level = "INFO"            domain = "consul"
ui_config { enabled = true  content_path = "/ui/"  metrics_provider = "prometheus"  metrics_proxy { base_url = "http://prom:9090" } }
ports { http = 8500  https = -1  dns = 8600  grpc = 8502  grpc_tls = 8503  serf_lan = 8301  serf_wan = 8302
        server = 8300  sidecar_min_port = 21000  sidecar_max_port = 21255  expose_min_port = 21500  expose_max_port = 21755 }
addresses { http = "0.0.0.0"  dns = "127.0.0.1"  grpc = "127.0.0.1" }
connect { enabled = true  ca_provider = "consul"  ca_config { leaf_cert_ttl = "72h" intermediate_cert_ttl = "8760h" } }
acl { enabled = true  default_policy = "deny"  down_policy = "extend-cache"  enable_token_persistence = true
      tokens { initial_management = "…"  agent = "…"  default = "…"  agent_recovery = "…"  replication = "…"
               config_file_service_registration = "…" } }
tls { defaults { ca_file = "consul-agent-ca.pem"  cert_file = "dc1-server-consul-0.pem"  key_file = "…-key.pem"
                 verify_incoming = true  verify_outgoing = true  tls_min_version = "TLSv1_2" }
      internal_rpc { verify_server_hostname = true }  https { verify_incoming = false }  grpc { use_auto_cert = false } }
auto_encrypt { tls = true }                           # client agents obtain agent certs via Connect CA
dns_config { allow_stale = true  max_stale = "87600h"  node_ttl = "0s"  service_ttl { "*" = "0s" }
             only_passing = false  udp_answer_limit = 3  a_record_limit = 0  enable_truncate = false
             recursor_timeout = "2s"  use_cache = false  soa { refresh = 3600 retry = 600 expire = 86400 min_ttl = 0 } }
recursors = ["8.8.8.8"]
performance { raft_multiplier = 5 }
services = [ { name = "web" port = 8080 tags = ["v1"] meta = { version = "1" } address = ""
               check = { http = "http://localhost:8080/health" interval = "10s" timeout = "1s" }
               connect = { sidecar_service = {} } } ]          # or the singular `service { … }`
checks = [ { id = "mem" name = "Memory" args = ["/bin/check_mem"] interval = "30s" } ]
"#;

    #[test]
    fn spec_agent_config_example() {
        let v = parse(AGENT_CONFIG).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 24);
        assert_eq!(
            v["retry_join"],
            json!(["10.0.0.10", "provider=aws tag_key=…"])
        );
        assert_eq!(
            (&v["server"], &v["bootstrap_expect"], &v["domain"]),
            (&json!(true), &json!(3), &json!("consul"))
        );
        let ports = json!({"http": 8500, "https": -1, "dns": 8600, "grpc": 8502, "grpc_tls": 8503, "serf_lan": 8301,
            "serf_wan": 8302, "server": 8300, "sidecar_min_port": 21000, "sidecar_max_port": 21255,
            "expose_min_port": 21500, "expose_max_port": 21755});
        assert_eq!(v["ports"], ports);
        let tokens = json!({"initial_management": "…", "agent": "…", "default": "…", "agent_recovery": "…",
            "replication": "…", "config_file_service_registration": "…"});
        let acl = json!({"enabled": true, "default_policy": "deny", "down_policy": "extend-cache",
            "enable_token_persistence": true, "tokens": tokens});
        assert_eq!(v["acl"], acl);
        let tls = json!({
            "defaults": {"ca_file": "consul-agent-ca.pem", "cert_file": "dc1-server-consul-0.pem", "key_file": "…-key.pem",
                "verify_incoming": true, "verify_outgoing": true, "tls_min_version": "TLSv1_2"},
            "internal_rpc": {"verify_server_hostname": true}, "https": {"verify_incoming": false},
            "grpc": {"use_auto_cert": false}});
        assert_eq!(v["tls"], tls);
        assert_eq!(v["dns_config"]["service_ttl"], json!({"*": "0s"}));
        assert_eq!(
            v["dns_config"]["soa"],
            json!({"refresh": 3600, "retry": 600, "expire": 86400, "min_ttl": 0})
        );
        assert_eq!(
            v["ui_config"]["metrics_proxy"],
            json!({"base_url": "http://prom:9090"})
        );
        let web = json!({"name": "web", "port": 8080, "tags": ["v1"], "meta": {"version": "1"}, "address": "",
            "check": {"http": "http://localhost:8080/health", "interval": "10s", "timeout": "1s"},
            "connect": {"sidecar_service": {}}});
        assert_eq!(v["services"], json!([web]));
        assert_eq!(v["checks"][0]["args"], json!(["/bin/check_mem"]));
        // The spec's own text, with a bare placeholder, is rejected where the placeholder stands.
        assert_eq!(
            err("a = 1\nmetrics_proxy { base_url = … }"),
            "2:28 expected a value, found '…'"
        );
    }

    /// Checks a table of cases, one a line: HCL text (`⏎` stands for a newline) `=>` either the JSON it must parse
    /// to or the error it must give, as "line:column message".
    fn check(table: &str) {
        for line in table.lines().filter(|l| !l.trim().is_empty()) {
            let (text, want) = line.split_once(" => ").unwrap();
            let text = text.trim_end().replace('⏎', "\n");
            if want.starts_with('{') {
                let want: Value = serde_json::from_str(want).unwrap();
                assert_eq!(parse(&text).unwrap(), want, "{text}");
            } else {
                assert_eq!(err(&text), want, "{text}");
            }
        }
    }

    #[test]
    fn single_line_forms() {
        check(
            r#"
connect { sidecar_service {} }       => {"connect": {"sidecar_service": {}}}
ports { http = 8500  dns = 8600 }    => {"ports": {"http": 8500, "dns": 8600}}
a = 1, b = 2                         => {"a": 1, "b": 2}
x = { a = 1, b = "s", }              => {"x": {"a": 1, "b": "s"}}
a⏎=⏎1                                => {"a": 1}
k-1.x = 1 "quoted key" = 2           => {"k-1.x": 1, "quoted key": 2}
                                     => {}
"#,
        );
    }

    #[test]
    fn labelled_blocks() {
        check(
            r#"
service "web" "v1" { port = 1 }      => {"service": {"web": {"v1": {"port": 1}}}}
resource aws_instance { }            => {"resource": {"aws_instance": {}}}
s "a" { x = 1 }⏎s "b" { x = 2 }      => {"s": [{"a": {"x": 1}}, {"b": {"x": 2}}]}
a "b" = {}                           => 1:7 expected '{' after the labels of block "a"
"#,
        );
    }

    #[test]
    fn repeated_keys() {
        // The last case: a list literal is one value, not a collection of repeats, so an object after it replaces it.
        check(
            r#"
s { id = 1 }⏎s = { id = 2 } s { id = 3 }    => {"s": [{"id": 1}, {"id": 2}, {"id": 3}]}
a = 1⏎a = 2                                 => {"a": 2}
o { k = 1  k = 2 }                          => {"o": {"k": 2}}
a { x = 1 }⏎a { y = 2 }⏎a = "s"             => {"a": "s"}
a = 1⏎a { x = 1 }                           => {"a": {"x": 1}}
a = [{ x = 1 }]⏎a { y = 2 }                 => {"a": {"y": 2}}
"#,
        );
    }

    #[test]
    fn heredocs() {
        // The third case: as in HCL1, `<<-` leaves the text alone unless every line has the terminator's indent.
        check(
            r#"
s = <<EOF⏎hello⏎  "world"⏎EOF⏎       => {"s": "hello\n  \"world\"\n"}
s = <<-EOT⏎    a⏎      b⏎    EOT⏎t = 1  => {"s": "a\n  b\n", "t": 1}
s = <<-EOT⏎    a⏎⏎    b⏎    EOT      => {"s": "    a\n\n    b\n"}
s = <<EOF⏎EOF                        => {"s": ""}
l = [<<A⏎x⏎A⏎, 2]                    => {"l": ["x\n", 2]}
s = <<EOF⏎no end⏎EOFX⏎               => 1:5 unterminated heredoc
s = <<EOF x⏎                         => 1:10 expected a newline after the heredoc anchor
"#,
        );
        assert_eq!(
            parse("s = <<EOF\r\nx\r\nEOF\r\n").unwrap(),
            json!({"s": "x\r\n"})
        );
    }

    #[test]
    fn comments() {
        check(
            r##"
# hash⏎// slashes⏎/* block⏎ * spanning */ a /* inline */ = 1 // trailing⏎b = [ # in list⏎ 2, /* x */ 3 ]⏎ => {"a": 1, "b": [2, 3]}
a = "# not // a /* comment"          => {"a": "# not // a /* comment"}
a = 1⏎  /* never closed              => 2:3 unterminated comment
"##,
        );
    }

    #[test]
    fn strings() {
        check(
            r#"
s = "q\" b\\ n\n t\t r\r \u00e9 \U0001F600 \x41 \101 \a" => {"s": "q\" b\\ n\n t\t r\r é 😀 A A \u0007"}
s = "${lookup(var.m, "k")} and \"x\""                    => {"s": "${lookup(var.m, \"k\")} and \"x\""}
s = "a\qb"                           => 1:7 invalid escape sequence
s = "\ud800"                         => 1:6 escape is not a Unicode scalar value
s = "\xff"                           => 1:6 byte escape above \x7f is not valid UTF-8; use \u
s = "a⏎b"                            => 1:5 unterminated string
"#,
        );
    }

    #[test]
    fn numbers() {
        let v =
            parse("a = -5  b = 1.5  c = -0.25  d = 1e3  e = 2.5E-2  f = 0x1F  g = -0x10").unwrap();
        assert_eq!(
            v,
            json!({"a": -5, "b": 1.5, "c": -0.25, "d": 1000.0, "e": 0.025, "f": 31, "g": -16})
        );
        assert!(v["d"].is_f64() && v["a"].is_i64());
        check(
            r#"
h = 0755  i = .5  j = 0  k = 1.      => {"h": 493, "i": 0.5, "j": 0, "k": 1.0}
m = -9223372036854775808             => {"m": -9223372036854775808}
a = 9223372036854775808              => 1:5 integer out of range
a = 089                              => 1:5 invalid octal number
a = 1e999                            => 1:5 number out of range
a = 0x                               => 1:5 invalid hexadecimal number
a = 1e+                              => 1:5 invalid number: the exponent has no digits
"#,
        );
    }

    #[test]
    fn lists() {
        check(
            r#"
l = [⏎  1,⏎  "two",⏎  true,⏎  [3],⏎  { x = 4 },⏎]  => {"l": [1, "two", true, [3], {"x": 4}]}
e = []  s = [,1,,2,]                 => {"e": [], "s": [1, 2]}
u = [{ a = 1 }, { b { c = 3 } }]     => {"u": [{"a": 1}, {"b": {"c": 3}}]}
x = 1⏎	b = [1 2]                    => 2:9 expected ',' or ']' in list, found '2'
a = [1,                              => 1:5 unclosed '['
"#,
        );
    }

    #[test]
    fn json_text() {
        check(
            r#"
 {"a": [1, {"b": null}]}             => {"a": [1, {"b": null}]}
{⏎"a": }                             => 2:6 expected value
{{}                                  => 1:2 key must be a string
"#,
        );
    }

    #[test]
    fn error_positions() {
        check(
            r#"
ports { http 8500 }                  => 1:14 expected '=' or '{' after key "http"
ports                                => 1:6 expected '=' or '{' after key "ports"
a = 1⏎}                              => 2:1 unexpected '}'
a {⏎  b = 1⏎                         => 1:3 unclosed '{'
a = foo                              => 1:5 expected a value, found "foo" (strings must be quoted)
a =                                  => 1:4 expected a value, found end of input
a = 1,, b = 2                        => 1:7 unexpected ','
a = 1 <b                             => 1:7 unexpected '<'
a = <b                               => 1:5 expected a value, found '<'
"#,
        );
    }

    #[test]
    fn depth_limit() {
        let list = |n: usize| format!("a = {}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&list(64)).is_ok());
        assert_eq!(err(&list(65)), "1:69 nesting deeper than 64 levels");
        assert!(parse(&list(100_000)).is_err());
        let blocks = |n: usize| format!("{}{}", "a { ".repeat(n), "}".repeat(n));
        assert!(parse(&blocks(64)).is_ok() && parse(&blocks(65)).is_err());
        let labels = |n: usize| format!("a{} {{}}", " b".repeat(n));
        assert!(parse(&labels(63)).is_ok() && parse(&labels(100_000)).is_err());
        let json = |n: usize| format!("{{\"a\": {}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&json(64)).is_ok());
        assert_eq!(err(&json(65)), "1:1 nesting deeper than 64 levels");
    }

    /// Renders an object as HCL, varying separators and block forms with `style` so the parser sees many shapes.
    fn render(map: &Map<String, Value>, style: usize, out: &mut String) {
        const SEPARATORS: [&str; 5] = ["\n", ", ", "  ", " # note\n", " /* c */ "];
        for (i, (key, value)) in map.iter().enumerate() {
            if i > 0 {
                out.push_str(SEPARATORS[(style + i) % SEPARATORS.len()]);
            }
            let bare = key.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
            out.push_str(&if bare { key.clone() } else { quote(key) });
            match value {
                Value::Object(inner) if (style + i) & 1 == 0 => {
                    out.push_str(" {\n");
                    render(inner, style + 1, out);
                    out.push_str("\n}");
                }
                _ => {
                    out.push_str(" = ");
                    render_value(value, style + 1, out);
                }
            }
        }
    }

    fn render_value(value: &Value, style: usize, out: &mut String) {
        match value {
            Value::String(s) => out.push_str(&quote(s)),
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    render_value(item, style, out);
                    out.push_str(",\n");
                }
                out.push(']');
            }
            Value::Object(inner) => {
                out.push_str("{ ");
                render(inner, style, out);
                out.push_str(" }");
            }
            other => out.push_str(&other.to_string()),
        }
    }

    fn quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                // `${` would start an interpolation, which HCL1 copies verbatim; an escaped `$` does not.
                '$' => out.push_str("\\u0024"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    fn object(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Map<String, Value>> {
        let key = prop_oneof!["[a-zA-Z_][a-zA-Z0-9_.-]{0,6}", any::<String>()];
        prop::collection::btree_map(key, inner, 0..5).prop_map(|m| m.into_iter().collect())
    }

    fn document() -> impl Strategy<Value = Map<String, Value>> {
        let leaf = prop_oneof![
            scalar(),
            prop::collection::vec(scalar(), 0..4).prop_map(Value::Array)
        ];
        object(leaf.prop_recursive(4, 40, 5, |inner| object(inner).prop_map(Value::Object)))
    }

    proptest! {
        #[test]
        fn never_panics(text in prop_oneof![any::<String>(), "[a-z0-9 \\n{}\\[\\]=,\"#/*<>\\\\$.xe-]{0,80}"]) {
            if let Err(e) = parse(&text) {
                prop_assert!(e.line >= 1 && e.column >= 1);
            }
        }

        /// Truncated and one-character-short copies of a real config reach error paths deep inside objects.
        #[test]
        fn mangled_config_never_panics(cut in 0_usize..2000, drop in 0_usize..2000) {
            let kept = AGENT_CONFIG.chars().take(cut).enumerate().filter(|&(i, _)| i != drop);
            let _ = parse(&kept.map(|(_, c)| c).collect::<String>());
        }

        #[test]
        fn round_trips(map in document(), style in 0_usize..10) {
            let mut text = String::new();
            render(&map, style, &mut text);
            prop_assert_eq!(parse(&text), Ok(Value::Object(map)), "{}", text);
        }
    }
}
