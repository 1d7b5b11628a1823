//! One replica at a time: a `coordination.k8s.io/v1` Lease held by the
//! replica that does every cluster-wide write: `Ready` conditions, the
//! serving certificate and `caBundle`s, the background audit and its
//! reports. Every replica answers admissions regardless. The holder renews it every
//! third of its duration; another replica takes it only once it has gone
//! unrenewed for its whole duration. Every write carries the
//! resourceVersion it read, so two replicas racing for it cannot both win
//! (the apiserver refuses the second with a conflict). Owns only the Lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;

/// The Lease's name, in sigil's namespace.
pub const LEASE_NAME: &str = "sigil-leader";

/// This replica's view of who leads.
#[derive(Debug, Clone)]
pub struct Leadership {
    held: Arc<AtomicBool>,
    changes: tokio::sync::watch::Receiver<bool>,
    api: Api<Lease>,
    identity: Arc<str>,
    /// Set at release: the renewing loop stops trying.
    stopped: Arc<AtomicBool>,
}

impl Leadership {
    /// Whether this replica holds the Lease now.
    pub fn is_leader(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Told every time this replica gains or loses the Lease.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changes.clone()
    }

    /// At shutdown: gives the Lease up (empty holder) if this replica holds
    /// it, so another takes it at its next try instead of after the whole
    /// duration. Best effort; a failure leaves it to expire.
    pub async fn release(&self) {
        self.stopped.store(true, Ordering::Release);
        if !self.held.swap(false, Ordering::AcqRel) {
            return;
        }
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&*self.identity) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %self.identity, "leader Lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the leader Lease; it expires on its own")
            }
        }
    }
}

/// Starts holding (or waiting for) the Lease `namespace/LEASE_NAME` as
/// `identity`, for `duration` at a time; runs until the process stops.
pub fn lead(client: Client, namespace: &str, identity: String, duration: Duration) -> Leadership {
    let held = Arc::new(AtomicBool::new(false));
    let (tell, changes) = tokio::sync::watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let leadership = Leadership {
        held: held.clone(),
        changes,
        api: api.clone(),
        identity: identity.as_str().into(),
        stopped: Arc::new(AtomicBool::new(false)),
    };
    let stopped = leadership.stopped.clone();
    tokio::spawn(async move {
        while !stopped.load(Ordering::Acquire) {
            let now_held = match try_hold(&api, &identity, duration).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read or write the leader Lease");
                    false
                }
            };
            if stopped.load(Ordering::Acquire) {
                break;
            }
            let was = held.swap(now_held, Ordering::AcqRel);
            if now_held && !was {
                tracing::info!(%identity, "became the leader");
            } else if was && !now_held {
                tracing::warn!(%identity, "no longer the leader");
            }
            if now_held != was {
                tell.send_replace(now_held);
            }
            tokio::time::sleep(duration / 3).await;
        }
    });
    leadership
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt: true when `identity` holds the Lease afterwards.
async fn try_hold(
    api: &Api<Lease>,
    identity: &str,
    duration: Duration,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let current = match api.get_opt(LEASE_NAME).await? {
        Some(l) => l,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(micro_now()),
                    renew_time: Some(micro_now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == identity;
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let held_for = spec.lease_duration_seconds.map_or(duration, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        age.as_secs() >= 0 && age.unsigned_abs() >= held_for
    });
    if !mine && !holder.is_empty() && !expired {
        return Ok(false);
    }
    let mut lease = current;
    let mut spec = spec;
    if !mine {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(micro_now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(micro_now());
    spec.lease_duration_seconds = Some(seconds);
    lease.spec = Some(spec);
    // The resourceVersion read above: a write in between makes this a conflict.
    match api
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
