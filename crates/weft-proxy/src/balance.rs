//! Choosing an instance per connection: power of two choices on active connections (pick two at random, take the
//! less loaded), which spreads load better than Consul's uniform random pick and avoids herding on one instance.

use crate::control::Endpoint;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Active connection counts per endpoint address, shared by all connections of one upstream.
#[derive(Debug, Default)]
pub struct Balancer {
    active: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

/// Held while a connection to an endpoint is open; dropping it releases the slot.
pub struct Lease {
    counter: Arc<AtomicUsize>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balancer {
    fn counter(&self, address: &str) -> Arc<AtomicUsize> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active.entry(address.to_string()).or_default().clone()
    }

    pub fn active(&self, address: &str) -> usize {
        self.counter(address).load(Ordering::Relaxed)
    }

    /// Picks an endpoint not in `exclude`, using the two random draws `r1`, `r2` (in [0, 1)).
    pub fn pick<'a>(
        &self,
        endpoints: &'a [Endpoint],
        exclude: &[String],
        r1: f64,
        r2: f64,
    ) -> Option<&'a Endpoint> {
        let candidates: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| !exclude.contains(&e.address))
            .collect();
        match candidates.len() {
            0 => None,
            1 => candidates.first().copied(),
            n => {
                let i = ((r1 * n as f64) as usize).min(n - 1);
                let mut j = ((r2 * (n - 1) as f64) as usize).min(n - 2);
                if j >= i {
                    j += 1;
                }
                let (a, b) = (candidates[i], candidates[j]);
                if self.active(&b.address) < self.active(&a.address) {
                    Some(b)
                } else {
                    Some(a)
                }
            }
        }
    }

    /// Marks a connection to `address` as open until the lease is dropped.
    pub fn lease(&self, address: &str) -> Lease {
        let counter = self.counter(address);
        counter.fetch_add(1, Ordering::Relaxed);
        Lease { counter }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ep(a: &str) -> Endpoint {
        Endpoint {
            address: a.into(),
            service: "s".into(),
            datacenter: "dc1".into(),
            node: "n".into(),
        }
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let b = Balancer::default();
        let eps = vec![ep("a:1"), ep("b:1")];
        let _l1 = b.lease("a:1");
        let _l2 = b.lease("a:1");
        for (r1, r2) in [(0.0, 0.0), (0.9, 0.1), (0.4, 0.7)] {
            assert_eq!(b.pick(&eps, &[], r1, r2).unwrap().address, "b:1");
        }
        drop(_l1);
        drop(_l2);
        assert_eq!(b.active("a:1"), 0);
    }

    #[test]
    fn excludes_failed_and_handles_small_sets() {
        let b = Balancer::default();
        let eps = vec![ep("a:1"), ep("b:1"), ep("c:1")];
        for _ in 0..10 {
            let picked = b
                .pick(&eps, &["a:1".into(), "b:1".into()], 0.3, 0.8)
                .unwrap();
            assert_eq!(picked.address, "c:1");
        }
        assert!(b
            .pick(&eps, &["a:1".into(), "b:1".into(), "c:1".into()], 0.1, 0.1)
            .is_none());
        assert!(b.pick(&[], &[], 0.5, 0.5).is_none());
    }

    #[test]
    fn spreads_over_idle_endpoints() {
        let b = Balancer::default();
        let eps = vec![ep("a:1"), ep("b:1")];
        let mut seen = std::collections::HashSet::new();
        for (r1, r2) in [(0.1, 0.1), (0.9, 0.9)] {
            seen.insert(b.pick(&eps, &[], r1, r2).unwrap().address.clone());
        }
        assert_eq!(seen.len(), 2);
    }
}
