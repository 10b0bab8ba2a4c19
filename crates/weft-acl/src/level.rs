//! Access levels as rules grant them, and the access a request needs.

use std::fmt;

/// What one rule grants. Ordered by precedence when rules for the same name merge: deny beats write beats list
/// beats read (Consul's `takesPrecedenceOver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Read,
    List,
    Write,
    Deny,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "read" => Some(Level::Read),
            "list" => Some(Level::List),
            "write" => Some(Level::Write),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
            Level::Deny => "deny",
        }
    }

    /// The level that wins when two policies both have a rule for the same name.
    pub fn merge(self, other: Level) -> Level {
        self.max(other)
    }

    /// Whether this level grants `need`.
    pub fn grants(self, need: Need) -> bool {
        match self {
            Level::Deny => false,
            Level::Write => true,
            Level::List => matches!(need, Need::Read | Need::List),
            Level::Read => need == Need::Read,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    Read,
    /// Listing keys under a prefix (`key:list`, enforced only with `acl.enable_key_list_policy`).
    List,
    Write,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Read => "read",
            Need::List => "list",
            Need::Write => "write",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn precedence_is_deny_write_list_read() {
        assert_eq!(Level::Read.merge(Level::Write), Level::Write);
        assert_eq!(Level::Write.merge(Level::Deny), Level::Deny);
        assert_eq!(Level::List.merge(Level::Read), Level::List);
        assert_eq!(Level::Write.merge(Level::List), Level::Write);
    }

    #[test]
    fn write_implies_list_and_read() {
        assert!(Level::Write.grants(Need::Read));
        assert!(Level::Write.grants(Need::List));
        assert!(Level::List.grants(Need::Read));
        assert!(!Level::List.grants(Need::Write));
        assert!(!Level::Read.grants(Need::List));
        assert!(!Level::Deny.grants(Need::Read));
    }
}
