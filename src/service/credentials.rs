//! A request's registry credentials: the workload's and its service
//! account's pull secrets and the matched authorities'
//! `signaturePullSecrets`, all from the request's own namespace.

use super::Evaluator;
use crate::audit::RequestContext;
use crate::policy::LoadedPolicy;
use crate::registry::Credentials;

impl Evaluator {
    /// The credentials a tag is resolved with: the request's, and, unless
    /// `--resolve-with-workload-credentials`, sigil's own too.
    pub(super) fn resolution_credentials(&self, creds: &Credentials) -> Credentials {
        if self.settings.resolve_with_workload_credentials {
            creds.exclusive()
        } else {
            creds.clone()
        }
    }

    /// The registry credentials of a request: the workload's and its service
    /// account's pull secrets plus the matched authorities'
    /// `signaturePullSecrets`, all from the request's namespace. `Err` when
    /// they name more pull secrets than sigil reads (the reason names the
    /// field).
    pub(super) async fn request_credentials<'a>(
        &self,
        ctx: &RequestContext,
        matches: impl Iterator<Item = &'a LoadedPolicy>,
        deadline: tokio::time::Instant,
    ) -> Result<Credentials, String> {
        let Some(source) = &self.credentials else {
            return Ok(Credentials::none());
        };
        let mut names = ctx.pull_secrets.clone();
        for m in matches {
            if let LoadedPolicy::Valid(p) = m {
                names.extend(
                    p.authorities
                        .iter()
                        .flat_map(|a| a.signature_pull_secrets.iter().cloned()),
                );
            }
        }
        names.sort();
        names.dedup();
        tokio::time::timeout_at(
            deadline,
            source.credentials(&ctx.namespace, &names, ctx.service_account.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Ok(Credentials::none()))
    }
}
