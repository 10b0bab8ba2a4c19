//! Health as the dashboard shows it: a tally of check statuses and the colour it earns (Consul's rule: the worst
//! check wins; no checks at all is "empty", drawn grey).

use weft_types::{CheckStatus, HealthCheck};

/// A summary status, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Health {
    #[default]
    Empty,
    Passing,
    Warning,
    Critical,
}

impl Health {
    /// The CSS modifier and the filter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Empty => "empty",
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Empty => "No checks",
            Health::Passing => "Passing",
            Health::Warning => "Warning",
            Health::Critical => "Critical",
        }
    }

    pub fn of(status: CheckStatus) -> Health {
        match status {
            CheckStatus::Passing => Health::Passing,
            CheckStatus::Warning => Health::Warning,
            CheckStatus::Critical => Health::Critical,
        }
    }
}

/// Counts of checks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passing: usize,
    pub warning: usize,
    pub critical: usize,
}

impl Tally {
    pub fn add(&mut self, status: CheckStatus) {
        match status {
            CheckStatus::Passing => self.passing += 1,
            CheckStatus::Warning => self.warning += 1,
            CheckStatus::Critical => self.critical += 1,
        }
    }

    pub fn of<'a>(checks: impl IntoIterator<Item = &'a HealthCheck>) -> Tally {
        let mut t = Tally::default();
        for c in checks {
            t.add(c.status);
        }
        t
    }

    pub fn merge(&mut self, other: Tally) {
        self.passing += other.passing;
        self.warning += other.warning;
        self.critical += other.critical;
    }

    pub fn health(&self) -> Health {
        if self.critical > 0 {
            Health::Critical
        } else if self.warning > 0 {
            Health::Warning
        } else if self.passing > 0 {
            Health::Passing
        } else {
            Health::Empty
        }
    }

    /// "3 passing, 1 critical", or "No checks".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            (self.passing, "passing"),
            (self.warning, "warning"),
            (self.critical, "critical"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "No checks".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_check_wins() {
        let mut t = Tally::default();
        assert_eq!(t.health(), Health::Empty);
        assert_eq!(t.summary(), "No checks");
        t.add(CheckStatus::Passing);
        t.add(CheckStatus::Passing);
        assert_eq!(t.health(), Health::Passing);
        t.add(CheckStatus::Warning);
        assert_eq!(t.health(), Health::Warning);
        t.add(CheckStatus::Critical);
        assert_eq!(t.health(), Health::Critical);
        assert_eq!(t.summary(), "2 passing, 1 warning, 1 critical");
    }
}
