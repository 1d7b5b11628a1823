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
//! So that a few namespaces cannot hold every slot between them (four at
//! their share would), the total is shared by a guarantee and a reserve
//! rather than first come, first served: a namespace holding fewer than
//! [`GATE_GUARANTEED`] slots (one) may take any free one, and one holding
//! more takes another only while a [`GATE_RESERVE_DIVISOR`]th of the total
//! (16 of 64) stays free after it. Slots beyond the first are then taken
//! only while at most three quarters are held (48); past that, only first
//! slots, one per namespace, and at least one namespace must have filled
//! the three quarters. So N namespaces hold at most 48 + (N − 1) slots,
//! and for N up to the reserve (16) a namespace arriving fresh always
//! finds one: never starved by N others, by design rather than by the
//! timing of who comes first. A lone busy namespace still takes up to its
//! share while few others are active. This is the apiserver's API Priority and
//! Fairness idea (seats per flow, none taken from another): a review past
//! its guarantee waits for a seat within its deadline, and one that finds
//! every seat taken is refused at once, since a webhook's caller cannot
//! wait long.
//!
//! State only, no I/O; it does not know what a review is about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{GATE_GUARANTEED, GATE_RESERVE_DIVISOR};

/// Default of `--max-inflight-reviews`.
pub use crate::limits::DEFAULT_MAX_IN_FLIGHT;
/// Default of `--max-inflight-reviews-per-namespace`: a quarter of the total.
pub use crate::limits::DEFAULT_MAX_IN_FLIGHT_PER_NAMESPACE;

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
    /// The namespace holds more than its guaranteed slots and only the
    /// slots kept for other namespaces are free.
    #[error("namespace {namespace:?} had {held} reviews in flight until this review's deadline, over the {guaranteed} every namespace is guaranteed, while sigil kept its last {reserve} of {total} slots for namespaces with fewer; retry")]
    Reserved {
        /// The namespace.
        namespace: String,
        /// What it holds.
        held: usize,
        /// Slots every namespace may take.
        guaranteed: usize,
        /// Slots kept free for namespaces under their guarantee.
        reserve: usize,
        /// All slots.
        total: usize,
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
    /// Slots of the total it holds.
    held: usize,
}

/// The namespaces and how many slots of the total are held, under one lock.
#[derive(Debug, Default)]
struct Slots {
    namespaces: HashMap<String, Namespace>,
    held: usize,
}

/// The shares.
pub struct ReviewGate {
    max_total: usize,
    share: usize,
    guaranteed: usize,
    reserve: usize,
    namespaces: Arc<Mutex<Slots>>,
    /// Told whenever a slot of the total is given back.
    freed: Arc<tokio::sync::Notify>,
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
    _total: Held,
    _namespace: OwnedSemaphorePermit,
    _user: User,
}

/// One slot of the total held by a namespace, until dropped.
#[derive(Debug)]
struct Held {
    namespace: String,
    slots: Arc<Mutex<Slots>>,
    freed: Arc<tokio::sync::Notify>,
}

impl Drop for Held {
    fn drop(&mut self) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.held -= 1;
            if let Some(entry) = slots.namespaces.get_mut(&self.namespace) {
                entry.held -= 1;
            }
        }
        self.freed.notify_waiters();
    }
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
    namespaces: Arc<Mutex<Slots>>,
}

impl Drop for User {
    fn drop(&mut self) {
        let mut slots = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = slots.namespaces.get_mut(&self.namespace) {
            entry.users -= 1;
            if entry.users == 0 {
                slots.namespaces.remove(&self.namespace);
            }
        }
    }
}

impl ReviewGate {
    /// At most `max_total` reviews at once, `share` of them from one namespace.
    pub fn new(max_total: usize, share: usize) -> Self {
        let max_total = max_total.max(1);
        let share = share.clamp(1, max_total);
        ReviewGate {
            max_total,
            share,
            guaranteed: GATE_GUARANTEED.min(share),
            reserve: max_total / GATE_RESERVE_DIVISOR,
            namespaces: Arc::new(Mutex::new(Slots::default())),
            freed: Arc::new(tokio::sync::Notify::new()),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// The per-namespace share.
    pub fn share(&self) -> usize {
        self.share
    }

    /// Lets a review of `namespace` in: waits (until `deadline`) while its
    /// namespace has its share in flight, and while it holds more than its
    /// guarantee and only the reserve is free; then takes one of the total
    /// slots, or is refused at once when every slot is taken.
    pub async fn enter(
        &self,
        namespace: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Ticket, Refused> {
        let (slots, user) = {
            let mut map = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map
                .namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| Namespace {
                    slots: Arc::new(Semaphore::new(self.share)),
                    users: 0,
                    held: 0,
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
        let total = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.take_slot(namespace) {
                Ok(held) => break held,
                Err(reserved @ Refused::Reserved { .. }) => {
                    // It has its guaranteed slot: it waits for one of its
                    // own (or the others') reviews to finish, within its
                    // deadline, rather than being refused while its
                    // earlier review is being answered.
                    use std::sync::atomic::Ordering;
                    let before = self.waiting.fetch_add(1, Ordering::AcqRel);
                    let _waiter = Waiter(self.waiting.clone());
                    if before >= 2 * self.max_total {
                        return Err(Refused::TooManyWaiting(before));
                    }
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(reserved);
                    }
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Ticket {
            _total: total,
            _namespace: namespace_slot,
            _user: user,
        })
    }

    /// One slot of the total for `namespace`, by the guarantee and the
    /// reserve, or the refusal.
    fn take_slot(&self, namespace: &str) -> Result<Held, Refused> {
        let mut slots = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let total_held = slots.held;
        let held = slots.namespaces.get(namespace).map_or(0, |n| n.held);
        if total_held >= self.max_total {
            return Err(Refused::Full(self.max_total));
        }
        let free_after = self.max_total - total_held - 1;
        if held >= self.guaranteed && free_after < self.reserve {
            return Err(Refused::Reserved {
                namespace: namespace.to_string(),
                held,
                guaranteed: self.guaranteed,
                reserve: self.reserve,
                total: self.max_total,
            });
        }
        slots.held += 1;
        if let Some(entry) = slots.namespaces.get_mut(namespace) {
            entry.held += 1;
        }
        Ok(Held {
            namespace: namespace.to_string(),
            slots: self.namespaces.clone(),
            freed: self.freed.clone(),
        })
    }

    /// Namespaces with a review in flight or waiting (for tests).
    pub fn namespaces_tracked(&self) -> usize {
        self.namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .namespaces
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

    /// Four namespaces at their share used to hold every slot. Now slots
    /// past a namespace's first are taken only while a quarter stays free,
    /// so sixteen flooding namespaces, whatever their order, leave a slot
    /// for a seventeenth.
    #[tokio::test(start_paused = true)]
    async fn flooding_namespaces_cannot_keep_another_out() {
        let gate = ReviewGate::new(64, 16);
        let mut held = Vec::new();
        // Four namespaces flood first: they get up to three quarters.
        for ns in ["a", "b", "c", "d"] {
            for _ in 0..16 {
                if let Ok(t) = gate.enter(ns, soon(1)).await {
                    held.push(t);
                }
            }
        }
        // a, b and c fill three quarters; d gets only its first slot.
        assert_eq!(held.len(), 49);
        let e = gate.enter("d", soon(1)).await.unwrap_err();
        assert!(matches!(e, Refused::Reserved { .. }), "{e}");
        // Twelve more each take their first slot from the reserve.
        for i in 0..12 {
            held.push(gate.enter(&format!("late{i}"), soon(1)).await.unwrap());
            assert!(gate.enter(&format!("late{i}"), soon(1)).await.is_err());
        }
        // Sixteen namespaces hold slots; a seventeenth still gets one.
        held.push(gate.enter("shop", soon(1)).await.unwrap());
        assert_eq!(held.len(), 62);
        // The refusal names the rule.
        let e = gate.enter("late0", soon(1)).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("kept its last 16 of 64 slots for namespaces with fewer"),
            "{e}"
        );
    }

    /// A lone namespace still takes up to its share.
    #[tokio::test(start_paused = true)]
    async fn a_lone_namespace_takes_its_share() {
        let gate = ReviewGate::new(64, 16);
        let mut held = Vec::new();
        for _ in 0..16 {
            held.push(gate.enter("busy", soon(1)).await.unwrap());
        }
        assert_eq!(held.len(), 16);
    }

    /// Past its guarantee a namespace waits for a slot within its deadline
    /// (not refused at once while its earlier review is being answered).
    #[tokio::test(start_paused = true)]
    async fn past_the_guarantee_a_review_waits_for_a_slot() {
        let gate = Arc::new(ReviewGate::new(8, 8));
        // Six of "a" fill up to the reserve (2 of 8 stay free).
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(gate.enter("a", soon(1)).await.unwrap());
        }
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.enter("a", soon(1_000)).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        // Another namespace still gets its first slot at once.
        let _b = gate.enter("b", soon(1)).await.unwrap();
        // b's slot counts too: two of a's must end before a seventh fits.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(held.pop());
        waiter.await.unwrap().unwrap();
    }
}
