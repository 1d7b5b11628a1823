//! Registry credentials from pull secrets (the pod's `imagePullSecrets`, its
//! service account's, the authorities' `signaturePullSecrets`), read from the
//! API server for the request's own namespace only and cached briefly.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::Client;

use crate::registry::{parse_docker_config, Credentials};
use crate::service::CredentialSource;

/// Registry credentials from pull secrets, read from the API server and
/// cached for a few seconds. Only Secrets and the ServiceAccount of the
/// request's own namespace are read.
pub struct KubeCredentials {
    client: Client,
    cache: moka::future::Cache<(String, Vec<String>, Option<String>), Credentials>,
}

impl KubeCredentials {
    /// A source reading through `client`.
    pub fn new(client: Client) -> Self {
        KubeCredentials {
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(std::time::Duration::from_secs(10))
                .build(),
        }
    }

    async fn load(
        &self,
        namespace: &str,
        names: &[String],
        service_account: Option<&str>,
    ) -> Credentials {
        let mut all: Vec<String> = names.to_vec();
        if let Some(sa) = service_account {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            match api.get_opt(sa).await {
                Ok(Some(sa)) => all.extend(
                    sa.image_pull_secrets
                        .iter()
                        .flatten()
                        .map(|r| r.name.clone()),
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(namespace, service_account = sa, error = %e, "cannot read service account")
                }
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut auths = HashMap::new();
        for name in all {
            match secrets.get_opt(&name).await {
                Ok(Some(secret)) => {
                    for key in [".dockerconfigjson", ".dockercfg"] {
                        if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
                            match parse_docker_config(&bytes.0) {
                                Ok(found) => auths.extend(found),
                                Err(e) => {
                                    tracing::warn!(namespace, secret = %name, error = %e, "unreadable pull secret")
                                }
                            }
                        }
                    }
                }
                Ok(None) => tracing::warn!(namespace, secret = %name, "pull secret not found"),
                Err(e) => {
                    tracing::warn!(namespace, secret = %name, error = %e, "cannot read pull secret")
                }
            }
        }
        Credentials::from_auths(auths)
    }
}

#[async_trait::async_trait]
impl CredentialSource for KubeCredentials {
    async fn credentials(
        &self,
        namespace: &str,
        secret_names: &[String],
        service_account: Option<&str>,
    ) -> Credentials {
        let key = (
            namespace.to_string(),
            secret_names.to_vec(),
            service_account.map(str::to_string),
        );
        self.cache
            .get_with(key, self.load(namespace, secret_names, service_account))
            .await
    }
}
