//! `--tls-secret` (the chart's `certificates.mode: self`): the I/O of
//! self-managed serving certificates; every decision is
//! [`crate::certificates::plan`].
//!
//! - Every replica serves the certificate the Secret holds and reloads it
//!   when the Secret changes ([`serve_from_secret`]). Until it has one it is
//!   not ready; when the Secret goes away it keeps serving the last one.
//! - Only the Lease holder writes ([`keep_certificates`]): the Secret, and
//!   the `caBundle` of the webhook configurations named by
//!   `--inject-ca-bundle`. Webhooks are patched before the Secret is
//!   written, so a CA is trusted before anything signed by it is served.
//!
//! Owns nothing else: it must not touch other Secrets or webhook
//! configurations (its RBAC names them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;

use super::Leadership;
use crate::certificates::{
    self, Lifetimes, Stored, WebhookConfigRef, CA_BUNDLE, CA_CERT, CA_KEY, INJECTED_AT,
    INJECTED_BUNDLE, TLS_CERT, TLS_KEY,
};

/// What the Lease holder keeps.
#[derive(Debug, Clone)]
pub struct SelfManagedCertificates {
    /// sigil's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The serving certificate's names.
    pub names: Vec<String>,
    /// Whose `caBundle` to keep.
    pub webhooks: Vec<WebhookConfigRef>,
    /// Lifetimes and renewal.
    pub lifetimes: Lifetimes,
}

/// Why one look at the certificates failed (retried at the next).
#[derive(Debug, thiserror::Error)]
pub enum CertificatesError {
    /// The apiserver refused or failed.
    #[error("{what}: {source}")]
    Api {
        /// Which object.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// Material could not be made.
    #[error(transparent)]
    Material(#[from] certificates::CertError),
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// What `secret` holds, as [`Stored`].
pub fn stored_of(secret: &Secret) -> Stored {
    let data = secret.data.clone().unwrap_or_default();
    let annotation = |k: &str| {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k).cloned())
    };
    Stored {
        ca_cert: text(&data, CA_CERT),
        ca_key: text(&data, CA_KEY),
        ca_bundle: text(&data, CA_BUNDLE),
        tls_cert: text(&data, TLS_CERT),
        tls_key: text(&data, TLS_KEY),
        injected_bundle: annotation(INJECTED_BUNDLE),
        injected_at: annotation(INJECTED_AT),
    }
}

fn secret_of(name: &str, stored: &Stored, base: Option<Secret>) -> Secret {
    let mut secret = base.unwrap_or_default();
    secret.metadata.name = Some(name.into());
    secret.type_ = Some("Opaque".into());
    let labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("app.kubernetes.io/name".into(), "sigil".into());
    labels.insert(
        "app.kubernetes.io/component".into(),
        "serving-certificate".into(),
    );
    let mut data = BTreeMap::new();
    for (key, value) in [
        (CA_CERT, &stored.ca_cert),
        (CA_KEY, &stored.ca_key),
        (CA_BUNDLE, &stored.ca_bundle),
        (TLS_CERT, &stored.tls_cert),
        (TLS_KEY, &stored.tls_key),
    ] {
        if let Some(v) = value {
            data.insert(key.to_string(), ByteString(v.clone().into_bytes()));
        }
    }
    secret.data = Some(data);
    secret.string_data = None;
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in [
        (INJECTED_BUNDLE, &stored.injected_bundle),
        (INJECTED_AT, &stored.injected_at),
    ] {
        match value {
            Some(v) => annotations.insert(key.to_string(), v.clone()),
            None => annotations.remove(key),
        };
    }
    secret
}

/// Serves what the Secret holds: reloads `config` whenever the Secret's
/// serving certificate changes, and sets `loaded` once it has one.
/// `client_ca` is `--client-ca`'s PEM, kept across reloads.
pub async fn serve_from_secret(
    client: Client,
    namespace: String,
    name: String,
    config: RustlsConfig,
    client_ca: Option<Vec<u8>>,
    loaded: Arc<AtomicBool>,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let mut stream = watcher::watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .boxed();
    let mut serving: Option<(String, String)> = None;
    while let Some(event) = stream.next().await {
        let secret = match event {
            Ok(Event::Apply(s) | Event::InitApply(s)) => s,
            Ok(Event::Delete(_)) => {
                tracing::warn!(secret = %name, "serving certificate Secret deleted; serving the last certificate until the leader writes a new one");
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate Secret watch failed; retrying");
                continue;
            }
        };
        let Some(pair) = certificates::servable(&stored_of(&secret), SystemTime::now()) else {
            continue;
        };
        if serving.as_ref() == Some(&pair) {
            continue;
        }
        match crate::tls::server_config(pair.0.as_bytes(), pair.1.as_bytes(), client_ca.as_deref())
        {
            Ok(c) => {
                config.reload_from_config(c);
                loaded.store(true, Ordering::Release);
                crate::tls::record_serving_expiry(pair.0.as_bytes());
                tracing::info!(secret = %name, "serving certificate loaded from the Secret");
                serving = Some(pair);
            }
            Err(e) => {
                tracing::error!(error = %e, "the Secret's serving certificate is unusable; keeping the previous one")
            }
        }
    }
}

/// The Lease holder's loop: looks every `check_interval` and writes what
/// [`certificates::plan`] asks for. Others only wait.
pub async fn keep_certificates(
    client: Client,
    settings: SelfManagedCertificates,
    leadership: Leadership,
) {
    let interval = settings.lifetimes.check_interval();
    let mut leader_changes = leadership.changes();
    loop {
        if leadership.is_leader() {
            if let Err(e) = look(&client, &settings).await {
                tracing::warn!(error = %e, "cannot keep the serving certificate; retrying");
            }
        }
        // Looks at once when this replica becomes the leader.
        let _ = tokio::time::timeout(interval, leader_changes.changed()).await;
    }
}

/// One look, as the Lease holder.
pub async fn look(client: &Client, s: &SelfManagedCertificates) -> Result<(), CertificatesError> {
    let api_error = |what: String| move |source| CertificatesError::Api { what, source };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &s.namespace);
    let secret_name = format!("Secret {}/{}", s.namespace, s.secret);
    let existing = secrets
        .get_opt(&s.secret)
        .await
        .map_err(api_error(secret_name.clone()))?;
    let stored = existing.as_ref().map(stored_of).unwrap_or_default();

    // Every webhook's caBundle, per configuration that exists.
    let mut configs: Vec<(WebhookConfigRef, Vec<(String, String)>)> = Vec::new();
    for reference in &s.webhooks {
        let hooks = webhooks_of(client, reference)
            .await
            .map_err(api_error(reference.to_string()))?;
        match hooks {
            Some(h) => configs.push((reference.clone(), h)),
            None => {
                tracing::warn!(webhook = %reference, "webhook configuration not found; its caBundle is not kept")
            }
        }
    }
    let live: Vec<String> = configs
        .iter()
        .flat_map(|(_, hooks)| hooks.iter().map(|(_, bundle)| bundle.clone()))
        .collect();

    let plan = certificates::plan(&stored, &live, &s.names, SystemTime::now(), &s.lifetimes)?;
    if plan.inject {
        for (reference, hooks) in &configs {
            if hooks.iter().all(|(_, b)| *b == plan.bundle) {
                continue;
            }
            inject(client, reference, hooks, &plan.bundle)
                .await
                .map_err(api_error(reference.to_string()))?;
            tracing::info!(webhook = %reference, "caBundle written");
        }
    }
    if plan.stored != stored {
        let secret = secret_of(&s.secret, &plan.stored, existing.clone());
        // create, or replace at the resourceVersion read: a concurrent writer
        // makes this a conflict, and the next look starts over.
        match existing {
            Some(_) => secrets
                .replace(&s.secret, &PostParams::default(), &secret)
                .await
                .map(|_| ()),
            None => secrets
                .create(&PostParams::default(), &secret)
                .await
                .map(|_| ()),
        }
        .map_err(api_error(secret_name))?;
    }
    if !plan.changes.is_empty() {
        tracing::info!(changes = ?plan.changes, secret = %s.secret, "serving certificate material renewed");
    }
    Ok(())
}

/// (webhook name, caBundle PEM) of each webhook in the configuration.
async fn webhooks_of(
    client: &Client,
    reference: &WebhookConfigRef,
) -> Result<Option<Vec<(String, String)>>, kube::Error> {
    let bundle = |b: Option<ByteString>| {
        b.map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    Ok(match reference {
        WebhookConfigRef::Validating(name) => {
            Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .get_opt(name)
                .await?
                .map(|c| {
                    c.webhooks
                        .unwrap_or_default()
                        .into_iter()
                        .map(|w| (w.name, bundle(w.client_config.ca_bundle)))
                        .collect()
                })
        }
        WebhookConfigRef::Mutating(name) => {
            Api::<MutatingWebhookConfiguration>::all(client.clone())
                .get_opt(name)
                .await?
                .map(|c| {
                    c.webhooks
                        .unwrap_or_default()
                        .into_iter()
                        .map(|w| (w.name, bundle(w.client_config.ca_bundle)))
                        .collect()
                })
        }
    })
}

/// Sets every webhook's caBundle in one JSON patch, each guarded by a test
/// of the webhook's name at that index (a concurrent edit fails the patch).
async fn inject(
    client: &Client,
    reference: &WebhookConfigRef,
    hooks: &[(String, String)],
    bundle: &str,
) -> Result<(), kube::Error> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = Vec::new();
    for (i, (name, _)) in hooks.iter().enumerate() {
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(kube::Error::SerdeError)?;
    let patch = Patch::Json::<()>(patch);
    let params = PatchParams::default();
    match reference {
        WebhookConfigRef::Validating(name) => {
            Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .patch(name, &params, &patch)
                .await?;
        }
        WebhookConfigRef::Mutating(name) => {
            Api::<MutatingWebhookConfiguration>::all(client.clone())
                .patch(name, &params, &patch)
                .await?;
        }
    }
    Ok(())
}
