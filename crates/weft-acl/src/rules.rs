//! One policy's rules, read from Consul's rule language in HCL or JSON (`key_prefix "app/" { policy = "write" }`,
//! `{"key_prefix": {"app/": {"policy": "write"}}}`), checked key by key. A problem is reported with the line it is
//! on, so that a 400 tells the operator where to look.

use crate::level::Level;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Resources whose rules name instances (`service "web"`, `key_prefix "app/"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Named {
    Agent,
    Event,
    Key,
    Node,
    Query,
    Service,
    Session,
    Identity,
    /// Intentions towards a destination service: the `intentions` attribute of service rules, or read where a
    /// service rule grants read or write and says nothing of intentions (as Consul implies it).
    Intention,
}

impl Named {
    pub const ALL: [Named; 9] = [
        Named::Agent,
        Named::Event,
        Named::Key,
        Named::Node,
        Named::Query,
        Named::Service,
        Named::Session,
        Named::Identity,
        Named::Intention,
    ];

    /// The word in Consul's permission texts (`service:write`, `intentions:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Named::Agent => "agent",
            Named::Event => "event",
            Named::Key => "key",
            Named::Node => "node",
            Named::Query => "query",
            Named::Service => "service",
            Named::Session => "session",
            Named::Identity => "identity",
            Named::Intention => "intentions",
        }
    }

    /// The rule keyword that sets it (`intentions` live inside service rules).
    fn from_keyword(word: &str) -> Option<Named> {
        Some(match word {
            "agent" => Named::Agent,
            "event" => Named::Event,
            "key" => Named::Key,
            "node" => Named::Node,
            "query" => Named::Query,
            "service" => Named::Service,
            "session" => Named::Session,
            "identity" => Named::Identity,
            _ => return None,
        })
    }
}

/// Resources without instances (`operator = "read"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Whole {
    Acl,
    Operator,
    Keyring,
    Mesh,
    Peering,
}

impl Whole {
    pub const ALL: [Whole; 5] = [
        Whole::Acl,
        Whole::Operator,
        Whole::Keyring,
        Whole::Mesh,
        Whole::Peering,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Whole::Acl => "acl",
            Whole::Operator => "operator",
            Whole::Keyring => "keyring",
            Whole::Mesh => "mesh",
            Whole::Peering => "peering",
        }
    }

    fn from_keyword(word: &str) -> Option<Whole> {
        Whole::ALL.into_iter().find(|w| w.as_str() == word)
    }
}

/// Up to this many prefix rules, [`Segments::longest_prefix`] scans them rather than looking prefixes up.
const SCAN_UP_TO: usize = 8;

/// Exact and prefix rules for one named resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Segments {
    pub(crate) exact: BTreeMap<String, Level>,
    pub(crate) prefix: BTreeMap<String, Level>,
}

impl Segments {
    /// The level that decides for `name`: the exact rule, else the longest matching prefix.
    pub(crate) fn decide(&self, name: &str) -> Option<Level> {
        self.exact
            .get(name)
            .copied()
            .or_else(|| self.longest_prefix(name))
    }

    /// The longest prefix rule covering `name`. A few rules (the common case: `key_prefix ""` and a handful) are
    /// scanned; with more, the at most name.len() + 1 prefixes of `name` are each looked up. Measured with
    /// callgrind on a KV read, the lookups cost about 600 instructions a request where the scan costs a tenth.
    fn longest_prefix(&self, name: &str) -> Option<Level> {
        if self.prefix.len() <= SCAN_UP_TO {
            return self
                .prefix
                .iter()
                .filter(|(p, _)| name.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, level)| *level);
        }
        (0..=name.len())
            .rev()
            .filter(|end| name.is_char_boundary(*end))
            .find_map(|end| self.prefix.get(&name[..end]).copied())
    }

    fn merge(&mut self, other: &Segments) {
        for (name, level) in &other.exact {
            merge_into(&mut self.exact, name, *level);
        }
        for (name, level) in &other.prefix {
            merge_into(&mut self.prefix, name, *level);
        }
    }
}

fn merge_into(map: &mut BTreeMap<String, Level>, name: &str, level: Level) {
    map.entry(name.to_string())
        .and_modify(|l| *l = l.merge(level))
        .or_insert(level);
}

/// The rules of one policy (or of several, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub(crate) named: BTreeMap<Named, Segments>,
    pub(crate) whole: BTreeMap<Whole, Level>,
}

/// Why a policy's rules were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// 1-based, when the problem could be placed.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Rules {
    /// Reads rules in HCL or JSON (text starting with `{` is JSON). Empty text is a policy with no rules.
    pub fn parse(text: &str) -> Result<Rules, RuleError> {
        if text.trim().is_empty() {
            return Ok(Rules::default());
        }
        let value = weft_types::hcl::parse(text).map_err(|e| RuleError {
            line: Some(e.line),
            message: format!("column {}: {}", e.column, e.message),
        })?;
        let Value::Object(top) = value else {
            return Err(RuleError {
                line: None,
                message: "rules must be an object".into(),
            });
        };
        let mut rules = Rules::default();
        for (key, value) in &top {
            rules.read_item(text, key, value)?;
        }
        Ok(rules)
    }

    fn read_item(&mut self, text: &str, key: &str, value: &Value) -> Result<(), RuleError> {
        if let Some(whole) = Whole::from_keyword(key) {
            let level = match value {
                Value::String(s) => Level::parse(s).filter(|l| *l != Level::List),
                _ => None,
            };
            let level = level.ok_or_else(|| RuleError {
                line: line_of(text, &[key]),
                message: format!(
                    "{key} = {value}: the policy must be \"read\", \"write\" or \"deny\""
                ),
            })?;
            self.set_whole(whole, level);
            return Ok(());
        }
        let (word, prefix) = match key.strip_suffix("_prefix") {
            Some(word) => (word, true),
            None => (key, false),
        };
        let Some(kind) = Named::from_keyword(word) else {
            return Err(RuleError {
                line: line_of(text, &[key]),
                message: format!("unknown rule {key:?}"),
            });
        };
        // One block gives an object of labels; repeated blocks give a list of such objects.
        let groups: Vec<&Map<String, Value>> = match value {
            Value::Object(map) => vec![map],
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            _ => Vec::new(),
        };
        if groups.is_empty() {
            return Err(RuleError {
                line: line_of(text, &[key]),
                message: format!("{key} needs a name: {key} \"NAME\" {{ policy = \"read\" }}"),
            });
        }
        for group in groups {
            for (name, block) in group {
                self.read_block(text, key, kind, prefix, name, block)?;
            }
        }
        Ok(())
    }

    fn read_block(
        &mut self,
        text: &str,
        key: &str,
        kind: Named,
        prefix: bool,
        name: &str,
        block: &Value,
    ) -> Result<(), RuleError> {
        let quoted = format!("{name:?}");
        let here = |needle: &str| line_of(text, &[key, &quoted, needle]);
        let fail = |needle: &str, message: String| RuleError {
            line: here(needle),
            message: format!("{key} {quoted}: {message}"),
        };
        let Value::Object(attrs) = block else {
            return Err(fail(
                &quoted,
                format!("expected a block {{ policy = \"read\" }}, found {block}"),
            ));
        };
        let mut policy = None;
        let mut intentions = None;
        for (attr, value) in attrs {
            let text_value = value.as_str();
            match attr.as_str() {
                "policy" => {
                    let allow_list = kind == Named::Key;
                    policy = Some(
                        text_value
                            .and_then(Level::parse)
                            .filter(|l| allow_list || *l != Level::List)
                            .ok_or_else(|| {
                                fail(
                                    "policy",
                                    format!(
                                        "policy = {value} is not one of \"read\", \"write\", \"deny\"{}",
                                        if allow_list { ", \"list\"" } else { "" }
                                    ),
                                )
                            })?,
                    );
                }
                "intentions" if kind == Named::Service => {
                    intentions = Some(
                        text_value
                            .and_then(Level::parse)
                            .filter(|l| *l != Level::List)
                            .ok_or_else(|| {
                                fail(
                                    "intentions",
                                    format!(
                                        "intentions = {value} is not one of \"read\", \"write\", \"deny\""
                                    ),
                                )
                            })?,
                    );
                }
                other => return Err(fail(other, format!("unknown attribute {other:?}"))),
            }
        }
        let policy = policy.ok_or_else(|| fail(&quoted, "a policy is required".into()))?;
        self.set_named(kind, name, prefix, policy);
        if kind == Named::Service {
            // Consul: a service rule that grants read or write implies intentions:read unless it says otherwise.
            let implied = match policy {
                Level::Read | Level::List | Level::Write => Level::Read,
                Level::Deny => Level::Deny,
            };
            self.set_named(
                Named::Intention,
                name,
                prefix,
                intentions.unwrap_or(implied),
            );
        }
        Ok(())
    }

    /// Adds one rule, merging with any rule already there for the same name.
    pub fn set_named(&mut self, kind: Named, name: &str, prefix: bool, level: Level) {
        let segments = self.named.entry(kind).or_default();
        let map = if prefix {
            &mut segments.prefix
        } else {
            &mut segments.exact
        };
        merge_into(map, name, level);
    }

    pub fn set_whole(&mut self, kind: Whole, level: Level) {
        self.whole
            .entry(kind)
            .and_modify(|l| *l = l.merge(level))
            .or_insert(level);
    }

    /// Adds every rule of `other` (deny > write > list > read where both name the same thing).
    pub fn merge(&mut self, other: &Rules) {
        for (kind, segments) in &other.named {
            self.named.entry(*kind).or_default().merge(segments);
        }
        for (kind, level) in &other.whole {
            self.set_whole(*kind, *level);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
            && self
                .named
                .values()
                .all(|s| s.exact.is_empty() && s.prefix.is_empty())
    }

    /// The level an exact or prefix rule sets, if any (before merging with defaults).
    pub(crate) fn named_level(&self, kind: Named, name: &str) -> Option<Level> {
        self.named.get(&kind).and_then(|s| s.decide(name))
    }

    /// The longest prefix rule covering `name` (exact rules ignored): what decides for names below `name`.
    pub(crate) fn named_prefix_level(&self, kind: Named, name: &str) -> Option<Level> {
        self.named.get(&kind)?.longest_prefix(name)
    }

    /// Rules naming `prefix` or a name below it (for writes on a whole subtree).
    pub(crate) fn named_below<'a>(
        &'a self,
        kind: Named,
        prefix: &'a str,
    ) -> impl Iterator<Item = Level> + 'a {
        self.named.get(&kind).into_iter().flat_map(move |s| {
            let below = |m: &'a BTreeMap<String, Level>| {
                m.range(prefix.to_string()..)
                    .take_while(move |(name, _)| name.starts_with(prefix))
                    .map(|(_, level)| *level)
            };
            below(&s.exact).chain(below(&s.prefix))
        })
    }

    pub(crate) fn whole_level(&self, kind: Whole) -> Option<Level> {
        self.whole.get(&kind).copied()
    }
}

/// The line of the first occurrence of the last needle, searching for each needle from where the previous one was
/// found: `["service", "\"web\"", "policy"]` finds the `policy` line of the `service "web"` block. When a needle
/// is not found, the line of the last one that was; `None` when not even the first is.
fn line_of(text: &str, needles: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = None;
    for needle in needles {
        let from = at.unwrap_or(0);
        match lines[from..].iter().position(|l| l.contains(needle)) {
            Some(found) => at = Some(from + found),
            None => break,
        }
    }
    at.map(|line| line + 1)
}

#[cfg(test)]
mod tests;
