//! The CEL environment an `ImageValidatingPolicy` runs in: Kubernetes'
//! admission bindings (`object`, `oldObject`, `request`,
//! `namespaceObject`, `variables`) and Kyverno's image libraries
//! (`verifyImageSignatures`, `verifyAttestationSignatures`,
//! `extractPayload`, `parseImageReference` / `image`, `isImage` and the
//! reference methods).
//!
//! The image functions read [`Facts`]: what sigil's verifier concluded for
//! each matched image before CEL ran. They never fetch, and they only ever
//! return payloads that verified and are bound to the image's digest. An
//! image the policy did not match has no facts: it verifies as 0 and has
//! no payload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cel::extractors::This;
use cel::{Context, ExecutionError, FunctionContext, Value as CelValue};
use serde_json::Value;

use crate::image::ImageRef;

/// One verification's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It verified, bound to the image's digest.
    Verified,
    /// It did not: a fact about the evidence (counts as 0).
    Failed(String),
    /// It could not be decided (registry down, timeout, over a limit): an
    /// error, so the policy's `failurePolicy` decides, never a silent 0.
    Error(String),
}

/// What sigil's verifier found for one image.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    /// Attestor name → its signature check.
    pub signatures: BTreeMap<String, Check>,
    /// (attestation, attestor) → the check, and the payloads that verified.
    pub attestations: BTreeMap<(String, String), (Check, Vec<Value>)>,
}

/// The facts of every matched image, by the reference as written.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Per image.
    pub images: BTreeMap<String, ImageFacts>,
}

/// Images a verification function verified (for `required`).
pub type Verified = Arc<Mutex<BTreeSet<String>>>;

fn name_of(v: &CelValue) -> Option<String> {
    match v {
        CelValue::Map(m) => match m.get(&cel::objects::Key::from("name")) {
            Some(CelValue::String(s)) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn names_of(v: &CelValue) -> Vec<String> {
    match v {
        CelValue::List(l) => l.iter().filter_map(name_of).collect(),
        other => name_of(other).into_iter().collect(),
    }
}

/// A context over CEL's standard library, built once: building the
/// library is most of a fresh context's cost, and every evaluation starts
/// from one.
pub fn context() -> Context<'static, 'static> {
    static STDLIB: std::sync::OnceLock<Arc<cel::Env>> = std::sync::OnceLock::new();
    Context::with_env(STDLIB.get_or_init(|| Arc::new(cel::Env::stdlib())).clone())
}

/// Converts JSON into a CEL value.
pub fn to_cel(v: &Value) -> Result<CelValue, String> {
    cel::to_value(v).map_err(|e| e.to_string())
}

/// Binds a JSON value as a variable.
pub fn bind(ctx: &mut Context<'static, 'static>, name: &str, v: &Value) -> Result<(), String> {
    let value = to_cel(v)?;
    ctx.add_variable_from_value(name, value);
    Ok(())
}

/// A parsed reference as the `kyverno.image` library shows it.
fn reference_map(s: &str) -> Result<CelValue, String> {
    let r = ImageRef::parse_uncached(s).map_err(|e| e.to_string())?;
    let identifier = match (&r.digest, &r.tag) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    to_cel(&serde_json::json!({
        "registry": r.registry,
        "repository": r.repository,
        "identifier": identifier,
        "tag": r.tag.clone().unwrap_or_default(),
        "digest": r.digest.clone().unwrap_or_default(),
        "reference": s,
    }))
}

fn field(ftx: &FunctionContext, this: &CelValue, key: &str) -> Result<CelValue, ExecutionError> {
    let map = match this {
        CelValue::Map(_) => this.clone(),
        CelValue::String(s) => reference_map(s).map_err(|e| ftx.error(e))?,
        _ => return Err(ftx.error("not an image reference")),
    };
    match map {
        CelValue::Map(m) => m
            .get(&cel::objects::Key::from(key))
            .cloned()
            .ok_or_else(|| ftx.error(format!("not an image reference (no {key})"))),
        _ => Err(ftx.error("not an image reference")),
    }
}

/// Adds the image reference library (no facts needed).
pub fn add_reference_library(ctx: &mut Context<'static, 'static>) {
    let parse = |ftx: &FunctionContext, s: Arc<String>| -> Result<CelValue, ExecutionError> {
        reference_map(&s).map_err(|e| ftx.error(e))
    };
    let _ = ctx.add_function("parseImageReference", parse);
    let _ = ctx.add_function("image", parse);
    let _ = ctx.add_function("isImage", |s: Arc<String>| -> bool {
        ImageRef::parse_uncached(&s).is_ok()
    });
    for key in ["registry", "repository", "identifier", "tag", "digest"] {
        let _ = ctx.add_function(
            key,
            move |ftx: &FunctionContext, This(this): This<CelValue>| field(ftx, &this, key),
        );
    }
    let _ = ctx.add_function(
        "containsDigest",
        |ftx: &FunctionContext, This(this): This<CelValue>| match field(ftx, &this, "digest")? {
            CelValue::String(s) => Ok(CelValue::Bool(!s.is_empty())),
            _ => Ok(CelValue::Bool(false)),
        },
    );
}

/// Adds the verification library over `facts`; verified images are
/// written to `verified`.
pub fn add_verification_library(
    ctx: &mut Context<'static, 'static>,
    facts: Arc<Facts>,
    verified: Verified,
) {
    let f = facts.clone();
    let seen = verified.clone();
    let _ = ctx.add_function(
        "verifyImageSignatures",
        move |ftx: &FunctionContext,
              image: Arc<String>,
              attestors: CelValue|
              -> Result<i64, ExecutionError> {
            let Some(found) = f.images.get(image.as_str()) else {
                return Ok(0);
            };
            let mut n = 0;
            for name in names_of(&attestors) {
                match found.signatures.get(&name) {
                    Some(Check::Verified) => n += 1,
                    Some(Check::Error(e)) => {
                        return Err(ftx.error(format!("{image}: attestor {name}: {e}")))
                    }
                    Some(Check::Failed(_)) => {}
                    None => return Err(ftx.error(format!("no attestor named {name:?}"))),
                }
            }
            if n > 0 {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(image.to_string());
            }
            Ok(n)
        },
    );
    let f = facts.clone();
    let seen = verified;
    let _ = ctx.add_function(
        "verifyAttestationSignatures",
        move |ftx: &FunctionContext, image: Arc<String>, attestation: CelValue, attestors: CelValue| -> Result<i64, ExecutionError> {
            let Some(attestation) = name_of(&attestation) else {
                return Err(ftx.error("the second argument must be an attestation (attestations.<name>)"));
            };
            let Some(found) = f.images.get(image.as_str()) else {
                return Ok(0);
            };
            let mut n = 0;
            for name in names_of(&attestors) {
                match found.attestations.get(&(attestation.clone(), name.clone())) {
                    Some((Check::Verified, _)) => n += 1,
                    Some((Check::Error(e), _)) => return Err(ftx.error(format!("{image}: attestation {attestation} by {name}: {e}"))),
                    Some((Check::Failed(_), _)) => {}
                    None => return Err(ftx.error(format!("attestor {name:?} cannot sign attestation {attestation:?} (or neither exists)"))),
                }
            }
            if n > 0 {
                seen.lock().unwrap_or_else(|e| e.into_inner()).insert(image.to_string());
            }
            Ok(n)
        },
    );
    let f = facts;
    let _ = ctx.add_function(
        "extractPayload",
        move |ftx: &FunctionContext, image: Arc<String>, attestation: CelValue| -> Result<CelValue, ExecutionError> {
            let Some(attestation) = name_of(&attestation) else {
                return Err(ftx.error("the second argument must be an attestation (attestations.<name>)"));
            };
            let payload = f.images.get(image.as_str()).and_then(|found| {
                found
                    .attestations
                    .iter()
                    .filter(|((a, _), (check, _))| *a == attestation && *check == Check::Verified)
                    .find_map(|(_, (_, payloads))| payloads.first())
            });
            match payload {
                Some(p) => to_cel(p).map_err(|e| ftx.error(e)),
                None => Err(ftx.error(format!(
                    "no verified {attestation} attestation for {image}: a payload is returned only after its signature verifies"
                ))),
            }
        },
    );
}

/// Runs a program to a value; its error said with the field it came from.
pub fn run(ctx: &Context<'static, 'static>, cel: &super::compile::Cel) -> Result<CelValue, String> {
    cel.program
        .execute(ctx)
        .map_err(|e| format!("{}: {e}", cel.field))
}

/// A CEL value as JSON (for variables and messages).
pub fn to_json(v: &CelValue) -> Value {
    v.json().unwrap_or(Value::Null)
}
