//! The circuit breaker per registry host: after `threshold` failures in a
//! row (unreachable, timed out, reset, HTTP 5xx), the registry is not
//! contacted for `cooldown`; requests for it fail at once with that reason
//! instead of each waiting out its timeout. After the cooldown one request
//! goes through as a probe: if it succeeds the breaker closes, if it fails it
//! opens again. A registry that answers at all (even 404, 401 or an
//! oversized body) is not failing.
//!
//! State only; the client decides what a failure is and reports it. The
//! number of hosts remembered is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most registry hosts remembered; beyond it, closed entries are dropped.
use crate::limits::MAX_BREAKER_HOSTS as MAX_HOSTS;

#[derive(Debug, Default, Clone)]
struct Host {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// Breakers for every registry host.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    hosts: Mutex<HashMap<String, Host>>,
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Failures in a row that opened it.
    pub failures: u32,
    /// How long until the next probe.
    pub retry_in: Duration,
}

impl Breakers {
    /// Opens after `threshold` failures in a row (0: never) for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breakers {
            threshold,
            cooldown,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// May a request to `host` be sent now? While open, no; once the
    /// cooldown is over, one request (the probe) may, the others not until
    /// it reports (or a further cooldown has passed).
    pub fn admit(&self, host: &str, now: Instant) -> Result<(), Open> {
        if self.threshold == 0 {
            return Ok(());
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = hosts.get_mut(host) else {
            return Ok(());
        };
        match h.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(Open {
                failures: h.failures,
                retry_in: until.saturating_duration_since(now),
            }),
            // Cooldown over: this request is the probe. The others wait a
            // further cooldown, also when the probe never reports (its
            // review's deadline cancelled it): then the next one probes.
            Some(_) => {
                h.probing = true;
                h.open_until = Some(now + self.cooldown);
                Ok(())
            }
        }
    }

    /// The registry answered.
    pub fn success(&self, host: &str) {
        if self.threshold == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.remove(host);
    }

    /// The registry failed (unreachable, timeout, reset, 5xx).
    pub fn failure(&self, host: &str, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.len() >= MAX_HOSTS && !hosts.contains_key(host) {
            hosts.retain(|_, h| h.open_until.is_some());
            if hosts.len() >= MAX_HOSTS {
                return;
            }
        }
        let h = hosts.entry(host.to_string()).or_default();
        h.failures = h.failures.saturating_add(1);
        if h.probing || h.failures >= self.threshold {
            h.open_until = Some(now + self.cooldown);
            h.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown() {
        let b = Breakers::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for _ in 0..2 {
            assert!(b.admit("r", t).is_ok());
            b.failure("r", t);
        }
        assert!(b.admit("r", t).is_ok(), "2 failures: still closed");
        b.failure("r", t);
        let open = b.admit("r", t + Duration::from_secs(4)).unwrap_err();
        assert_eq!(open.failures, 3);
        assert_eq!(open.retry_in, Duration::from_secs(6));
        assert!(b.admit("other", t).is_ok(), "per host");
        // After the cooldown: one probe, the rest still refused.
        let later = t + Duration::from_secs(11);
        assert!(b.admit("r", later).is_ok());
        assert!(b.admit("r", later).is_err());
        // The probe fails: open again for a whole cooldown.
        b.failure("r", later);
        assert!(b.admit("r", later + Duration::from_secs(9)).is_err());
        // The next probe succeeds: closed.
        let again = later + Duration::from_secs(11);
        assert!(b.admit("r", again).is_ok());
        b.success("r");
        assert!(b.admit("r", again).is_ok());
        assert!(b.admit("r", again).is_ok());
    }

    #[test]
    fn a_success_resets_the_count_and_zero_never_opens() {
        let b = Breakers::new(2, Duration::from_secs(10));
        let t = Instant::now();
        b.failure("r", t);
        b.success("r");
        b.failure("r", t);
        assert!(b.admit("r", t).is_ok());
        let off = Breakers::new(0, Duration::from_secs(10));
        for _ in 0..10 {
            off.failure("r", t);
        }
        assert!(off.admit("r", t).is_ok());
    }
}
