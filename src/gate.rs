//! Fair shares of the reviews sigil answers at once: at most
//! `--max-inflight-reviews` in all, and at most
//! `--max-inflight-reviews-per-namespace` for any one namespace, whose
//! further reviews wait their turn (within the review's deadline; at most
//! `--max-inflight-reviews` of one namespace and twice that of all wait)
//! instead of taking other namespaces' places. A waiting review holds only
//! its decoded request, whose size `admission` and `workload` bound. A review that
//! finds the whole server busy, its namespace's queue full, or waits past
//! its deadline is refused at once with the reason (HTTP 503: the
//! apiserver applies the webhook's failurePolicy).
//!
//! State only, no I/O; it does not know what a review is about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default of `--max-inflight-reviews`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default of `--max-inflight-reviews-per-namespace`: a quarter of the total.
pub const DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE: usize = 16;

/// Why a review was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot is taken.
    #[error("sigil is answering its limit of {0} reviews at once (--max-inflight-reviews); refused rather than queued, retry")]
    Full(usize),
    /// The namespace's share is taken and its queue is full.
    #[error("namespace {namespace:?} has its share of {share} reviews in flight and {waiting} waiting (--max-inflight-reviews-per-namespace); refused rather than queued further, retry")]
    NamespaceQueueFull {
        /// The namespace.
        namespace: String,
        /// Its share.
        share: usize,
        /// How many were waiting.
        waiting: usize,
    },
    /// Too many reviews of all namespaces are waiting.
    #[error("sigil has {0} reviews waiting for their namespaces' shares; refused rather than queued further, retry")]
    TooManyWaiting(usize),
    /// The namespace's share stayed taken until the review's deadline.
    #[error("namespace {namespace:?} had its share of {share} reviews in flight until this review's deadline (--max-inflight-reviews-per-namespace); retry")]
    NamespaceBusy {
        /// The namespace.
        namespace: String,
        /// Its share.
        share: usize,
    },
}

#[derive(Debug)]
struct Namespace {
    slots: Arc<Semaphore>,
    /// Holders and waiters; the entry goes when it drops to zero, so the
    /// map holds at most the reviews in flight and waiting.
    users: usize,
}

/// The shares.
pub struct ReviewGate {
    total: Arc<Semaphore>,
    max_total: usize,
    share: usize,
    namespaces: Arc<Mutex<HashMap<String, Namespace>>>,
    /// Reviews waiting for their namespace's share, all namespaces.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for ReviewGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewGate")
            .field("max_total", &self.max_total)
            .field("share", &self.share)
            .finish()
    }
}

impl Default for ReviewGate {
    fn default() -> Self {
        ReviewGate::new(DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE)
    }
}

/// A review let in: its slots are freed when this is dropped.
#[derive(Debug)]
pub struct Ticket {
    _total: OwnedSemaphorePermit,
    _namespace: OwnedSemaphorePermit,
    _user: User,
}

/// One review counted as waiting, until it is dropped.
struct Waiter(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One holder or waiter of a namespace's entry.
#[derive(Debug)]
struct User {
    namespace: String,
    namespaces: Arc<Mutex<HashMap<String, Namespace>>>,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = map.get_mut(&self.namespace) {
            entry.users -= 1;
            if entry.users == 0 {
                map.remove(&self.namespace);
            }
        }
    }
}

impl ReviewGate {
    /// At most `max_total` reviews at once, `share` of them from one namespace.
    pub fn new(max_total: usize, share: usize) -> Self {
        let max_total = max_total.max(1);
        ReviewGate {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            share: share.clamp(1, max_total),
            namespaces: Arc::new(Mutex::new(HashMap::new())),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// The per-namespace share.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Lets a review of `namespace` in: waits (until `deadline`) while its
    /// namespace has its share in flight, then takes one of the total
    /// slots or is refused at once.
    pub async fn enter(
        &self,
        namespace: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Ticket, Refused> {
        let (slots, user) = {
            let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map
                .entry(namespace.to_string())
                .or_insert_with(|| Namespace {
                    slots: Arc::new(Semaphore::new(self.share)),
                    users: 0,
                });
            let waiting = entry.users.saturating_sub(self.share);
            if entry.users >= self.share + self.max_total {
                return Err(Refused::NamespaceQueueFull {
                    namespace: namespace.to_string(),
                    share: self.share,
                    waiting,
                });
            }
            entry.users += 1;
            (
                entry.slots.clone(),
                User {
                    namespace: namespace.to_string(),
                    namespaces: self.namespaces.clone(),
                },
            )
        };
        let namespace_slot = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                use std::sync::atomic::Ordering;
                let before = self.waiting.fetch_add(1, Ordering::AcqRel);
                let _waiter = Waiter(self.waiting.clone());
                if before >= 2 * self.max_total {
                    return Err(Refused::TooManyWaiting(before));
                }
                match tokio::time::timeout_at(deadline, slots.acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; a timeout is the deadline.
                    _ => {
                        return Err(Refused::NamespaceBusy {
                            namespace: namespace.to_string(),
                            share: self.share,
                        })
                    }
                }
            }
        };
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full(self.max_total))?;
        Ok(Ticket {
            _total: total,
            _namespace: namespace_slot,
            _user: user,
        })
    }

    /// Namespaces with a review in flight or waiting (for tests).
    pub fn namespaces_tracked(&self) -> usize {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn one_namespace_takes_its_share_and_waits_others_go_on() {
        let gate = Arc::new(ReviewGate::new(4, 2));
        let a1 = gate.enter("a", soon(1_000)).await.unwrap();
        let _a2 = gate.enter("a", soon(1_000)).await.unwrap();
        // "a" has its share: "b" still goes in at once.
        let _b = gate.enter("b", soon(1_000)).await.unwrap();
        // A third of "a" waits, and past its deadline is refused.
        assert_eq!(
            gate.enter("a", soon(100)).await.unwrap_err(),
            Refused::NamespaceBusy {
                namespace: "a".into(),
                share: 2
            }
        );
        // When one of "a" finishes, its waiter goes in.
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter("a", soon(1_000)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(a1);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_is_refused_at_once_and_the_queue_is_bounded() {
        let gate = ReviewGate::new(2, 2);
        let _a = gate.enter("a", soon(1_000)).await.unwrap();
        let _b = gate.enter("b", soon(1_000)).await.unwrap();
        let e = gate.enter("c", soon(1_000)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "sigil is answering its limit of 2 reviews at once (--max-inflight-reviews); refused rather than queued, retry"
        );
        // "a" holds its 2 slots; 4 more (the total) may wait.
        let gate = Arc::new(ReviewGate::new(4, 2));
        let mut held = vec![
            gate.enter("a", soon(60_000)).await.unwrap(),
            gate.enter("a", soon(60_000)).await.unwrap(),
        ];
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let g = gate.clone();
            waiters.push(tokio::spawn(
                async move { g.enter("a", soon(60_000)).await },
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let e = gate.enter("a", soon(60_000)).await.unwrap_err();
        assert!(
            matches!(e, Refused::NamespaceQueueFull { waiting: 4, .. }),
            "{e}"
        );
        // Waiting in all namespaces is bounded too: twice the total.
        let mut others = Vec::new();
        for i in 0..4 {
            let g = gate.clone();
            let name = format!("n{i}");
            others.push(g.enter(&name, soon(60_000)).await);
        }
        assert!(
            matches!(others[2], Err(Refused::Full(4))),
            "{:?}",
            others[2]
        );
        drop(others);
        // Everything done: nothing is tracked any more.
        held.clear();
        for w in waiters {
            drop(w.await.unwrap().unwrap());
        }
        assert_eq!(gate.namespaces_tracked(), 0);
    }
}
