//! Sending this agent's network coordinate to the servers, as Consul's agents do: not more often than
//! `sync_coordinate_interval_min`, and spaced so that the whole cluster sends about `sync_coordinate_rate_target`
//! updates per second, with some jitter so agents do not send together. The coordinate comes from gossip's
//! round-trip probes; an agent without gossip (dev mode) sends the origin, so that it still has one.

use crate::Agent;
use std::time::Duration;
use weft_state::Command;
use weft_types::coordinate::Coordinate;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordinateSync {
    pub interval_min: Duration,
    pub rate_target: f64,
}

impl Default for CoordinateSync {
    fn default() -> CoordinateSync {
        CoordinateSync {
            interval_min: Duration::from_secs(15),
            rate_target: 64.0,
        }
    }
}

impl CoordinateSync {
    /// The interval for a cluster of `nodes`, before jitter.
    pub fn interval(&self, nodes: usize) -> Duration {
        let spread =
            Duration::try_from_secs_f64(nodes as f64 / self.rate_target).unwrap_or(Duration::MAX);
        // Never more than one update a second from one agent, whatever the configuration says.
        self.interval_min.max(spread).max(Duration::from_secs(1))
    }
}

impl Agent {
    /// Runs forever: sends this node's coordinate whenever it moved, at the pace above.
    pub async fn sync_coordinates(self, sync: CoordinateSync) {
        let node = self.config().node_name.clone();
        let mut sent: Option<Coordinate> = None;
        // The first update soon after start, so a new node has a coordinate within seconds.
        let mut wait = Duration::from_secs(1).min(sync.interval_min);
        loop {
            tokio::time::sleep(wait).await;
            let nodes = self.server().read().nodes().count();
            let interval = sync.interval(nodes);
            // Up to as much again, at random (Consul's stagger), so agents started together drift apart.
            wait = interval + interval.mul_f64(rand::random::<f64>());
            let coord = self
                .server()
                .gossip()
                .map_or_else(Coordinate::default, |g| g.coordinate());
            let stored = self.server().read().coordinate(&node).cloned();
            if sent.as_ref() == Some(&coord) && stored.as_ref() == Some(&coord) {
                continue;
            }
            match self
                .server()
                .write(Command::CoordinatesSet(vec![(node.clone(), coord.clone())]))
                .await
            {
                Ok(_) => sent = Some(coord),
                Err(e) => {
                    tracing::debug!(error = %e, "could not send this node's coordinate; trying again later")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_grows_with_the_cluster() {
        let s = CoordinateSync::default();
        assert_eq!(s.interval(10), Duration::from_secs(15));
        assert_eq!(s.interval(6400), Duration::from_secs(100));
    }
}
