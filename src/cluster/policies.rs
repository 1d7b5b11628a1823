//! The ClusterImagePolicy watch, with the Secrets (`key.secretRef`,
//! `ca-cert.secretRef`, `githubAttestations.tokenSecretRef`) and ConfigMaps (`configMapRef` programs) of sigil's
//! namespace that policies name: every change recompiles the cluster's
//! policies into the store and writes their `Ready` condition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};

use super::status::StatusWriter;
use super::sync::{ClusterState, Listing};
use super::watch::{watch_all, SOURCE};
use crate::policy::compile::GITHUB_API;
use crate::policy::files::spec_from_value;
use crate::policy::store::PolicyDefinition;
use crate::policy::{ClusterImagePolicy, ClusterImagePolicySpec, PolicyError, PolicyStore};

/// The policy definition of one ClusterImagePolicy object, with every
/// `key.secretRef` replaced by the key it names (a Secret in sigil's own
/// namespace holding exactly one entry).
pub fn definition(
    obj: &DynamicObject,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
    github_api_hosts: &[String],
) -> PolicyDefinition {
    let spec =
        spec_from_value(obj.data.get("spec").cloned().unwrap_or_default()).and_then(|mut spec| {
            let globs = spec
                .images
                .iter()
                .map(|i| i.glob.clone())
                .collect::<Vec<_>>();
            inline_secret_keys(&mut spec, secrets, namespace, github_api_hosts)
                .map_err(|e| (e, globs))?;
            Ok(spec)
        });
    PolicyDefinition {
        name: obj.name_any(),
        spec,
    }
}

fn inline_secret_keys(
    spec: &mut ClusterImagePolicySpec,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
    github_api_hosts: &[String],
) -> Result<(), PolicyError> {
    for (i, authority) in spec.authorities.iter_mut().enumerate() {
        let key = authority
            .key
            .as_mut()
            .map(|k| (k, format!("spec.authorities[{i}].key")));
        let ca = authority
            .keyless
            .as_mut()
            .and_then(|k| k.ca_cert.as_mut())
            .map(|k| (k, format!("spec.authorities[{i}].keyless.ca-cert")));
        for (key, path) in key.into_iter().chain(ca) {
            let Some(secret_ref) = key.secret_ref.take() else {
                continue;
            };
            let field = format!("{path}.secretRef");
            key.data = Some(secret_entry(secret_ref, secrets, namespace, &field)?);
        }
        for (j, source) in authority.sources.iter_mut().enumerate() {
            let Some(github) = source.github_attestations.as_mut() else {
                continue;
            };
            let at = format!("spec.authorities[{i}].source[{j}].githubAttestations");
            // sigil calls only API hosts the admin allows, with or without
            // a token (whoever may write a policy must not be able to point
            // sigil's requests anywhere), and a token comes only from a
            // Secret its owner opted in to this use (whoever may write a
            // policy but not read Secrets must not be able to send one).
            let api = github.url.as_deref().unwrap_or(GITHUB_API);
            allowed_github_api(api, github_api_hosts).map_err(|message| PolicyError {
                field: format!("{at}.url"),
                message,
            })?;
            if let Some(secret_ref) = github.token_secret_ref.clone() {
                let field = format!("{at}.tokenSecretRef");
                let name = secret_ref.name.clone().unwrap_or_default();
                if let Some(secret) = secrets.get(&name) {
                    let opted_in = secret
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(GITHUB_TOKEN_ANNOTATION))
                        .is_some_and(|v| v == "true");
                    if !opted_in {
                        return Err(PolicyError {
                            field,
                            message: format!(
                                "Secret {namespace}/{name} is not opted in to being sent to GitHub's attestation API: annotate it {GITHUB_TOKEN_ANNOTATION}=true"
                            ),
                        });
                    }
                }
                github.token = Some(secret_entry(secret_ref, secrets, namespace, &field)?);
            }
        }
    }
    Ok(())
}

/// The annotation a Secret must carry (`"true"`) before its entry is sent
/// as a `githubAttestations` token.
pub const GITHUB_TOKEN_ANNOTATION: &str = "sigil.dev/github-attestations-token";

/// Whether `api` (a `githubAttestations.url`) is an `https` URL on one of
/// `hosts` (`host` or `host:port`), or why not.
pub fn allowed_github_api(api: &str, hosts: &[String]) -> Result<(), String> {
    let url = reqwest::Url::parse(api).map_err(|e| format!("{api:?} is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{api:?} is not https: GitHub's API is called over https only"
        ));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    if hosts.iter().any(|h| {
        h.eq_ignore_ascii_case(&authority)
            || (url.port().is_none() && h.eq_ignore_ascii_case(&host))
    }) {
        Ok(())
    } else {
        Err(format!(
            "{authority} is not a GitHub API host sigil sends tokens to (allowed: {}); an admin adds one with --github-api-host (chart: sigil.githubApiHosts)",
            hosts.join(", ")
        ))
    }
}

/// The one entry of a Secret in sigil's namespace (a PEM key or CA).
fn secret_entry(
    secret_ref: k8s_openapi::api::core::v1::SecretReference,
    secrets: &BTreeMap<String, Secret>,
    namespace: &str,
    field: &str,
) -> Result<String, PolicyError> {
    let fail = |message: String| PolicyError {
        field: field.to_string(),
        message,
    };
    let name = secret_ref.name.unwrap_or_default();
    if let Some(ns) = secret_ref
        .namespace
        .filter(|ns| !ns.is_empty() && ns != namespace)
    {
        return Err(fail(format!(
            "Secret {ns}/{name} is outside sigil's namespace {namespace}"
        )));
    }
    let secret = secrets
        .get(&name)
        .ok_or_else(|| fail(format!("Secret {namespace}/{name} not found")))?;
    let mut entries: Vec<Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.clone())
        .collect();
    entries.extend(
        secret
            .string_data
            .iter()
            .flatten()
            .map(|(_, v)| v.clone().into_bytes()),
    );
    if entries.len() != 1 {
        return Err(fail(format!(
            "Secret {namespace}/{name} must hold exactly one entry (the PEM key or certificate), found {}",
            entries.len()
        )));
    }
    String::from_utf8(entries.remove(0))
        .map_err(|_| fail(format!("Secret {namespace}/{name} is not text")))
}

enum Change {
    Policy(Result<Event<DynamicObject>, watcher::Error>),
    Secret(Result<Event<Secret>, watcher::Error>),
    ConfigMap(Result<Event<ConfigMap>, watcher::Error>),
    Leader,
    /// Time to look whether a KMS key is due for refresh.
    Tick,
}

/// Where sigil's own Secrets live and what may be done with them.
#[derive(Debug, Clone)]
pub struct PolicyWatch {
    /// sigil's namespace: `key.secretRef`, `tokenSecretRef` and
    /// `configMapRef` name objects here.
    pub namespace: String,
    /// sigil's serving-certificate Secret, not watched as a policy input.
    pub tls_secret: Option<String>,
    /// `--github-api-host`.
    pub github_api_hosts: Vec<String>,
}

/// Keeps the store's cluster policies current and writes their status.
/// ClusterImagePolicies are read as dynamic objects, so one that does not
/// fit the schema becomes an invalid policy instead of breaking the list.
/// Secrets in sigil's `namespace` are watched too, so a rotated
/// `key.secretRef` key recompiles the policies that use it; all but
/// `tls_secret`, sigil's own serving certificate, whose renewals are no
/// policy's business.
pub async fn watch_policies(
    client: Client,
    store: Arc<PolicyStore>,
    state: Arc<ClusterState>,
    settings: PolicyWatch,
    events: Option<Arc<super::EventRecorder>>,
    leadership: Option<super::Leadership>,
) {
    let PolicyWatch {
        namespace,
        tls_secret,
        github_api_hosts,
    } = settings;
    let resource = ApiResource::erase::<ClusterImagePolicy>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let leader_changes =
        super::status::leader_changes(leadership.as_ref()).map(|()| Change::Leader);
    let mut status: StatusWriter<ClusterImagePolicy> = StatusWriter::new(
        client.clone(),
        "policy compiled and in force",
        events,
        leadership,
    );
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let configmaps_api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let policies = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .map(Change::Policy);
    let secrets_config = match &tls_secret {
        Some(name) => watcher::Config::default().fields(&format!("metadata.name!={name}")),
        None => watcher::Config::default(),
    };
    let secret_events = watcher::watcher(secrets_api, secrets_config)
        .default_backoff()
        .map(Change::Secret);
    let configmap_events = watch_all(configmaps_api).map(Change::ConfigMap);
    let mut stream = futures::stream::select_all([
        policies.boxed(),
        secret_events.boxed(),
        configmap_events.boxed(),
        leader_changes.boxed(),
        futures::stream::unfold((), |()| async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Some((Change::Tick, ()))
        })
        .boxed(),
    ]);

    let remote = crate::policy::sources::RemotePrograms::default();
    let mut policies: Listing<DynamicObject> = Listing::default();
    let mut secrets: Listing<Secret> = Listing::default();
    let mut configmaps: Listing<ConfigMap> = Listing::default();
    while let Some(change) = stream.next().await {
        let changed = match change {
            Change::Policy(Ok(event)) => policies.apply(event, |o| o),
            Change::Secret(Ok(event)) => secrets.apply(event, |s| s),
            Change::ConfigMap(Ok(event)) => configmaps.apply(event, |c| c),
            Change::Leader => {
                status.catch_up().await;
                continue;
            }
            Change::Tick => remote.refresh_due(),
            Change::Policy(Err(e)) | Change::Secret(Err(e)) | Change::ConfigMap(Err(e)) => {
                // Retried by the watcher: resumed, or re-listed (`Init`).
                tracing::warn!(error = %e, "policy, secret or ConfigMap watch failed; retrying");
                false
            }
        };
        if !(policies.synced() && secrets.synced() && configmaps.synced()) {
            // A (re-)list is under way: the view may be missing changes.
            state.set(&state.policies_synced, false);
            continue;
        }
        if !changed && state.policies_synced.load(Ordering::Acquire) {
            continue;
        }
        let current = &policies.current;
        status.retain(|name| current.contains_key(name));
        let mut defs: Vec<PolicyDefinition> = current
            .values()
            .map(|o| definition(o, &secrets.current, &namespace, &github_api_hosts))
            .collect();
        let programs: crate::policy::sources::ConfigMaps = configmaps
            .current
            .iter()
            .map(|(name, cm)| {
                (
                    name.clone(),
                    cm.data.clone().unwrap_or_default().into_iter().collect(),
                )
            })
            .collect();
        remote.resolve(&mut defs, Some(&programs)).await;
        let loaded = store.replace_source(SOURCE, &defs);
        state.set(&state.policies_synced, true);
        for policy in &loaded {
            let generation = current
                .get(policy.name())
                .and_then(|o| o.metadata.generation);
            let error = policy.error().map(|e| e.to_string());
            status.write(policy.name(), generation, error).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ca_cert_secret_refs_are_inlined_or_named_when_missing() {
        let resource = ApiResource::erase::<ClusterImagePolicy>(&());
        let obj = |secret: &str| {
            let mut o = DynamicObject::new("p", &resource);
            o.data = json!({"spec": {
                "images": [{"glob": "**"}],
                "authorities": [{"keyless": {
                    "ca-cert": {"secretRef": {"name": secret}},
                    "identities": [{"issuer": "i", "subject": "s"}],
                }}],
            }});
            o
        };
        let mut secret = Secret::default();
        secret.metadata.name = Some("ca".into());
        secret.string_data = Some(BTreeMap::from([("ca.pem".to_string(), "PEM".to_string())]));
        let secrets = BTreeMap::from([("ca".to_string(), secret)]);
        let def = definition(&obj("ca"), &secrets, "sigil-system", &hosts());
        let spec = def.spec.unwrap();
        let ca = spec.authorities[0]
            .keyless
            .as_ref()
            .unwrap()
            .ca_cert
            .as_ref()
            .unwrap();
        assert_eq!(ca.data.as_deref(), Some("PEM"));
        assert!(ca.secret_ref.is_none());
        let def = definition(&obj("gone"), &secrets, "sigil-system", &hosts());
        let (e, _) = def.spec.unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].keyless.ca-cert.secretRef");
        assert_eq!(e.message, "Secret sigil-system/gone not found");
    }

    /// `--github-api-host` when not given.
    fn hosts() -> Vec<String> {
        vec!["api.github.com".to_string()]
    }

    /// A token is read only from a Secret annotated for this use and only
    /// for an API host the admin allows; otherwise the policy is refused
    /// naming the field, and the token stays where it is.
    #[test]
    fn a_github_token_goes_only_to_allowed_hosts_from_opted_in_secrets() {
        let resource = ApiResource::erase::<ClusterImagePolicy>(&());
        let obj = |url: Option<&str>| {
            let mut o = DynamicObject::new("p", &resource);
            let mut github = json!({"owner": "acme", "tokenSecretRef": {"name": "gh"}});
            if let Some(u) = url {
                github["url"] = json!(u);
            }
            o.data = json!({"spec": {
                "images": [{"glob": "**"}],
                "authorities": [{
                    "keyless": {"identities": [{"issuer": "i", "subject": "s"}]},
                    "source": [{"githubAttestations": github}],
                }],
            }});
            o
        };
        let secret = |annotated: bool| {
            let mut s = Secret::default();
            s.metadata.name = Some("gh".into());
            if annotated {
                s.metadata.annotations = Some(BTreeMap::from([(
                    GITHUB_TOKEN_ANNOTATION.to_string(),
                    "true".to_string(),
                )]));
            }
            s.string_data = Some(BTreeMap::from([("token".to_string(), "t0ken".to_string())]));
            BTreeMap::from([("gh".to_string(), s)])
        };
        let field = "spec.authorities[0].source[0].githubAttestations";
        // Any one-entry Secret, not opted in: refused.
        let (e, _) = definition(&obj(None), &secret(false), "sigil-system", &hosts())
            .spec
            .unwrap_err();
        assert_eq!(e.field, format!("{field}.tokenSecretRef"));
        assert!(e.message.contains(GITHUB_TOKEN_ANNOTATION), "{}", e.message);
        // A host of the policy writer's choosing: refused before the
        // Secret is read.
        for url in [
            "https://collector.evil.example",
            "http://api.github.com",
            "https://api.github.com:8443",
        ] {
            let (e, _) = definition(&obj(Some(url)), &secret(true), "sigil-system", &hosts())
                .spec
                .unwrap_err();
            assert_eq!(e.field, format!("{field}.url"), "{url}");
            // Without a token too: sigil calls only hosts the admin allows.
            let mut tokenless = obj(Some(url));
            tokenless.data["spec"]["authorities"][0]["source"][0]["githubAttestations"]
                .as_object_mut()
                .unwrap()
                .remove("tokenSecretRef");
            let (e, _) = definition(&tokenless, &BTreeMap::new(), "sigil-system", &hosts())
                .spec
                .unwrap_err();
            assert_eq!(e.field, format!("{field}.url"), "{url} without a token");
        }
        // The default API, and a GitHub Enterprise Server the admin lists.
        let spec = definition(&obj(None), &secret(true), "sigil-system", &hosts())
            .spec
            .unwrap();
        assert_eq!(
            spec.authorities[0].sources[0]
                .github_attestations
                .as_ref()
                .unwrap()
                .token
                .as_deref(),
            Some("t0ken")
        );
        let ghes = vec!["api.github.com".to_string(), "GHE.acme.example".to_string()];
        assert!(definition(
            &obj(Some("https://ghe.acme.example/api/v3")),
            &secret(true),
            "sigil-system",
            &ghes
        )
        .spec
        .is_ok());
    }

    #[test]
    fn github_token_secret_refs_are_read_and_kept_out_of_the_spec() {
        let resource = ApiResource::erase::<ClusterImagePolicy>(&());
        let obj = |secret: &str| {
            let mut o = DynamicObject::new("p", &resource);
            o.data = json!({"spec": {
                "images": [{"glob": "**"}],
                "authorities": [{
                    "keyless": {"identities": [{"issuer": "i", "subject": "s"}]},
                    "source": [{"githubAttestations": {"owner": "acme", "tokenSecretRef": {"name": secret}}}],
                }],
            }});
            o
        };
        let mut secret = Secret::default();
        secret.metadata.name = Some("gh".into());
        secret.metadata.annotations = Some(BTreeMap::from([(
            GITHUB_TOKEN_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        secret.string_data = Some(BTreeMap::from([(
            "token".to_string(),
            "t0ken\n".to_string(),
        )]));
        let secrets = BTreeMap::from([("gh".to_string(), secret)]);
        let spec = definition(&obj("gh"), &secrets, "sigil-system", &hosts())
            .spec
            .unwrap();
        let github = spec.authorities[0].sources[0]
            .github_attestations
            .as_ref()
            .unwrap();
        assert_eq!(github.token.as_deref(), Some("t0ken\n"));
        // The token never travels back out with the spec.
        assert!(!serde_json::to_string(&spec).unwrap().contains("t0ken"));
        let (e, _) = definition(&obj("gone"), &secrets, "sigil-system", &hosts())
            .spec
            .unwrap_err();
        assert_eq!(
            e.field,
            "spec.authorities[0].source[0].githubAttestations.tokenSecretRef"
        );
        assert_eq!(e.message, "Secret sigil-system/gone not found");
    }
}
