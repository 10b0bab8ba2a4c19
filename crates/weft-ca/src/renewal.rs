//! When to renew a leaf: at a random point between 60 % and 90 % of its lifetime (Consul's soft and hard
//! expiry), immediately past 90 % or for lifetimes under 10 minutes... scaled down: for short test TTLs the same
//! fractions apply, and within 30 s (jittered) of a root change. The random draw is passed in, so this is pure.

/// Unix seconds at which a leaf valid from `not_before` to `not_after` should be renewed, given `now` and a
/// uniform draw `r` in [0, 1).
pub fn renew_at(not_before: i64, not_after: i64, now: i64, r: f64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let soft = not_before + lifetime * 6 / 10;
    let hard = not_before + lifetime * 9 / 10;
    if now >= hard {
        return now;
    }
    let start = soft.max(now);
    start + (r.clamp(0.0, 1.0) * (hard - start) as f64) as i64
}

/// After a root change, renew at a random point within the next 30 s, so a fleet does not sign all at once.
pub fn renew_after_root_change(now: i64, r: f64) -> i64 {
    now + (r.clamp(0.0, 1.0) * 30.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_window() {
        // 72 h leaf: between 43.2 h and 64.8 h after issue.
        let (nb, na) = (0, 72 * 3600);
        assert_eq!(renew_at(nb, na, 0, 0.0), 155_520);
        assert_eq!(renew_at(nb, na, 0, 1.0), 233_280);
        // Inside the soft window: from now to hard.
        let now = (0.7 * 72.0 * 3600.0) as i64;
        assert_eq!(renew_at(nb, na, now, 0.0), now);
        // Past hard: now.
        assert_eq!(renew_at(nb, na, na, 0.5), na);
        assert!(renew_after_root_change(100, 0.99) <= 130);
    }
}
