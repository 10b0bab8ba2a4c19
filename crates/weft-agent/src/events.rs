//! The user events this agent has received and kept (`/v1/event/list`): the most recent 256, as Consul's agent
//! keeps, with an index that moves on every new one for blocking queries. Only events whose filters match this node
//! are kept: the node name, one of its services' names and, with a service filter, one of those services' tags.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;
use weft_types::event::UserEvent;

/// How many events an agent keeps (Consul's `eventBuf`).
pub const KEPT_EVENTS: usize = 256;

pub struct EventBuffer {
    events: Mutex<VecDeque<UserEvent>>,
    /// One more than the events kept so far: the blocking index of `/v1/event/list` (never 0, which means "do not
    /// block", and different for an empty buffer and one event).
    index: watch::Sender<u64>,
}

impl Default for EventBuffer {
    fn default() -> Self {
        EventBuffer {
            events: Mutex::default(),
            index: watch::channel(1).0,
        }
    }
}

impl EventBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<UserEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, event: UserEvent) {
        {
            let mut events = self.lock();
            events.push_back(event);
            while events.len() > KEPT_EVENTS {
                events.pop_front();
            }
        }
        self.index.send_modify(|i| *i += 1);
    }

    /// The kept events, oldest first; `name` keeps only those of that name.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.lock()
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }

    pub fn index(&self) -> u64 {
        *self.index.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index.subscribe()
    }
}

/// A filter as a whole-string-anywhere regular expression (Go's `regexp.MatchString`); an empty one matches all.
fn matches(filter: &str, text: &str) -> bool {
    filter.is_empty() || regex::Regex::new(filter).is_ok_and(|r| r.is_match(text))
}

/// Checks that an event's filters are regular expressions (at fire time, so a bad one is a 400, not silence).
pub fn check_filters(event: &UserEvent) -> Result<(), String> {
    for (what, filter) in [
        ("node", &event.node_filter),
        ("service", &event.service_filter),
        ("tag", &event.tag_filter),
    ] {
        if !filter.is_empty() {
            regex::Regex::new(filter).map_err(|e| format!("Invalid {what} filter: {e}"))?;
        }
    }
    if !event.tag_filter.is_empty() && event.service_filter.is_empty() {
        return Err("cannot provide tag filter without service filter".into());
    }
    Ok(())
}

/// Whether a node named `node` with these services (name, tags) takes the event.
pub fn applies_to(event: &UserEvent, node: &str, services: &[(String, Vec<String>)]) -> bool {
    if !matches(&event.node_filter, node) {
        return false;
    }
    if event.service_filter.is_empty() {
        return true;
    }
    services.iter().any(|(name, tags)| {
        matches(&event.service_filter, name)
            && (event.tag_filter.is_empty() || tags.iter().any(|t| matches(&event.tag_filter, t)))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(node: &str, service: &str, tag: &str) -> UserEvent {
        UserEvent {
            name: "deploy".into(),
            node_filter: node.into(),
            service_filter: service.into(),
            tag_filter: tag.into(),
            ..UserEvent::default()
        }
    }

    #[test]
    fn filters_select_nodes_by_name_service_and_tag() {
        let services = vec![("web".to_string(), vec!["v2".to_string()])];
        assert!(applies_to(&event("", "", ""), "n1", &services));
        assert!(applies_to(&event("^n", "", ""), "n1", &services));
        assert!(!applies_to(&event("^db", "", ""), "n1", &services));
        assert!(applies_to(&event("", "we", ""), "n1", &services));
        assert!(!applies_to(&event("", "api", ""), "n1", &services));
        assert!(applies_to(&event("", "web", "^v2$"), "n1", &services));
        assert!(!applies_to(&event("", "web", "^v1$"), "n1", &services));
        assert!(check_filters(&event("(", "", ""))
            .unwrap_err()
            .contains("Invalid node filter"));
        assert!(
            check_filters(&event("", "", "v1")).is_err(),
            "a tag filter needs a service filter"
        );
    }

    #[test]
    fn the_buffer_keeps_the_latest_and_counts_every_one() {
        let b = EventBuffer::default();
        for i in 0..300 {
            let mut e = event("", "", "");
            e.id = i.to_string();
            if i % 2 == 0 {
                e.name = "other".into();
            }
            b.push(e);
        }
        assert_eq!(b.index(), 301);
        let all = b.list(None);
        assert_eq!(all.len(), KEPT_EVENTS);
        assert_eq!(all[0].id, "44", "oldest first");
        assert_eq!(b.list(Some("deploy")).len(), KEPT_EVENTS / 2);
    }
}
