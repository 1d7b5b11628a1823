//! Keys that never leave a KMS (`key.kms`), resolved into `key.data` before
//! a policy is compiled, so verification is exactly that of an inline key.
//!
//! AWS KMS only (`awskms://[ENDPOINT]/KEY`, cosign's forms: key ID, key ARN,
//! `alias/NAME`, alias ARN). The public key comes from `GetPublicKey`
//! through the official AWS SDK with the standard chain: `AWS_REGION`,
//! access keys, web identity (IRSA), instance metadata, and
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KMS`; an endpoint in the reference
//! wins (`https://ENDPOINT`, as cosign dials it).
//!
//! Each key is cached per reference and fetched again once older than the
//! refresh interval (a rotated alias picks up its new key). A fetch that
//! fails caches nothing: the policy becomes invalid naming the field, so
//! its images fail closed, and the fetch is retried every
//! [`RETRY_AFTER`]. `gcpkms://`, `azurekms://` and `hashivault://` are not
//! resolved (no server of those APIs to test against here) and fail closed
//! at compile time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::model::error::PolicyError;
use crate::policy::store::PolicyDefinition;
use crate::policy::types::ClusterImagePolicySpec;

/// Default of `--kms-refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A failed fetch is tried again after this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// One `GetPublicKey`, retries included, takes at most this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

pub use super::kms_ref::{parse_aws, AwsKmsRef};

#[derive(Default)]
struct Cache {
    /// reference → (PEM public key, when fetched).
    keys: HashMap<String, (String, Instant)>,
    /// reference → when a fetch last failed.
    failed: HashMap<String, Instant>,
}

/// The process's KMS public keys.
pub struct KmsKeys {
    refresh: Duration,
    cache: Mutex<Cache>,
    sdk: tokio::sync::OnceCell<aws_config::SdkConfig>,
}

static GLOBAL: OnceLock<KmsKeys> = OnceLock::new();

/// Sets the refresh interval of [`global`] (`--kms-refresh`); the first
/// call wins.
pub fn configure(refresh: Duration) {
    let _ = GLOBAL.set(KmsKeys::new(refresh));
}

/// The keys every policy source of this process shares.
pub fn global() -> &'static KmsKeys {
    GLOBAL.get_or_init(|| KmsKeys::new(DEFAULT_REFRESH))
}

/// Whether `defs` name an `awskms://` key.
pub fn has_aws_keys(defs: &[PolicyDefinition]) -> bool {
    defs.iter().any(|d| {
        d.spec.as_ref().is_ok_and(|s| {
            s.authorities.iter().any(|a| {
                a.key
                    .as_ref()
                    .and_then(|k| k.kms.as_deref())
                    .is_some_and(|k| k.starts_with("awskms://"))
            })
        })
    })
}

impl KmsKeys {
    /// Keys refreshed every `refresh`.
    pub fn new(refresh: Duration) -> Self {
        KmsKeys {
            refresh,
            cache: Mutex::new(Cache::default()),
            sdk: tokio::sync::OnceCell::new(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a cached key is due for refresh or a failed one for retry:
    /// the policy sources then resolve (and recompile) again.
    pub fn refresh_due(&self) -> bool {
        let cache = self.cache();
        cache
            .keys
            .values()
            .any(|(_, at)| at.elapsed() >= self.refresh)
            || cache.failed.values().any(|at| at.elapsed() >= RETRY_AFTER)
    }

    /// The PEM public key of `reference`, from the cache while fresh.
    pub async fn public_key(&self, reference: &str) -> Result<String, String> {
        if let Some((pem, at)) = self.cache().keys.get(reference) {
            if at.elapsed() < self.refresh {
                return Ok(pem.clone());
            }
        }
        let parsed = parse_aws(reference)?;
        match self.fetch(&parsed).await {
            Ok(pem) => {
                let mut cache = self.cache();
                cache.failed.remove(reference);
                cache
                    .keys
                    .insert(reference.to_string(), (pem.clone(), Instant::now()));
                Ok(pem)
            }
            Err(e) => {
                let mut cache = self.cache();
                cache.keys.remove(reference);
                cache.failed.insert(reference.to_string(), Instant::now());
                Err(e)
            }
        }
    }

    async fn fetch(&self, r: &AwsKmsRef) -> Result<String, String> {
        let sdk = self
            .sdk
            .get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load())
            .await;
        let mut config = aws_sdk_kms::config::Builder::from(sdk);
        if let Some(endpoint) = &r.endpoint {
            config = config.endpoint_url(format!("https://{endpoint}"));
        }
        let client = aws_sdk_kms::Client::from_conf(config.build());
        let answer = tokio::time::timeout(
            FETCH_TIMEOUT,
            client.get_public_key().key_id(&r.key_id).send(),
        )
        .await
        .map_err(|_| format!("GetPublicKey timed out after {FETCH_TIMEOUT:?}"))?
        .map_err(|e| {
            format!(
                "GetPublicKey: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            )
        })?;
        if answer.key_usage() != Some(&aws_sdk_kms::types::KeyUsageType::SignVerify) {
            return Err(format!(
                "key usage is {:?}, not SIGN_VERIFY",
                answer.key_usage().map(|u| u.as_str())
            ));
        }
        let der = answer
            .public_key()
            .ok_or_else(|| "GetPublicKey returned no public key".to_string())?;
        Ok(pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            der.as_ref().to_vec(),
        )))
    }

    /// Replaces every `awskms://` `key.kms` of `defs` with the key it names
    /// (`key.data`); a policy whose key cannot be fetched becomes invalid,
    /// naming the field and the reason.
    pub async fn resolve(&self, defs: &mut [PolicyDefinition]) {
        for def in defs.iter_mut() {
            let Ok(spec) = &mut def.spec else { continue };
            if let Err(e) = self.resolve_spec(spec).await {
                tracing::warn!(policy = %def.name, error = %e, "cannot fetch a KMS key; the policy fails closed");
                let globs = spec.images.iter().map(|i| i.glob.clone()).collect();
                def.spec = Err((e, globs));
            }
        }
    }

    async fn resolve_spec(&self, spec: &mut ClusterImagePolicySpec) -> Result<(), PolicyError> {
        for (i, authority) in spec.authorities.iter_mut().enumerate() {
            let Some(key) = authority.key.as_mut() else {
                continue;
            };
            let Some(reference) = key.kms.clone().filter(|k| k.starts_with("awskms://")) else {
                continue;
            };
            let pem = self.public_key(&reference).await.map_err(|e| PolicyError {
                field: format!("spec.authorities[{i}].key.kms"),
                message: format!("cannot fetch the public key of {reference} from AWS KMS: {e}"),
            })?;
            key.kms = None;
            key.data = Some(pem);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosign_reference_forms_parse() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        for (reference, endpoint, key) in [
            (format!("awskms:///{id}"), None, id.to_string()),
            (
                format!("awskms://localhost:4566/{id}"),
                Some("localhost:4566"),
                id.to_string(),
            ),
            (
                "awskms:///alias/release-key".into(),
                None,
                "alias/release-key".into(),
            ),
            (
                format!("awskms:///arn:aws:kms:us-east-2:111122223333:key/{id}"),
                None,
                format!("arn:aws:kms:us-east-2:111122223333:key/{id}"),
            ),
            (
                "awskms:///arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/Example".into(),
                None,
                "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/Example".into(),
            ),
            (
                "awskms:///mrk-1234abcd12ab34cd56ef1234567890ab".into(),
                None,
                "mrk-1234abcd12ab34cd56ef1234567890ab".into(),
            ),
        ] {
            let parsed = parse_aws(&reference).unwrap_or_else(|e| panic!("{reference}: {e}"));
            assert_eq!(parsed.endpoint.as_deref(), endpoint, "{reference}");
            assert_eq!(parsed.key_id, key, "{reference}");
        }
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for (reference, says) in [
            ("awskms://", "expected awskms://[ENDPOINT]/KEY"),
            ("awskms://localhost/alias/x", "expected host:port"),
            ("awskms:///not-a-key", "is not a key ID"),
            ("awskms:///alias/", "is not a key ID"),
            ("awskms:///arn:aws:kms:us-east-2:1111:key/x", "is not a key ID"),
            ("awskms:///arn:aws:s3:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "is not a key ID"),
            ("gcpkms://projects/p", "not an awskms:// reference"),
        ] {
            let e = parse_aws(reference).unwrap_err();
            assert!(e.contains(says), "{reference}: {e}");
        }
    }

    #[tokio::test]
    async fn a_failed_fetch_caches_nothing_and_fails_the_policy_closed() {
        // Nothing listens on port 9 (and this process may have no region or
        // credentials either): the fetch fails.
        let keys = KmsKeys::new(Duration::from_secs(60));
        let yaml = "images: [{glob: '**'}]\nauthorities: [{key: {kms: 'awskms://127.0.0.1:9/alias/gone'}}]\n";
        let spec = crate::policy::files::spec_from_value(
            serde_saphyr::from_str::<serde_json::Value>(yaml).unwrap(),
        )
        .unwrap();
        let mut defs = vec![PolicyDefinition {
            name: "p".into(),
            spec: Ok(spec),
        }];
        assert!(has_aws_keys(&defs));
        keys.resolve(&mut defs).await;
        let (e, globs) = defs[0].spec.as_ref().unwrap_err();
        assert_eq!(e.field, "spec.authorities[0].key.kms");
        assert!(
            e.message
                .starts_with("cannot fetch the public key of awskms://127.0.0.1:9/alias/gone from AWS KMS: GetPublicKey"),
            "{}",
            e.message
        );
        assert_eq!(globs, &["**".to_string()]);
        assert!(keys.cache().keys.is_empty());
        assert!(keys
            .cache()
            .failed
            .contains_key("awskms://127.0.0.1:9/alias/gone"));
        assert!(
            !keys.refresh_due(),
            "retried after {RETRY_AFTER:?}, not at once"
        );
    }
}
