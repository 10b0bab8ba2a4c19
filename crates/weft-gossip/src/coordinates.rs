//! Round-trip probes for network coordinates, over the gossip socket (and its encryption): every probe period
//! this agent pings one random alive member; the member answers at once with its own coordinate, and the
//! measured round trip with that coordinate moves this agent's [`Vivaldi`] client, as Serf does with the
//! coordinates its acks carry. foca's probes carry no payload of ours, so these are separate, small frames.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use weft_types::coordinate::{Coordinate, Vivaldi, MAX_RTT};

/// Probes without an answer are forgotten after this long, and at most this many wait at once.
const PENDING_FOR: Duration = MAX_RTT;
const MAX_PENDING: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ping {
    pub seq: u64,
    /// The pinging member: the pong goes to its gossip address, not to wherever the packet seems to come from.
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Pong {
    pub seq: u64,
    /// The answering member's name, so the sample is filed under it.
    pub name: String,
    pub coord: Coordinate,
}

/// Pongs answered per second at most: a ping is small and a pong larger, so answering without limit would let
/// spoofed pings turn this agent into a source of traffic towards members.
const PONGS_PER_SECOND: u32 = 50;

/// The last coordinate each member answered with (Serf's coordinate cache): what distances to other members, and
/// in the WAN pool to other datacenters' servers, are estimated from. Shared with the [`crate::Gossip`] handle.
pub type PeerCoordinates = std::sync::Arc<std::sync::Mutex<HashMap<String, Coordinate>>>;

/// This agent's probes in flight and its coordinate.
pub(crate) struct Probes {
    vivaldi: Vivaldi,
    /// Members' coordinates as their pongs carried them; entries of forgotten members are dropped by the runner.
    pub peers: PeerCoordinates,
    /// seq → (member pinged, when).
    pending: HashMap<u64, (String, Instant)>,
    /// Samples refused (bad coordinate, RTT out of range), for operators.
    pub refused: u64,
    /// Pongs sent in the current second, and when that second began.
    pongs: (u32, Instant),
}

impl Probes {
    pub fn new() -> Probes {
        Probes {
            vivaldi: Vivaldi::new(),
            peers: PeerCoordinates::default(),
            pending: HashMap::new(),
            refused: 0,
            pongs: (0, Instant::now()),
        }
    }

    /// Probes whose answers are remembered in `peers`.
    pub fn with_peers(peers: PeerCoordinates) -> Probes {
        Probes {
            peers,
            ..Probes::new()
        }
    }

    pub fn coordinate(&self) -> &Coordinate {
        self.vivaldi.coordinate()
    }

    /// A ping for `member`, remembered until its pong or [`PENDING_FOR`].
    pub fn ping(&mut self, member: &str, local: &str) -> Ping {
        let now = Instant::now();
        self.pending
            .retain(|_, (_, at)| now.duration_since(*at) < PENDING_FOR);
        if self.pending.len() >= MAX_PENDING {
            if let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(s, _)| *s)
            {
                self.pending.remove(&oldest);
            }
        }
        // Random, so that without a gossip key a forged pong cannot guess which probe it would answer.
        let seq = rand::random::<u64>();
        self.pending.insert(seq, (member.to_string(), now));
        Ping {
            seq,
            name: local.to_string(),
        }
    }

    /// The answer to a ping: our coordinate; `None` once this second's pongs are spent.
    pub fn pong(&mut self, ping: &Ping, local: &str) -> Option<Pong> {
        let (sent, since) = &mut self.pongs;
        if since.elapsed() >= Duration::from_secs(1) {
            *sent = 0;
            *since = Instant::now();
        }
        if *sent >= PONGS_PER_SECOND {
            return None;
        }
        *sent += 1;
        Some(Pong {
            seq: ping.seq,
            name: local.to_string(),
            coord: self.coordinate().clone(),
        })
    }

    /// Takes an answer: a pong for a ping we sent, from the member we sent it to, moves the coordinate.
    /// Anything else (unknown, late, from someone else, a bad coordinate) is dropped.
    pub fn answered(&mut self, pong: Pong, random: &mut dyn FnMut() -> f64) -> bool {
        // A pong naming another member than the one pinged leaves the probe waiting for the real answer.
        if self
            .pending
            .get(&pong.seq)
            .is_none_or(|(member, _)| *member != pong.name)
        {
            self.refused += 1;
            return false;
        }
        let Some((member, sent)) = self.pending.remove(&pong.seq) else {
            return false;
        };
        let rtt = sent.elapsed();
        match self.vivaldi.update(&member, &pong.coord, rtt, random) {
            Ok(_) => {
                self.peers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(member, pong.coord);
                true
            }
            Err(why) => {
                self.refused += 1;
                tracing::debug!(%member, ?rtt, why, "coordinate sample refused");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_answers_to_our_own_pings_move_the_coordinate() {
        let mut a = Probes::new();
        let mut b = Probes::new();
        let mut random = || 0.3;
        let ping = a.ping("b", "a");
        std::thread::sleep(Duration::from_millis(3));
        let pong = b.pong(&ping, "b").unwrap();
        assert!(a.answered(pong, &mut random));
        assert_ne!(a.coordinate(), &Coordinate::default());
        assert_eq!(
            a.peers.lock().unwrap().get("b"),
            Some(b.coordinate()),
            "the answering member's coordinate is remembered"
        );
        // A replay, a pong from someone else, an unknown sequence number: dropped.
        let replay = b.pong(&ping, "b").unwrap();
        assert!(!a.answered(replay, &mut random));
        let ping = a.ping("b", "a");
        assert!(!a.answered(b.pong(&ping, "mallory").unwrap(), &mut random));
        // ... and the real answer still counts.
        assert!(a.answered(b.pong(&ping, "b").unwrap(), &mut random));
        assert!(!a.answered(
            Pong {
                seq: 999,
                name: "b".into(),
                coord: Coordinate::default()
            },
            &mut random
        ));
        // Pongs are rate-limited.
        let answered = (0..200).filter(|_| b.pong(&ping, "b").is_some()).count();
        assert!(answered <= PONGS_PER_SECOND as usize);
        // Pending pings are bounded.
        for _ in 0..1000 {
            a.ping("b", "a");
        }
        assert!(a.pending.len() <= MAX_PENDING);
    }
}
