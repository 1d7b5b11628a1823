//! Kubernetes Events (`events.k8s.io/v1`): one for every denied, warned
//! and would-be denied image (reason `PolicyViolation`, type Warning,
//! regarding the workload, related the ClusterImagePolicy), and one when a
//! ClusterImagePolicy or TrustRoot turns not-Ready (reason `NotReady`).
//!
//! Sending never delays or changes an admission answer: records go through
//! a bounded queue (`try_send`; a full queue drops the record and counts
//! it), and one task sends them. A repeat of an event sent in the last
//! [`SERIES_WINDOW`] updates that Event's `series` (count, last seen)
//! instead of creating another. It decides nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::audit::RequestContext;
use crate::decision::{Finding, FindingDecision};
use crate::metrics::{self, EventOutcome};

/// Records waiting to be sent; more are dropped (and counted).
pub const QUEUE: usize = 1_024;
/// A repeat within this long is counted into the first Event's series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// Distinct events remembered for aggregation.
const REMEMBERED: usize = 4_096;
/// The apiserver's limit on `note`.
const NOTE_LIMIT: usize = 1_024;
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

/// The queue's sending end.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<EventRecord>,
}

impl EventRecorder {
    /// Starts the sending task; `instance` names this replica in
    /// `reportingInstance` (its pod name).
    pub fn start(client: Client, instance: String) -> Arc<EventRecorder> {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_events(client, instance, rx));
        Arc::new(EventRecorder { queue })
    }

    /// Queues `record`, or drops it (counted) when the queue is full.
    pub fn record(&self, record: EventRecord) {
        if self.queue.try_send(record).is_err() {
            metrics::global().event(EventOutcome::dropped);
        }
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
    let digest = finding.digest.as_deref().unwrap_or("digest unresolved");
    let note = match &finding.policy {
        Some(p) => format!(
            "{action}: image {} ({digest}) at {} fails ClusterImagePolicy {p}: {}",
            finding.image,
            finding.field,
            finding.reasons.join("; ")
        ),
        None => format!(
            "{action}: image {} ({digest}) at {}: {}",
            finding.image,
            finding.field,
            finding.reasons.join("; ")
        ),
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
        note: truncated(format!("{kind} {name} is not Ready: {error}")),
    }
}

fn truncated(mut note: String) -> String {
    if note.len() > NOTE_LIMIT {
        let mut end = NOTE_LIMIT - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
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
    let metrics = metrics::global();
    while let Some(record) = queue.recv().await {
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

/// Creates the Event `json` describes.
async fn create(api: &Api<Event>, json: &Value) -> Result<Event, kube::Error> {
    let event: Event = serde_json::from_value(json.clone()).map_err(kube::Error::SerdeError)?;
    api.create(&PostParams::default(), &event).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let recorder = EventRecorder { queue };
        let record = not_ready_record("v1", "Thing", "t", "broken");
        let before = dropped();
        let started = Instant::now();
        for _ in 0..QUEUE + 5 {
            recorder.record(record.clone());
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
        assert!(cut.ends_with("..."));
        assert_eq!(truncated("short".into()), "short");
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
