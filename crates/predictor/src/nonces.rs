//! Nonces of the operator's admin signatures seen lately: each signature is good once, so
//! one seen on the wire cannot be sent again within its validity.

use std::collections::VecDeque;
use std::sync::Mutex;

use api::admin_signature::MAX_SKEW_SECS;

/// The most nonces remembered (the operator signs a handful of calls per rollout).
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct Nonces(Mutex<VecDeque<(i64, String)>>);

impl Nonces {
    /// Whether `nonce` was seen within the signatures' validity; remembers it otherwise.
    pub fn seen_before(&self, nonce: &str, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Older signatures are refused as expired anyway.
        while seen
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > 2 * MAX_SKEW_SECS)
        {
            seen.pop_front();
        }
        if seen.iter().any(|(_, n)| n == nonce) {
            return true;
        }
        if seen.len() == CAPACITY {
            seen.pop_front();
        }
        seen.push_back((now, nonce.to_owned()));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once_within_the_window() {
        let nonces = Nonces::default();
        assert!(!nonces.seen_before("a", 100));
        assert!(nonces.seen_before("a", 150));
        assert!(!nonces.seen_before("b", 150));
        // Past twice the skew it is forgotten (its signature has expired by then).
        assert!(!nonces.seen_before("a", 100 + 2 * MAX_SKEW_SECS + 1));
        assert!(nonces.seen_before("a", 100 + 2 * MAX_SKEW_SECS + 2));
    }
}
