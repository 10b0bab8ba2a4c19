//! Network coordinates: each node's position in a Vivaldi space where distance estimates round-trip time, as
//! Serf computes them (Dabek et al., "Vivaldi: A Decentralized Network Coordinate System", 2004, with the height
//! vector of the paper's section 5.4, an error estimate per node, a per-node adjustment term learned from recent
//! samples, and a weak gravity towards the origin so that the whole system does not drift). Units are seconds.
//!
//! [`Coordinate`] is the wire type (`/v1/coordinate/*`, Consul's JSON); [`Vivaldi`] is the client one node runs,
//! fed with measured round trips to peers and the peers' own coordinates.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Serf's defaults.
pub const DIMENSIONS: usize = 8;
const ERROR_MAX: f64 = 1.5;
const CE: f64 = 0.25;
const CC: f64 = 0.25;
const ADJUSTMENT_WINDOW: usize = 20;
const HEIGHT_MIN: f64 = 10.0e-6;
const LATENCY_FILTER: usize = 3;
const GRAVITY_RHO: f64 = 150.0;
/// Below this, a distance or RTT is treated as zero.
const ZERO: f64 = 1.0e-6;
/// Samples longer than this are refused (Serf's limit): a node that far is not a neighbour to place.
pub const MAX_RTT: Duration = Duration::from_secs(10);
/// No component of a coordinate may be larger (in seconds): real round trips are under [`MAX_RTT`], so anything
/// beyond is damage or a forgery, and is refused before it can sort a node first or poison a neighbour.
const MAX_COMPONENT: f64 = 1000.0;
/// Most peers whose recent samples are kept (the latency filter); older ones are forgotten first.
const MAX_FILTERED_PEERS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

impl Default for Coordinate {
    /// The origin, with the largest error: where every node starts.
    fn default() -> Coordinate {
        Coordinate {
            vec: vec![0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }
}

fn magnitude(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

impl Coordinate {
    /// Finite numbers in Weft's dimensionality (what a peer or an API caller sends is checked with this).
    pub fn is_valid(&self) -> bool {
        self.vec.len() == DIMENSIONS
            && self
                .vec
                .iter()
                .chain([&self.error, &self.adjustment, &self.height])
                .all(|x| x.is_finite() && x.abs() <= MAX_COMPONENT)
            && self.height >= 0.0
            && self.error >= 0.0
    }

    /// Distance in the space alone: vector plus both heights.
    fn raw_distance(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// The estimated round trip to `other` (adjustments included when they leave it positive).
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        Duration::try_from_secs_f64(self.distance_secs(other)).unwrap_or(Duration::MAX)
    }

    /// [`Coordinate::distance_to`] in seconds.
    fn distance_secs(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            raw
        }
    }

    /// Moves by `force` along the unit vector from `other` to here (a random direction when both coincide);
    /// the height moves in proportion.
    fn apply_force(&mut self, force: f64, other: &Coordinate, random: &mut dyn FnMut() -> f64) {
        let d = diff(&self.vec, &other.vec);
        let mag = magnitude(&d);
        let unit: Vec<f64> = if mag > ZERO {
            d.iter().map(|x| x / mag).collect()
        } else {
            let r: Vec<f64> = (0..DIMENSIONS).map(|_| random() - 0.5).collect();
            let m = magnitude(&r);
            if m > ZERO {
                r.iter().map(|x| x / m).collect()
            } else {
                let mut first = vec![0.0; DIMENSIONS];
                first[0] = 1.0;
                first
            }
        };
        for (x, u) in self.vec.iter_mut().zip(&unit) {
            *x += u * force;
        }
        if mag > ZERO {
            self.height =
                ((self.height + other.height) * force / mag + self.height).max(HEIGHT_MIN);
        }
    }
}

/// One node's Vivaldi client.
#[derive(Debug, Clone, Default)]
pub struct Vivaldi {
    coord: Coordinate,
    /// The origin, for gravity.
    origin: Coordinate,
    /// Recent `rtt - distance` samples, for the adjustment term.
    adjustments: VecDeque<f64>,
    /// The last few RTTs to each peer: the median is used, so one slow probe does not throw the node.
    latency: HashMap<String, VecDeque<f64>>,
}

impl Vivaldi {
    pub fn new() -> Vivaldi {
        Vivaldi::default()
    }

    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Takes one measured round trip to `peer`, whose coordinate is `theirs`. Invalid coordinates, zero and
    /// over-long RTTs are refused (the coordinate does not move).
    pub fn update(
        &mut self,
        peer: &str,
        theirs: &Coordinate,
        rtt: Duration,
        random: &mut dyn FnMut() -> f64,
    ) -> Result<&Coordinate, &'static str> {
        if !theirs.is_valid() {
            return Err("the peer's coordinate is not valid");
        }
        if rtt > MAX_RTT {
            return Err("round trip out of range");
        }
        let rtt = self.filtered(peer, rtt.as_secs_f64());
        self.update_vivaldi(theirs, rtt, random);
        self.update_adjustment(theirs, rtt);
        self.update_gravity(random);
        if !self.coord.is_valid() {
            // Never publish a broken position: start over from the origin, samples and all, as Serf does.
            *self = Vivaldi::new();
            return Err("the update left an invalid coordinate; reset to the origin");
        }
        Ok(&self.coord)
    }

    fn filtered(&mut self, peer: &str, rtt: f64) -> f64 {
        if !self.latency.contains_key(peer) && self.latency.len() >= MAX_FILTERED_PEERS {
            self.latency.clear();
        }
        let samples = self.latency.entry(peer.to_string()).or_default();
        samples.push_back(rtt);
        if samples.len() > LATENCY_FILTER {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64, random: &mut dyn FnMut() -> f64) {
        let rtt = rtt.max(ZERO);
        let dist = self.coord.distance_secs(other);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO);
        let weight = self.coord.error / total_error;
        self.coord.error =
            (CE * weight * wrongness + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        self.coord.apply_force(force, other, random);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        self.adjustments
            .push_back(rtt - self.coord.raw_distance(other));
        if self.adjustments.len() > ADJUSTMENT_WINDOW {
            self.adjustments.pop_front();
        }
        self.coord.adjustment =
            self.adjustments.iter().sum::<f64>() / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self, random: &mut dyn FnMut() -> f64) {
        let dist = self.origin.distance_secs(&self.coord);
        let force = -(dist / GRAVITY_RHO).powi(2);
        let origin = self.origin.clone();
        self.coord.apply_force(force, &origin, random);
    }
}

/// One node's coordinate as `/v1/coordinate/nodes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateEntry {
    pub node: String,
    pub segment: String,
    pub partition: String,
    pub coord: Coordinate,
}

/// `PUT /v1/coordinate/update`'s body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CoordinateUpdate {
    pub node: String,
    pub segment: String,
    pub coord: Option<Coordinate>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A small deterministic generator, so the test is the same on every run.
    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn nodes_on_a_line_learn_their_distances() {
        // Five nodes 10 ms apart on a line: every node measures its neighbours over many rounds.
        let n = 5;
        let spacing = 0.010;
        let mut nodes: Vec<Vivaldi> = (0..n).map(|_| Vivaldi::new()).collect();
        let mut random = lcg(7);
        for round in 0..2000 {
            let i = round % n;
            let j = (i + 1 + (round / n) % (n - 1)) % n;
            let rtt = Duration::from_secs_f64(spacing * (i as f64 - j as f64).abs());
            let theirs = nodes[j].coordinate().clone();
            nodes[i]
                .update(&format!("n{j}"), &theirs, rtt, &mut random)
                .unwrap();
        }
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let truth = spacing * (i as f64 - j as f64).abs();
                let estimate = nodes[i]
                    .coordinate()
                    .distance_to(nodes[j].coordinate())
                    .as_secs_f64();
                assert!(
                    (estimate - truth).abs() < 0.25 * truth + 0.002,
                    "n{i}-n{j}: estimated {estimate:.4} s, truly {truth:.4} s"
                );
            }
        }
        // The error estimate fell from its maximum.
        assert!(nodes[0].coordinate().error < 0.5);
    }

    #[test]
    fn bad_samples_do_not_move_a_node() {
        let mut v = Vivaldi::new();
        let mut random = lcg(1);
        let start = v.coordinate().clone();
        let mut nan = Coordinate::default();
        nan.vec[3] = f64::NAN;
        assert!(v
            .update("p", &nan, Duration::from_millis(5), &mut random)
            .is_err());
        let short = Coordinate {
            vec: vec![0.0; 3],
            ..Coordinate::default()
        };
        assert!(v
            .update("p", &short, Duration::from_millis(5), &mut random)
            .is_err());
        let huge = Coordinate {
            adjustment: 1e30,
            ..Coordinate::default()
        };
        assert!(v
            .update("p", &huge, Duration::from_millis(5), &mut random)
            .is_err());
        assert_eq!(
            huge.distance_to(&Coordinate::default()),
            Duration::MAX,
            "never nearest by overflow"
        );
        assert!(v
            .update(
                "p",
                &Coordinate::default(),
                Duration::from_secs(11),
                &mut random
            )
            .is_err());
        assert_eq!(v.coordinate(), &start);
        // The wire form is Consul's.
        let json = serde_json::to_value(Coordinate::default()).unwrap();
        assert_eq!(json["Vec"].as_array().unwrap().len(), DIMENSIONS);
        assert_eq!(json["Error"], 1.5);
        assert_eq!(json["Height"], 1.0e-5);
    }
}
