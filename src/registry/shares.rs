//! Who is charged for a registry request, and the shares it is charged
//! to: the namespaces of the reviews waiting on it (a task-local tenant
//! set; coalesced work is charged to every namespace waiting on it), each
//! namespace's share of requests in flight, each registry host's, and the
//! total of requests and of bytes being read, shared by a guarantee and a
//! reserve as the review gate shares its slots. State and waiting only:
//! the client (`client`) sends the requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::options::{RegistryOptions, MAX_MANIFEST_BYTES};

tokio::task_local! {
    /// Whose shares a registry request counts against: the namespaces of
    /// the reviews waiting on it (one, or several for coalesced work).
    static TENANT: Arc<Tenants>;
}

/// Runs `work` with every registry request it makes counted against
/// `tenant`'s share of the request limit (`--registry-concurrency-per-namespace`)
/// and of the bytes read at once (`--registry-read-memory`), so that one
/// namespace's images, however slow their registries, cannot hold every
/// registry permit.
pub async fn as_tenant<F: std::future::Future>(tenant: &str, work: F) -> F::Output {
    TENANT.scope(Arc::new(Tenants::one(tenant)), work).await
}

/// Runs `work` (coalesced work: one verdict or digest that several
/// reviews wait on) with its registry requests counted against any of
/// `tenants`' shares: the work waits only on a share of a namespace that
/// waits for it, never on one namespace's share alone.
pub async fn as_tenants<F: std::future::Future>(tenants: Arc<Tenants>, work: F) -> F::Output {
    TENANT.scope(tenants, work).await
}

/// `work` charged to `tenants` when there are any (coalesced work), else
/// to whoever runs it.
pub async fn charged_to<F: std::future::Future>(
    tenants: Option<Arc<Tenants>>,
    work: F,
) -> F::Output {
    match tenants {
        Some(t) => TENANT.scope(t, work).await,
        None => work.await,
    }
}

/// The namespaces whose shares the running task's registry requests count
/// against, if any.
pub fn current_tenants() -> Option<Arc<Tenants>> {
    TENANT.try_with(Arc::clone).ok()
}

/// The namespaces a registry request may be charged to. A request takes
/// the share of whichever has room first; members join and leave while
/// the work runs (reviews that start or stop waiting on it).
#[derive(Debug, Default)]
pub struct Tenants {
    members: Mutex<Vec<Arc<str>>>,
    changed: tokio::sync::Notify,
}

impl Tenants {
    /// Just `tenant`.
    pub fn one(tenant: &str) -> Self {
        Tenants {
            members: Mutex::new(vec![Arc::from(tenant)]),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The namespaces charged now (each once).
    pub fn names(&self) -> Vec<Arc<str>> {
        self.members()
    }

    /// The members now (each once).
    fn members(&self) -> Vec<Arc<str>> {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Arc<str>> = Vec::with_capacity(members.len());
        for m in members.iter() {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// Adds the members of `other` until the returned guard is dropped.
    pub fn join(self: &Arc<Self>, other: &Tenants) -> Membership {
        let joined = other.members();
        {
            let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
            members.extend(joined.iter().cloned());
        }
        self.changed.notify_waiters();
        Membership {
            tenants: self.clone(),
            joined,
        }
    }
}

/// Namespaces that joined coalesced work, until dropped.
#[derive(Debug)]
pub struct Membership {
    tenants: Arc<Tenants>,
    joined: Vec<Arc<str>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut members = self
            .tenants
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for j in &self.joined {
            if let Some(at) = members.iter().position(|m| m == j) {
                members.swap_remove(at);
            }
        }
    }
}

/// Work coalesced across reviews, by key: who waits on each, so that the
/// work is charged to all of them ([`Tenants`]). Entries live as long as
/// someone waits.
pub struct Coalesced<K> {
    inflight: Mutex<HashMap<K, std::sync::Weak<Tenants>>>,
}

impl<K: std::hash::Hash + Eq + Clone> Default for Coalesced<K> {
    fn default() -> Self {
        Coalesced {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Coalesced<K> {
    /// The tenants of the work under `key`, with the running task's
    /// namespaces among them until the guard is dropped; `None` outside
    /// any tenant (nothing to charge).
    pub fn waiting(&self, key: &K) -> Option<(Arc<Tenants>, Option<Membership>)> {
        let mine = current_tenants()?;
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = inflight.get(key).and_then(std::sync::Weak::upgrade) {
            let membership = shared.join(&mine);
            return Some((shared, Some(membership)));
        }
        let shared = Arc::new(Tenants {
            members: Mutex::new(mine.members()),
            changed: tokio::sync::Notify::new(),
        });
        // Bounded by the work in flight: dead entries go when it doubles.
        if inflight.len() >= 256 && inflight.len().is_power_of_two() {
            inflight.retain(|_, w| w.strong_count() > 0);
        }
        inflight.insert(key.clone(), Arc::downgrade(&shared));
        Some((shared, None))
    }
}

/// Semaphores or pools by name (registry host, namespace) that are never
/// dropped while a permit or a waiter holds them: a host or namespace
/// whose semaphore were evicted mid-flight would get a fresh one and so
/// twice its share. Idle ones go once the map grows.
struct Named<T> {
    map: Mutex<HashMap<Arc<str>, Arc<T>>>,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T> Named<T> {
    fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Named {
            map: Mutex::new(HashMap::new()),
            make: Box::new(make),
        }
    }

    fn get(&self, name: &str) -> Arc<T> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(name) {
            return s.clone();
        }
        if map.len() >= 1_024 {
            // Only the map holds these, so none has a permit or a waiter.
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let s = Arc::new((self.make)());
        map.insert(Arc::from(name), s.clone());
        s
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A pool shared by namespaces as the review gate shares its slots
/// (`crate::gate`): registry requests in flight (counted one each) and
/// bytes of answers being read. A namespace may take up to its guarantee
/// whatever the others hold; past it, only while a quarter of the pool
/// stays free, and never past its share. A few namespaces whose
/// registries hang or serve junk then hold at most three quarters of the
/// pool between them beyond their guarantees, and another namespace's
/// request always finds room (up to sixteen such namespaces at the
/// defaults). Takers wait (within their review's deadline) for room; the
/// wait is not first come, first served, so a small request is not queued
/// behind a flood of large ones.
struct Pool {
    state: Mutex<PoolState>,
    max: u64,
    reserve: u64,
    guarantee: u64,
    share: u64,
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct PoolState {
    held: u64,
    /// Held per namespace ("" for requests of no review).
    per: HashMap<Arc<str>, u64>,
}

/// `amount` of a pool, until dropped.
struct PoolPermit {
    pool: Arc<Pool>,
    charged: Arc<str>,
    amount: u64,
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        {
            let mut state = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
            state.held -= self.amount;
            if let Some(n) = state.per.get_mut(&self.charged) {
                *n -= self.amount;
                if *n == 0 {
                    state.per.remove(&self.charged);
                }
            }
        }
        self.pool.freed.notify_waiters();
    }
}

impl Pool {
    fn new(max: u64, guarantee: u64, share: u64) -> Self {
        let max = max.max(1);
        Pool {
            state: Mutex::new(PoolState::default()),
            max,
            reserve: max / crate::limits::GATE_RESERVE_DIVISOR as u64,
            guarantee,
            share: share.max(guarantee),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// `amount` for `charged`, when the rule allows (an amount over the
    /// whole pool is cut to it).
    fn try_take(self: &Arc<Self>, charged: &Arc<str>, amount: u64) -> Option<PoolPermit> {
        let amount = amount.clamp(1, self.max);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = state.per.get(charged).copied().unwrap_or(0);
        let fits = state.held + amount <= self.max;
        // A namespace holding nothing may take one amount of any size (a
        // large blob larger than its share); past that, its share.
        let within_share = mine == 0 || mine + amount <= self.share;
        let within_guarantee = mine + amount <= self.guarantee;
        let leaves_reserve = self.max - state.held - amount >= self.reserve;
        if !(fits && within_share && (within_guarantee || mine == 0 || leaves_reserve)) {
            return None;
        }
        state.held += amount;
        *state.per.entry(charged.clone()).or_default() += amount;
        Some(PoolPermit {
            pool: self.clone(),
            charged: charged.clone(),
            amount,
        })
    }

    /// Waits for [`Pool::try_take`].
    async fn take(self: &Arc<Self>, charged: &Arc<str>, amount: u64) -> PoolPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(p) = self.try_take(charged, amount) {
                return p;
            }
            freed.await;
        }
    }
}

/// Which registries share one limit of concurrent requests, and of bytes
/// read at once.
pub(super) struct Limits {
    total: Arc<Pool>,
    /// One pool of requests per registry host.
    per_registry: Named<Pool>,
    per_tenant: Named<Semaphore>,
    /// Bytes of answers being read, all namespaces and per namespace.
    read_bytes: Arc<Pool>,
}

/// The permits one request holds: its tenant's, its registry's, and one of
/// the total; and the namespace it is charged to.
pub(super) struct Permits {
    _tenant: Option<OwnedSemaphorePermit>,
    _registry: PoolPermit,
    _total: PoolPermit,
    pub(super) charged: Option<Arc<str>>,
}

impl Limits {
    pub(super) fn new(opts: &RegistryOptions) -> Self {
        let read = usize::try_from(opts.read_memory)
            .unwrap_or(usize::MAX)
            .clamp(MAX_MANIFEST_BYTES, u32::MAX as usize);
        let share =
            (read / crate::limits::REGISTRY_READ_SHARE_DIVISOR as usize).max(MAX_MANIFEST_BYTES);
        Limits {
            // Requests: a namespace's share is its own semaphore above.
            total: Arc::new(Pool::new(
                opts.max_requests.max(1) as u64,
                crate::limits::GATE_GUARANTEED as u64,
                u64::MAX,
            )),
            per_registry: {
                let permits = opts.max_requests_per_registry.max(1) as u64;
                Named::new(move || {
                    Pool::new(permits, crate::limits::GATE_GUARANTEED as u64, u64::MAX)
                })
            },
            per_tenant: {
                let permits = opts
                    .max_requests_per_tenant
                    .clamp(1, opts.max_requests.max(1));
                Named::new(move || Semaphore::new(permits))
            },
            // Bytes: one manifest's worth is every namespace's; its share
            // a quarter.
            read_bytes: Arc::new(Pool::new(
                read as u64,
                MAX_MANIFEST_BYTES as u64,
                share as u64,
            )),
        }
    }

    /// Waits for a slot: a tenant's share first (a tenant waiting for its
    /// own share holds nothing anyone else needs; coalesced work takes the
    /// first share free among the namespaces waiting on it), then the
    /// registry's, then one of the total. Callers run under the request's
    /// deadline, so the wait is bounded in time; the waiters are bounded by
    /// the in-flight reviews and the images each verifies at once.
    pub(super) async fn acquire(&self, registry: &str) -> Permits {
        let (tenant, charged) = match current_tenants() {
            Some(tenants) => {
                let (permit, charged) = self.tenant_permit(&tenants).await;
                (Some(permit), Some(charged))
            }
            None => (None, None),
        };
        let nobody: Arc<str> = Arc::from("");
        let charged_to = charged.as_ref().unwrap_or(&nobody);
        // A host's permits are shared by the same rule as the total: one
        // namespace's flood of a registry leaves room for another's request
        // to it.
        let host = self.per_registry.get(registry).take(charged_to, 1).await;
        let total = self.total.take(charged_to, 1).await;
        Permits {
            _tenant: tenant,
            _registry: host,
            _total: total,
            charged,
        }
    }

    /// A permit of the first of `tenants`' shares with room, and whose.
    async fn tenant_permit(&self, tenants: &Tenants) -> (OwnedSemaphorePermit, Arc<str>) {
        loop {
            let changed = tenants.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let members = tenants.members();
            let shares: Vec<(Arc<str>, Arc<Semaphore>)> = members
                .into_iter()
                .map(|m| {
                    let s = self.per_tenant.get(&m);
                    (m, s)
                })
                .collect();
            for (m, s) in &shares {
                if let Ok(p) = s.clone().try_acquire_owned() {
                    return (p, m.clone());
                }
            }
            if shares.is_empty() {
                // Nobody waits any more (the work is being abandoned):
                // wait for a joiner rather than charge no one.
                changed.await;
                continue;
            }
            let any = futures::future::select_all(shares.iter().map(|(m, s)| {
                let m = m.clone();
                Box::pin(async move {
                    let p = s
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    (p, m)
                })
            }));
            tokio::select! {
                ((p, m), _, _) = any => return (p, m),
                () = &mut changed => continue,
            }
        }
    }

    /// Room for `bytes` of an answer being read, charged to `tenant` (its
    /// share of `--registry-read-memory`) and to the total; held until the
    /// read is done.
    pub(super) async fn read_room(&self, tenant: Option<&Arc<str>>, bytes: usize) -> ReadRoom {
        let nobody: Arc<str> = Arc::from("");
        ReadRoom {
            _room: self
                .read_bytes
                .take(tenant.unwrap_or(&nobody), bytes as u64)
                .await,
        }
    }
}

/// Bytes of registry answers being read, held until the read is done.
pub(super) struct ReadRoom {
    _room: PoolPermit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A name's semaphore is never replaced while a permit or a waiter
    /// holds it, however many other names come and go: a host or
    /// namespace cannot get a fresh share by flooding the map.
    #[test]
    fn semaphores_in_use_survive_a_flood_of_names() {
        let sems = Named::new(|| Semaphore::new(2));
        let held = sems.get("victim").try_acquire_owned().unwrap();
        for i in 0..10_000 {
            let _ = sems.get(&format!("flood{i}"));
        }
        assert!(sems.len() <= 1_024 + 1, "{}", sems.len());
        // Still the same semaphore: one permit of two is taken.
        assert_eq!(sems.get("victim").available_permits(), 1);
        drop(held);
        assert_eq!(sems.get("victim").available_permits(), 2);
    }

    /// Coalesced work takes a permit from any namespace waiting on it:
    /// the first requester's share being full does not hold the others.
    #[tokio::test]
    async fn coalesced_work_uses_any_waiting_namespaces_share() {
        let opts = RegistryOptions {
            max_requests_per_tenant: 1,
            ..RegistryOptions::default()
        };
        let limits = Limits::new(&opts);
        // The first requester's namespace has its one permit taken.
        let _busy = limits.per_tenant.get("evil").try_acquire_owned().unwrap();
        let shared = Arc::new(Tenants::one("evil"));
        let work = {
            let shared = shared.clone();
            async move { limits.tenant_permit(&shared).await.1 }
        };
        let work = tokio::spawn(work);
        tokio::task::yield_now().await;
        assert!(!work.is_finished(), "waits on evil's share alone");
        // Another namespace joins: the work goes on under its share.
        let _joined = shared.join(&Tenants::one("shop"));
        let charged = tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .expect("the joiner's share lets it go on")
            .unwrap();
        assert_eq!(&*charged, "shop");
    }

    /// Four namespaces whose registries hang cannot take every request
    /// permit: past its first, a namespace's request waits while a quarter
    /// of the total is all that is free, and another namespace's first
    /// request goes at once.
    #[tokio::test]
    async fn hanging_namespaces_leave_permits_for_another() {
        let total = Arc::new(Pool::new(64, 1, u64::MAX));
        let mut held = Vec::new();
        for ns in ["a", "b", "c", "d"] {
            let ns: Arc<str> = Arc::from(ns);
            while let Some(p) = total.try_take(&ns, 1) {
                held.push(p);
                if held.len() > 64 {
                    break;
                }
            }
        }
        // a took three quarters (its own share is another limit); b, c
        // and d got their first; the rest wait.
        assert_eq!(held.len(), 51);
        let shop: Arc<str> = Arc::from("shop");
        let first = tokio::time::timeout(Duration::from_secs(10), total.take(&shop, 1))
            .await
            .expect("another namespace's first request goes at once");
        assert!(
            total.try_take(&shop, 1).is_none(),
            "past its first, it waits"
        );
        drop(first);
        assert!(total.try_take(&shop, 1).is_some());
    }

    /// Bytes being read: four namespaces reading junk cannot take the
    /// room another's small manifest needs, and none passes its share.
    #[test]
    fn junk_readers_leave_room_to_read_for_another() {
        const MIB: u64 = 1 << 20;
        let bytes = Arc::new(Pool::new(32 * MIB, MIB, 8 * MIB));
        let mut held = Vec::new();
        for ns in ["a", "b", "c", "d"] {
            let ns: Arc<str> = Arc::from(ns);
            while let Some(p) = bytes.try_take(&ns, MIB) {
                held.push(p);
            }
        }
        // Each at most its share, all together three quarters plus the
        // first reads.
        assert!(held.len() <= 8 * 3 + 3, "{}", held.len());
        let shop: Arc<str> = Arc::from("shop");
        assert!(bytes.try_take(&shop, 4 << 10).is_some());
        // A large blob (an SBOM of 8 MiB) is read by a namespace holding
        // nothing, even past its share... when the pool has room.
        let sbom: Arc<str> = Arc::from("sbom");
        drop(held);
        assert!(bytes.try_take(&sbom, 12 * MIB).is_some());
    }

    /// Joiners leave when they stop waiting.
    #[test]
    fn membership_ends_with_its_guard() {
        let shared = Arc::new(Tenants::one("a"));
        let joined = shared.join(&Tenants::one("b"));
        assert_eq!(shared.members().len(), 2);
        drop(joined);
        let left: Vec<String> = shared.members().iter().map(|m| m.to_string()).collect();
        assert_eq!(left, ["a"]);
    }
}
