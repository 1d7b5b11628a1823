//! Token buckets, client-go's `flowcontrol` shape: a burst at once, then
//! one token back per refill period; and a map of them per key, bounded in
//! entries. Pure: callers pass the time. It owns no clock, no I/O and no
//! policy of what is limited (Events, GitHub API calls per namespace).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens a full bucket holds.
    pub burst: u32,
    /// Time for one token to come back.
    pub refill: Duration,
}

/// One bucket.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    fn refilled(&self, rate: Rate, now: Instant) -> f64 {
        let gained =
            now.saturating_duration_since(self.at).as_secs_f64() / rate.refill.as_secs_f64();
        (self.tokens + gained).min(f64::from(rate.burst))
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.tokens = self.refilled(rate, now);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it has refilled: forgetting it then gives nothing away.
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        self.refilled(rate, now) >= f64::from(rate.burst)
    }
}

/// Buckets per key, at most `remembered` of them: past it, buckets that
/// have refilled go; if none has, the map starts over (every key then gets
/// its burst again once: bounded memory over exactness, as client-go's LRU).
#[derive(Debug)]
pub struct RateMap<K> {
    rate: Rate,
    remembered: usize,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq> RateMap<K> {
    /// An empty map of buckets filling at `rate`.
    pub fn new(rate: Rate, remembered: usize) -> Self {
        RateMap {
            rate,
            remembered,
            buckets: HashMap::new(),
        }
    }

    /// The rate of its buckets.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The bucket of `key` (full when new).
    pub fn bucket(&mut self, key: K, now: Instant) -> &mut TokenBucket {
        if self.buckets.len() >= self.remembered && !self.buckets.contains_key(&key) {
            let rate = self.rate;
            self.buckets.retain(|_, b| !b.is_full(rate, now));
            if self.buckets.len() >= self.remembered {
                self.buckets.clear();
            }
        }
        let rate = self.rate;
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(rate, now))
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        let rate = self.rate;
        self.bucket(key, now).take(rate, now)
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        refill: Duration::from_secs(2),
    };

    #[test]
    fn a_burst_then_one_token_per_refill() {
        let t0 = Instant::now();
        let mut map = RateMap::new(RATE, 10);
        assert!((0..3).all(|_| map.allow("a", t0)));
        assert!(!map.allow("a", t0), "the burst is spent");
        assert!(map.allow("b", t0), "another key has its own");
        assert!(!map.allow("a", t0 + Duration::from_secs(1)));
        assert!(map.allow("a", t0 + Duration::from_secs(3)));
        assert!(!map.allow("a", t0 + Duration::from_secs(3)));
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| map.allow("a", later)));
        assert!(!map.allow("a", later));
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_full_buckets_first() {
        let t0 = Instant::now();
        let mut map = RateMap::new(RATE, 4);
        for k in 0..100 {
            map.allow(k, t0);
            assert!(map.len() <= 4);
        }
        // A spent bucket is kept while full ones go.
        let mut map = RateMap::new(RATE, 2);
        assert!((0..3).all(|_| map.allow("spent", t0)));
        map.bucket("full", t0);
        map.allow("new", t0 + Duration::from_millis(1));
        assert!(
            !map.allow("spent", t0 + Duration::from_millis(2)),
            "not given a fresh burst"
        );
    }
}
