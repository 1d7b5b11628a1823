//! Kubernetes Events (`events.k8s.io/v1`): one for every denied, warned
//! and would-be denied image (reason `PolicyViolation`, type Warning,
//! regarding the workload, related the ClusterImagePolicy), and one when a
//! ClusterImagePolicy or TrustRoot turns not-Ready (reason `NotReady`).
//!
//! Sending never delays or changes an admission answer: records go through
//! a bounded queue (`try_send`; a full queue drops the record and counts
//! it), and one task sends them. No tenant can flood etcd through sigil,
//! as client-go's EventCorrelator does it:
//! - a rate per object and reason (a burst of 25, then one per 5 minutes)
//!   and per namespace (a tenant naming a new object each time: a burst of
//!   50, then one per 6 s), applied before the queue (over it: counted
//!   `rate_limited`, never queued);
//! - a repeat of an event sent in the last [`SERIES_WINDOW`] updates that
//!   Event's `series` (count, last seen) instead of creating another, and
//!   once [`EVENT_SIMILAR`] events differing only in their note were sent
//!   in the window, the rest are counted into one combined Event;
//! - the note is escaped by [`crate::text`]'s rules and cut at the
//!   apiserver's 1 KiB, with every tenant value in it excerpted.
//!
//! It decides nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::audit::RequestContext;
use crate::decision::{Finding, FindingDecision};
use crate::limits::{
    EVENT_BURST_PER_NAMESPACE, EVENT_BURST_PER_OBJECT, EVENT_REFILL_PER_NAMESPACE,
    EVENT_REFILL_PER_OBJECT, EVENT_SIMILAR, MAX_IMAGE_IN_TEXT, MAX_REASON_BYTES,
};
use crate::metrics::{self, EventOutcome};
use crate::text;

/// The apiserver's limit on `note`.
use crate::limits::EVENT_NOTE_BYTES as NOTE_LIMIT;
/// Records waiting to be sent; more are dropped (and counted).
pub use crate::limits::EVENT_QUEUE as QUEUE;
/// Distinct events remembered for aggregation.
use crate::limits::EVENT_REMEMBERED as REMEMBERED;
/// A repeat within this long is counted into the first Event's series.
pub use crate::limits::EVENT_SERIES_WINDOW as SERIES_WINDOW;
use crate::rate::{Rate, RateMap};
/// `reportingController`.
pub const CONTROLLER: &str = "policy.sigstore.dev/sigil";

/// One Event to send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRecord {
    /// Where the Event lives: the regarding object's namespace (`default`
    /// for cluster-scoped objects).
    pub namespace: String,
    /// The object it is about: apiVersion, kind, namespace, name.
    pub regarding: (String, String, String, String),
    /// A related object (the ClusterImagePolicy): apiVersion, kind, name.
    pub related: Option<(String, String, String)>,
    /// `PolicyViolation` or `NotReady`.
    pub reason: &'static str,
    /// What sigil did: `Denied`, `Warned`, `Audited`, `Validated`.
    pub action: &'static str,
    /// The human text (image, digest, reason), at most 1 KiB.
    pub note: String,
}

/// The queue's sending end, behind the rate limits.
#[derive(Debug)]
pub struct EventRecorder {
    queue: mpsc::Sender<EventRecord>,
    rates: std::sync::Mutex<Rates>,
}

impl EventRecorder {
    /// Starts the sending task; `instance` names this replica in
    /// `reportingInstance` (its pod name).
    pub fn start(client: Client, instance: String) -> Arc<EventRecorder> {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_events(client, instance, rx));
        Arc::new(EventRecorder::over(queue))
    }

    fn over(queue: mpsc::Sender<EventRecord>) -> Self {
        EventRecorder {
            queue,
            rates: std::sync::Mutex::new(Rates::default()),
        }
    }

    /// Queues `record` if its object's and its namespace's rates allow
    /// (else counted `rate_limited`), or drops it (counted) when the queue
    /// is full.
    pub fn record(&self, record: EventRecord) {
        let allowed = self
            .rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(&record, Instant::now());
        if !allowed {
            metrics::global().event(EventOutcome::rate_limited);
            return;
        }
        if self.queue.try_send(record).is_err() {
            metrics::global().event(EventOutcome::dropped);
        }
    }
}

/// The rate limits' buckets: per (namespace, object, reason), and per
/// namespace, each map bounded by [`REMEMBERED`] (full buckets are
/// forgotten first: forgetting one gives nothing away).
#[derive(Debug)]
struct Rates {
    objects: RateMap<(String, String, String, &'static str)>,
    namespaces: RateMap<String>,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            objects: RateMap::new(
                Rate {
                    burst: EVENT_BURST_PER_OBJECT,
                    refill: EVENT_REFILL_PER_OBJECT,
                },
                REMEMBERED,
            ),
            namespaces: RateMap::new(
                Rate {
                    burst: EVENT_BURST_PER_NAMESPACE,
                    refill: EVENT_REFILL_PER_NAMESPACE,
                },
                REMEMBERED,
            ),
        }
    }
}

impl Rates {
    fn allow(&mut self, record: &EventRecord, now: Instant) -> bool {
        let (_, kind, _, name) = &record.regarding;
        let object = (
            record.namespace.clone(),
            kind.clone(),
            name.clone(),
            record.reason,
        );
        // The namespace's rate is checked first: an object's token is not
        // spent on an Event its namespace may not send.
        let rate = self.namespaces.rate();
        let mut probe = *self.namespaces.bucket(record.namespace.clone(), now);
        if !probe.take(rate, now) {
            return false;
        }
        if !self.objects.allow(object, now) {
            return false;
        }
        *self.namespaces.bucket(record.namespace.clone(), now) = probe;
        true
    }
}

impl crate::service::ViolationSink for EventRecorder {
    fn violation(&self, ctx: &RequestContext, finding: &Finding) {
        self.record(violation_record(ctx, finding));
    }
}

/// The Event of one failing image.
pub fn violation_record(ctx: &RequestContext, finding: &Finding) -> EventRecord {
    let api_version = if ctx.resource.group.is_empty() {
        ctx.resource.version.clone()
    } else {
        format!("{}/{}", ctx.resource.group, ctx.resource.version)
    };
    let action = match finding.decision {
        FindingDecision::Denied => "Denied",
        FindingDecision::Warned => "Warned",
        FindingDecision::Audited => "Audited",
    };
    let digest = text::escape(finding.digest.as_deref().unwrap_or("digest unresolved"));
    let image = text::excerpt(&finding.image, MAX_IMAGE_IN_TEXT);
    let field = text::escape(&finding.field);
    let reasons = finding
        .reasons
        .iter()
        .map(|r| text::cap(text::escape(r).into_owned(), MAX_REASON_BYTES))
        .collect::<Vec<_>>()
        .join("; ");
    let note = match &finding.policy {
        Some(p) => format!(
            "{action}: image {image} ({digest}) at {field} fails ClusterImagePolicy {}: {reasons}",
            text::escape(p)
        ),
        None => format!("{action}: image {image} ({digest}) at {field}: {reasons}"),
    };
    EventRecord {
        namespace: ctx.namespace.clone(),
        regarding: (
            api_version,
            ctx.kind.clone(),
            ctx.namespace.clone(),
            ctx.name.clone(),
        ),
        related: finding.policy.as_ref().map(|p| {
            (
                "policy.sigstore.dev/v1beta1".to_string(),
                "ClusterImagePolicy".to_string(),
                p.clone(),
            )
        }),
        reason: "PolicyViolation",
        action,
        note: truncated(note),
    }
}

/// The Event of a cluster-scoped resource (`kind` `name`) turning
/// not-Ready with `error`.
pub fn not_ready_record(api_version: &str, kind: &str, name: &str, error: &str) -> EventRecord {
    EventRecord {
        namespace: "default".into(),
        regarding: (api_version.into(), kind.into(), String::new(), name.into()),
        related: None,
        reason: "NotReady",
        action: "Validated",
        note: truncated(format!(
            "{kind} {name} is not Ready: {}",
            text::escape(error)
        )),
    }
}

fn truncated(note: String) -> String {
    text::cap(note, NOTE_LIMIT)
}

/// MicroTime: RFC 3339 with microseconds.
fn micro_time_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The Event object of `record`, first seen now.
fn event_json(record: &EventRecord, instance: &str) -> Value {
    let (api_version, kind, namespace, name) = &record.regarding;
    let mut regarding = json!({"apiVersion": api_version, "kind": kind, "name": name});
    if !namespace.is_empty() {
        regarding["namespace"] = json!(namespace);
    }
    let base = if name.is_empty() {
        kind.to_lowercase()
    } else {
        name.clone()
    };
    // client-go's convention: `<regarding name>.<nanoseconds in hex>`
    // (a generateName may not end in a dot).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": format!("{base}.{nanos:x}"), "namespace": record.namespace},
        "eventTime": micro_time_now(),
        "reportingController": CONTROLLER,
        "reportingInstance": instance,
        "action": record.action,
        "reason": record.reason,
        "type": "Warning",
        "regarding": regarding,
        "note": record.note,
    });
    if let Some((api_version, kind, name)) = &record.related {
        event["related"] = json!({"apiVersion": api_version, "kind": kind, "name": name});
    }
    event
}

/// Sends what arrives on `queue` until every sender is gone.
async fn send_events(client: Client, instance: String, mut queue: mpsc::Receiver<EventRecord>) {
    // record → (Event name, count, first sent).
    let mut sent: HashMap<EventRecord, (String, i32, Instant)> = HashMap::new();
    let mut similar = Similar::default();
    let metrics = metrics::global();
    while let Some(record) = queue.recv().await {
        let record = similar.combine(record, Instant::now());
        let api: Api<Event> = Api::namespaced(client.clone(), &record.namespace);
        if let Some((name, count, first)) = sent.get_mut(&record) {
            if first.elapsed() < SERIES_WINDOW {
                *count += 1;
                let series =
                    json!({"series": {"count": *count, "lastObservedTime": micro_time_now()}});
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => {
                        metrics.event(EventOutcome::aggregated);
                        continue;
                    }
                    // Gone (expired or deleted): send it anew below.
                    Err(e) => {
                        tracing::debug!(error = %e, event = %name, "cannot update an event's series")
                    }
                }
            }
        }
        let mut json = event_json(&record, &instance);
        let mut created = create(&api, &json).await;
        if let Err(kube::Error::Api(e)) = &created {
            // Apiservers before 1.22 want a cluster-scoped object's Event
            // to name the Event's namespace in `regarding` too.
            if e.code == 422 && e.message.contains("does not match event.namespace") {
                json["regarding"]["namespace"] = json!(record.namespace);
                created = create(&api, &json).await;
            }
        }
        match created {
            Ok(created) => {
                metrics.event(EventOutcome::sent);
                if sent.len() >= REMEMBERED {
                    // Forget the old ones: repeats of them start new Events.
                    sent.retain(|_, (_, _, first)| first.elapsed() < SERIES_WINDOW);
                    if sent.len() >= REMEMBERED {
                        sent.clear();
                    }
                }
                if let Some(name) = created.metadata.name {
                    sent.insert(record, (name, 1, Instant::now()));
                }
            }
            Err(e) => {
                metrics.event(EventOutcome::failed);
                tracing::warn!(error = %e, reason = record.reason, "cannot create an event");
            }
        }
    }
}

/// client-go's aggregator: events that differ only in their note. Once
/// [`EVENT_SIMILAR`] distinct notes were sent for one object, reason and
/// policy within [`SERIES_WINDOW`], the others become one combined Event
/// (whose series counts them).
#[derive(Debug, Default)]
struct Similar {
    /// (namespace, regarding, related, reason, action) → the notes seen,
    /// when the first was, and the combined note once there is one.
    seen: HashMap<SimilarKey, (Vec<u64>, Instant, Option<String>)>,
}

type SimilarKey = (
    String,
    (String, String, String, String),
    Option<(String, String, String)>,
    &'static str,
    &'static str,
);

impl Similar {
    fn combine(&mut self, mut record: EventRecord, now: Instant) -> EventRecord {
        use std::hash::{Hash as _, Hasher as _};
        let key = (
            record.namespace.clone(),
            record.regarding.clone(),
            record.related.clone(),
            record.reason,
            record.action,
        );
        if self.seen.len() >= REMEMBERED && !self.seen.contains_key(&key) {
            self.seen
                .retain(|_, (_, first, _)| now.saturating_duration_since(*first) < SERIES_WINDOW);
            if self.seen.len() >= REMEMBERED {
                self.seen.clear();
            }
        }
        let entry = self
            .seen
            .entry(key)
            .or_insert_with(|| (Vec::new(), now, None));
        if now.saturating_duration_since(entry.1) >= SERIES_WINDOW {
            *entry = (Vec::new(), now, None);
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        record.note.hash(&mut hasher);
        let note = hasher.finish();
        if entry.0.contains(&note) {
            return record;
        }
        if entry.0.len() < EVENT_SIMILAR {
            entry.0.push(note);
            return record;
        }
        let combined = entry.2.get_or_insert_with(|| {
            truncated(format!("(combined from similar events): {}", record.note))
        });
        record.note = combined.clone();
        record
    }
}

/// Creates the Event `json` describes.
async fn create(api: &Api<Event>, json: &Value) -> Result<Event, kube::Error> {
    let event: Event = serde_json::from_value(json.clone()).map_err(kube::Error::SerdeError)?;
    api.create(&PostParams::default(), &event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dropped() -> u64 {
        metrics::global()
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix("sigil_events_total{result=\"dropped\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_full_queue_drops_at_once_and_counts_it() {
        // No task drains this queue: it fills at QUEUE records.
        let (queue, _rx) = mpsc::channel(QUEUE);
        let recorder = EventRecorder::over(queue);
        let before = dropped();
        let started = Instant::now();
        // Each from another namespace, so that no rate applies.
        for i in 0..QUEUE + 5 {
            let mut record = not_ready_record("v1", "Thing", "t", "broken");
            record.namespace = format!("n{i}");
            recorder.record(record);
        }
        // Never waits: far below the time one blocked send would take.
        assert!(started.elapsed() < Duration::from_secs(10));
        // Other tests may drop too (the metrics are process-wide): at least 5.
        assert!(dropped() >= before + 5, "{} {}", before, dropped());
    }

    #[test]
    fn notes_are_cut_at_the_apiservers_limit_on_a_char_boundary() {
        let long = "é".repeat(1_000);
        let cut = truncated(long);
        assert!(cut.len() <= NOTE_LIMIT);
        assert!(cut.ends_with("…(2,000 bytes)"), "{cut}");
        assert_eq!(truncated("short".into()), "short");
    }

    fn pod_event(namespace: &str, name: &str, note: &str) -> EventRecord {
        EventRecord {
            namespace: namespace.into(),
            regarding: ("v1".into(), "Pod".into(), namespace.into(), name.into()),
            related: Some((
                "policy.sigstore.dev/v1beta1".into(),
                "ClusterImagePolicy".into(),
                "signed".into(),
            )),
            reason: "PolicyViolation",
            action: "Denied",
            note: note.into(),
        }
    }

    /// client-go's spam filter: 25 about one object, then one per five
    /// minutes; a tenant naming a new object each time meets its
    /// namespace's rate (50, then one per 6 s); other namespaces are not
    /// touched.
    #[test]
    fn events_are_rate_limited_per_object_and_per_namespace() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let same = pod_event("evil", "p", "x");
        let sent = (0..100).filter(|_| rates.allow(&same, t0)).count();
        assert_eq!(sent, EVENT_BURST_PER_OBJECT as usize);
        assert!(!rates.allow(&same, t0 + Duration::from_secs(299)));
        assert!(rates.allow(&same, t0 + Duration::from_secs(301)));
        // New names each time: the namespace's burst is what is left.
        let mut rates = Rates::default();
        let sent = (0..1_000)
            .filter(|i| rates.allow(&pod_event("evil", &format!("p{i}"), "x"), t0))
            .count();
        assert_eq!(sent, EVENT_BURST_PER_NAMESPACE as usize);
        assert!(!rates.allow(
            &pod_event("evil", "fresh", "x"),
            t0 + Duration::from_secs(5)
        ));
        assert!(rates.allow(
            &pod_event("evil", "fresh", "x"),
            t0 + Duration::from_secs(7)
        ));
        // Another namespace is untouched by the flood.
        assert!(rates.allow(&pod_event("shop", "web", "x"), t0));
        // The buckets stay bounded however many objects are named.
        let mut rates = Rates::default();
        for i in 0..3 * REMEMBERED {
            rates.allow(&pod_event(&format!("n{i}"), "p", "x"), t0);
        }
        assert!(rates.objects.len() <= REMEMBERED && rates.namespaces.len() <= REMEMBERED);
    }

    /// client-go's aggregator: past ten distinct notes about one object and
    /// policy, the others are one combined Event (one record, counted in
    /// its series).
    #[test]
    fn similar_events_are_combined() {
        let mut similar = Similar::default();
        let t0 = Instant::now();
        let notes: Vec<String> = (0..30)
            .map(|i| {
                similar
                    .combine(pod_event("evil", "p", &format!("image {i}")), t0)
                    .note
            })
            .collect();
        assert_eq!(
            notes[..EVENT_SIMILAR],
            (0..EVENT_SIMILAR)
                .map(|i| format!("image {i}"))
                .collect::<Vec<_>>()[..]
        );
        let combined = "(combined from similar events): image 10";
        assert!(
            notes[EVENT_SIMILAR..].iter().all(|n| n == combined),
            "{notes:?}"
        );
        // A note seen before stays itself; after the window, all start over.
        assert_eq!(
            similar.combine(pod_event("evil", "p", "image 3"), t0).note,
            "image 3"
        );
        assert_eq!(
            similar
                .combine(pod_event("evil", "p", "image 29"), t0 + SERIES_WINDOW)
                .note,
            "image 29"
        );
    }

    /// A note quotes what a tenant wrote escaped and excerpted.
    #[test]
    fn notes_escape_and_excerpt_tenant_text() {
        let ctx = RequestContext {
            kind: "Pod".into(),
            namespace: "evil".into(),
            name: "p".into(),
            ..Default::default()
        };
        let finding = Finding {
            image: format!("{}{}", '\u{202e}', "\u{7f}".repeat(4_000)),
            field: "spec.containers[0].image".into(),
            digest: None,
            policy: None,
            mode: "enforce".into(),
            decision: FindingDecision::Denied,
            reasons: vec!["bad\nFAKE line".into()],
            authorities: Vec::new(),
            passed: false,
        };
        let note = violation_record(&ctx, &finding).note;
        assert!(note.len() <= NOTE_LIMIT, "{}", note.len());
        assert!(note.starts_with("Denied: image \\u{202e}\\u{7f}"), "{note}");
        assert!(note.contains("…(4,003 bytes)"), "{note}");
        assert!(note.contains("bad\\nFAKE line"), "{note}");
        assert!(!note.contains('\n') && !note.contains('\u{202e}'));
    }

    #[test]
    fn violation_events_name_the_workload_the_policy_and_the_image() {
        let ctx = RequestContext {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
            resource: crate::policy::ResourceRef {
                group: "apps".into(),
                version: "v1".into(),
                resource: "deployments".into(),
                labels: Default::default(),
            },
            ..Default::default()
        };
        let finding = Finding {
            image: "r.example/app:v1".into(),
            field: "spec.template.spec.containers[0].image".into(),
            digest: Some("sha256:abc".into()),
            policy: Some("signed".into()),
            mode: "enforce".into(),
            decision: FindingDecision::Denied,
            reasons: vec!["no signatures found".into()],
            authorities: Vec::new(),
            passed: false,
        };
        let r = violation_record(&ctx, &finding);
        let e = event_json(&r, "sigil-0");
        assert_eq!(
            e["regarding"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"})
        );
        assert_eq!(e["related"]["name"], "signed");
        assert_eq!(e["reason"], "PolicyViolation");
        assert_eq!(e["type"], "Warning");
        assert_eq!(
            e["note"],
            "Denied: image r.example/app:v1 (sha256:abc) at spec.template.spec.containers[0].image fails ClusterImagePolicy signed: no signatures found"
        );
        assert!(serde_json::from_value::<Event>(e).is_ok());
    }
}
