//! User events (`/v1/event/fire`): spread to every member as foca custom broadcasts, each delivered once per agent
//! (deduplicated by ID) to the agent above, which filters and keeps them. A Lamport clock orders them (`LTime`).

use foca::{BroadcastHandler, Invalidates};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use weft_types::event::UserEvent;

/// IDs remembered for deduplication: far more than can be in flight at once.
const REMEMBERED: usize = 4096;
/// Events waiting for the agent; more are dropped (and counted) rather than queued without bound.
pub(crate) const DELIVERY_BACKLOG: usize = 256;

/// What the handler and the runner share: the IDs seen and the Lamport clock.
#[derive(Default)]
pub(crate) struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
    pub(crate) ltime: u64,
    pub(crate) dropped: u64,
}

impl Seen {
    /// Records `id`; false when it was seen already.
    fn first_sight(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

/// A broadcast's identity: the event's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey(String);

impl Invalidates for EventKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a user event: {0}")]
pub struct NotAnEvent(String);

pub(crate) struct EventHandler {
    pub(crate) seen: Arc<Mutex<Seen>>,
    pub(crate) deliver: mpsc::Sender<UserEvent>,
}

impl EventHandler {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T> BroadcastHandler<T> for EventHandler {
    type Key = EventKey;
    type Error = NotAnEvent;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&T>,
    ) -> Result<Option<EventKey>, NotAnEvent> {
        let event: UserEvent =
            serde_json::from_slice(data).map_err(|e| NotAnEvent(e.to_string()))?;
        {
            let mut seen = self.seen();
            if !seen.first_sight(&event.id) {
                return Ok(None);
            }
            seen.ltime = seen.ltime.max(event.ltime);
            if self.deliver.try_send(event.clone()).is_err() {
                seen.dropped += 1;
            }
        }
        Ok(Some(EventKey(event.id)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(id: &str, ltime: u64) -> Vec<u8> {
        serde_json::to_vec(&UserEvent {
            id: id.into(),
            name: "deploy".into(),
            ltime,
            ..UserEvent::default()
        })
        .unwrap()
    }

    #[test]
    fn each_event_is_delivered_once_and_advances_the_clock() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut h = EventHandler {
            seen: Arc::default(),
            deliver: tx,
        };
        let r = <EventHandler as BroadcastHandler<()>>::receive_item(&mut h, &event("a", 7), None);
        assert_eq!(r.unwrap(), Some(EventKey("a".into())));
        let again =
            <EventHandler as BroadcastHandler<()>>::receive_item(&mut h, &event("a", 7), None);
        assert_eq!(
            again.unwrap(),
            None,
            "a duplicate is neither delivered nor spread again"
        );
        assert_eq!(rx.try_recv().unwrap().id, "a");
        assert!(rx.try_recv().is_err());
        assert_eq!(h.seen().ltime, 7);
        assert!(
            <EventHandler as BroadcastHandler<()>>::receive_item(&mut h, b"junk", None).is_err()
        );
    }
}
