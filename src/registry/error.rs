//! Registry failures, worded for a deny message, and how HTTP answers and
//! transport errors map to them. Only "not found" says something about the
//! image; everything else is transient and never cached.

use oci_client::Reference;
use reqwest::StatusCode;
use serde::Deserialize;

use super::options::MAX_ERROR_BODY_BYTES;

/// A registry failure, worded for a deny message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// Could not connect.
    #[error("registry {registry} unreachable: {reason}")]
    Unreachable {
        /// Host.
        registry: String,
        /// Cause, e.g. `connection refused`.
        reason: String,
    },
    /// The registry did not answer in time.
    #[error("registry {registry} timed out")]
    Timeout {
        /// Host.
        registry: String,
    },
    /// Credentials missing or refused.
    #[error("registry {registry} denied access to {repository}: {reason}")]
    Unauthorized {
        /// Host.
        registry: String,
        /// Repository.
        repository: String,
        /// Detail.
        reason: String,
    },
    /// The manifest or tag does not exist.
    #[error("{reference} not found")]
    NotFound {
        /// What was looked up.
        reference: String,
    },
    /// The registry asked sigil to slow down (HTTP 429).
    #[error("registry {registry} is throttling requests (HTTP 429{})", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    Throttled {
        /// Host.
        registry: String,
        /// `Retry-After`, in seconds, when given.
        retry_after: Option<u64>,
    },
    /// A namespace has spent its budget of calls to this API (sigil's own
    /// limit, not the server's): nothing was sent.
    #[error("{api}: namespace {namespace} has used its budget of calls ({budget}); not asked")]
    OverBudget {
        /// The API's host.
        api: String,
        /// The namespace.
        namespace: String,
        /// The budget, worded.
        budget: String,
    },
    /// A body larger than sigil reads.
    #[error("registry {registry} sent more than {limit} bytes for {what}")]
    TooLarge {
        /// Host.
        registry: String,
        /// What was being read.
        what: String,
        /// The cap.
        limit: usize,
    },
    /// Content whose hash is not the digest it was fetched by.
    #[error("registry {registry} sent content for {what} whose digest is {actual}")]
    DigestMismatch {
        /// Host.
        registry: String,
        /// What was asked for (`repo@sha256:…`).
        what: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The registry kept failing; it is not contacted until the breaker's
    /// cooldown is over.
    #[error("registry {registry} is failing ({failures} failures in a row); not contacted for another {}s", retry_in_secs)]
    CircuitOpen {
        /// Host.
        registry: String,
        /// Failures in a row that opened the breaker.
        failures: u32,
        /// Seconds until the next probe (rounded up).
        retry_in_secs: u64,
    },
    /// Anything else the registry or transport reported.
    #[error("registry {registry} error: {reason}")]
    Protocol {
        /// Host.
        registry: String,
        /// Detail.
        reason: String,
    },
}

impl RegistryError {
    /// Whether the failure says nothing about the image itself (so must not
    /// be cached): everything but "not found".
    pub fn is_transient(&self) -> bool {
        !matches!(self, RegistryError::NotFound { .. })
    }
}
/// The error for a failed answer, with the registry's own error code
/// when its (capped) body says one.
pub(super) async fn status_error(reference: &Reference, resp: reqwest::Response) -> RegistryError {
    let registry = reference.registry().to_string();
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let detail = read_error_body(resp).await;
    match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            reference: reference.whole(),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
            registry,
            repository: reference.repository().to_string(),
            reason: detail.unwrap_or_else(|| format!("HTTP {}", status.as_u16())),
        },
        StatusCode::TOO_MANY_REQUESTS => RegistryError::Throttled {
            registry,
            retry_after,
        },
        s => RegistryError::Protocol {
            registry,
            reason: match detail {
                Some(d) => format!("HTTP {}: {d}", s.as_u16()),
                None => format!("HTTP {}", s.as_u16()),
            },
        },
    }
}

/// The registry's error message (`{"errors":[{"code","message"}]}`), read
/// from at most [`MAX_ERROR_BODY_BYTES`].
async fn read_error_body(mut resp: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let env: Envelope = serde_json::from_slice(&body).ok()?;
    let text: Vec<String> = env
        .errors
        .iter()
        .take(3)
        .map(|e| {
            // Registry text reaches deny messages: no control characters
            // (a newline would forge another deny line), bounded length.
            let clean = |t: &str, n: usize| -> String {
                t.chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .take(n)
                    .collect()
            };
            format!("{}: {}", clean(&e.code, 40), clean(&e.message, 200))
        })
        .collect();
    (!text.is_empty()).then(|| text.join("; "))
}

/// The innermost cause of an error, lowercased the way people read it
/// (`connection refused`, not `Connection refused (os error 111)`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
            std::io::ErrorKind::TimedOut => return "timed out".into(),
            std::io::ErrorKind::UnexpectedEof => return "connection closed mid-answer".into(),
            _ => {}
        }
    }
    cur.to_string()
}

pub(super) fn transport_error(registry: &str, e: &reqwest::Error) -> RegistryError {
    let registry = registry.to_string();
    if e.is_timeout() {
        RegistryError::Timeout { registry }
    } else if e.is_connect() {
        RegistryError::Unreachable {
            registry,
            reason: root_cause(e),
        }
    } else {
        RegistryError::Protocol {
            registry,
            reason: root_cause(e),
        }
    }
}
