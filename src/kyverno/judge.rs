//! The pure decision of one `ImageValidatingPolicy` over one admission
//! request: whether it applies (`matchConstraints`, autogen for pod
//! controllers, `matchConditions`), which images it verifies
//! (`images` extractors, `matchImageReferences`), and, with the verifier's
//! [`Facts`] for those images, what its validations say.
//!
//! No I/O, no clock: the service collects the facts and calls this on the
//! program pool under a time limit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cel::{Context, Value as CelValue};
use kube::core::SelectorExt;
use serde_json::{json, Map, Value};

use super::cel_env::{self, Facts};
use super::compile::{CompiledIvp, Rule};

/// What a policy sees of a request.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The AdmissionReview `request`, without `object` and `oldObject`.
    pub request: Value,
    /// `request.object` (null for DELETE).
    pub object: Value,
    /// `request.oldObject` (null for CREATE).
    pub old_object: Value,
    /// The request's Namespace object (null when cluster-scoped or unknown).
    pub namespace_object: Value,
    /// Not read: the review was larger than sigil reads whole (its size).
    pub too_large: Option<usize>,
}

impl Input {
    /// A review over [`crate::limits::MAX_KYVERNO_REVIEW_BYTES`]: every
    /// policy that could apply fails with that reason.
    pub fn too_large(bytes: usize) -> Self {
        Input {
            too_large: Some(bytes),
            ..Input::default()
        }
    }

    fn text(&self, key: &str) -> &str {
        self.request.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// Whether a policy applies, and to what.
#[derive(Debug)]
pub enum Applies {
    /// It does not.
    No,
    /// It does; `bound` is what its expressions see (`object` is the pod
    /// template as a Pod when the request is for a pod controller).
    Yes {
        /// The request's bindings, converted once.
        bound: Arc<Bound>,
    },
    /// A match condition could not be evaluated.
    Error(String),
}

/// The request as one policy's CEL sees it, converted to CEL values once
/// (its phases then share them, as each clone is a reference count).
/// The conversion happens when a context is first made, so a policy
/// whose matching needs no CEL converts nothing until its validations run
/// (on the program pool).
#[derive(Debug)]
pub struct Bound {
    /// `object` as JSON (the default image extractors read it).
    object: Value,
    /// `oldObject` as JSON.
    old_object: Value,
    /// The request (its `request` and `namespaceObject`).
    input: Arc<Input>,
    /// `object`, `oldObject`, `request`, `namespaceObject`, once converted.
    values: std::sync::OnceLock<Result<Vec<(&'static str, CelValue)>, String>>,
}

impl Bound {
    fn new(input: &Arc<Input>, object: Value, old_object: Value) -> Self {
        Bound {
            object,
            old_object,
            input: input.clone(),
            values: std::sync::OnceLock::new(),
        }
    }

    fn values(&self) -> Result<&Vec<(&'static str, CelValue)>, String> {
        self.values
            .get_or_init(|| {
                Ok(vec![
                    ("object", cel_env::to_cel(&self.object)?),
                    ("oldObject", cel_env::to_cel(&self.old_object)?),
                    ("request", cel_env::to_cel(&self.input.request)?),
                    (
                        "namespaceObject",
                        cel_env::to_cel(&self.input.namespace_object)?,
                    ),
                ])
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// What the policy sees as `object`.
    pub fn object(&self) -> &Value {
        &self.object
    }

    /// A context with these bindings and the image reference library.
    fn context(&self) -> Result<Context<'static, 'static>, String> {
        let mut ctx = cel_env::context();
        for (name, value) in self.values()? {
            ctx.add_variable_from_value(*name, value.clone());
        }
        cel_env::add_reference_library(&mut ctx);
        Ok(ctx)
    }
}

/// How a policy came out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The first failing validation's message (Kyverno reports one).
    pub failure: Option<String>,
    /// An expression could not be evaluated (`failurePolicy` decides).
    pub error: Option<String>,
}

/// The pod-spec path of a pod controller kind, for autogen.
fn template_path(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "Deployment" => ("deployments", "/spec/template"),
        "DaemonSet" => ("daemonsets", "/spec/template"),
        "StatefulSet" => ("statefulsets", "/spec/template"),
        "ReplicaSet" => ("replicasets", "/spec/template"),
        "Job" => ("jobs", "/spec/template"),
        "CronJob" => ("cronjobs", "/spec/jobTemplate/spec/template"),
        _ => return None,
    })
}

fn rule_matches(
    r: &Rule,
    group: &str,
    version: &str,
    resource: &str,
    sub: &str,
    op: &str,
    name: &str,
) -> bool {
    let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
    let full = if sub.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{sub}")
    };
    let resource_ok = r.resources.iter().any(|x| {
        x == "*" && sub.is_empty()
            || x == "*/*"
            || *x == full
            || (sub.is_empty() && x == resource)
            || x.strip_suffix("/*")
                .is_some_and(|base| base == resource && !sub.is_empty())
            || x.strip_prefix("*/").is_some_and(|s| s == sub)
    });
    any(&r.groups, group)
        && any(&r.versions, version)
        && (r.operations.is_empty() || any(&r.operations, op))
        && resource_ok
        && (r.names.is_empty() || r.names.iter().any(|n| n == name))
}

/// A Pod made of a controller's pod template.
fn as_pod(object: &Value, pointer: &str, namespace: &str) -> Value {
    let Some(template) = object.pointer(pointer) else {
        return Value::Null;
    };
    let mut metadata = template.get("metadata").cloned().unwrap_or(json!({}));
    if let Value::Object(m) = &mut metadata {
        m.entry("namespace").or_insert(json!(namespace));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `ivp` applies to the request (`namespace_labels`: its namespace's labels).
pub fn applies(ivp: &CompiledIvp, input: &Arc<Input>) -> Applies {
    if !ivp.admission {
        return Applies::No;
    }
    let namespace = input.text("namespace");
    if ivp.namespace.as_deref().is_some_and(|n| n != namespace) {
        return Applies::No;
    }
    if let Some(bytes) = input.too_large {
        return Applies::Error(format!(
            "the review is {} bytes, over sigil's limit of {} for ImageValidatingPolicies",
            crate::text::thousands(bytes),
            crate::text::thousands(crate::limits::MAX_KYVERNO_REVIEW_BYTES)
        ));
    }
    let resource = input
        .request
        .get("resource")
        .cloned()
        .unwrap_or(Value::Null);
    let field = |k: &str| {
        resource
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (group, version, res) = (field("group"), field("version"), field("resource"));
    let (sub, op, name) = (
        input.text("subResource"),
        input.text("operation"),
        input.text("name"),
    );
    let direct = ivp
        .rules
        .iter()
        .any(|r| rule_matches(r, &group, &version, &res, sub, op, name));
    let kind = input
        .request
        .pointer("/kind/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    // Autogen: a rule for Pods also covers the pod controllers it lists,
    // with the pod template seen as the Pod.
    let autogen = template_path(kind).filter(|(plural, _)| {
        sub.is_empty()
            && ivp.autogen.iter().any(|c| c == plural)
            && ivp
                .rules
                .iter()
                .any(|r| rule_matches(r, "", "v1", "pods", "", op, ""))
    });
    if !direct && autogen.is_none() {
        return Applies::No;
    }
    if ivp
        .excludes
        .iter()
        .any(|r| rule_matches(r, &group, &version, &res, sub, op, name))
    {
        return Applies::No;
    }
    if let Some(selector) = &ivp.namespace_selector {
        // An unknown namespace object is taken as matching: a policy is
        // never skipped for want of a label sigil could not read.
        if !namespace.is_empty()
            && !input.namespace_object.is_null()
            && !selector.matches(&labels(&input.namespace_object))
        {
            return Applies::No;
        }
    }
    if let Some(selector) = &ivp.object_selector {
        let new = selector.matches(&labels(&input.object));
        let old = selector.matches(&labels(&input.old_object));
        if !new && !old {
            return Applies::No;
        }
    }
    let bound = match (direct, autogen) {
        (false, Some((_, pointer))) => Bound::new(
            input,
            as_pod(&input.object, pointer, namespace),
            as_pod(&input.old_object, pointer, namespace),
        ),
        _ => Bound::new(input, input.object.clone(), input.old_object.clone()),
    };
    if ivp.match_conditions.is_empty() {
        return Applies::Yes {
            bound: Arc::new(bound),
        };
    }
    let ctx = match bound.context() {
        Ok(c) => c,
        Err(e) => return Applies::Error(e),
    };
    for (name, condition) in &ivp.match_conditions {
        match cel_env::run(&ctx, condition) {
            Ok(CelValue::Bool(true)) => {}
            Ok(CelValue::Bool(false)) => return Applies::No,
            Ok(other) => {
                return Applies::Error(format!("match condition {name} gave {other:?}, not a bool"))
            }
            Err(e) => return Applies::Error(format!("match condition {name}: {e}")),
        }
    }
    Applies::Yes {
        bound: Arc::new(bound),
    }
}

/// The images of a pod spec: `containers`, `initContainers`,
/// `ephemeralContainers`, each present when the object has it.
fn default_images(object: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(list) = object
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
        {
            let images: Vec<Value> = list
                .iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .map(|s| json!(s))
                .collect();
            out.insert(key.to_string(), Value::Array(images));
        }
    }
    out
}

/// Evaluates variables in order into `ctx` (`variables.<name>`); a
/// variable that fails is left out, and fails whatever reads it.
fn bind_variables(ivp: &CompiledIvp, ctx: &mut Context<'static, 'static>) -> Result<(), String> {
    let mut variables = Map::new();
    cel_env::bind(ctx, "variables", &Value::Object(variables.clone()))?;
    for (name, program) in &ivp.variables {
        if let Ok(v) = cel_env::run(ctx, program) {
            variables.insert(name.clone(), cel_env::to_json(&v));
            cel_env::bind(ctx, "variables", &Value::Object(variables.clone()))?;
        }
    }
    Ok(())
}

/// The policy's images (`images.<name>` → references) and which of them
/// it verifies (`matchImageReferences`), in first-seen order.
pub fn images(
    ivp: &CompiledIvp,
    bound: &Bound,
) -> Result<(Map<String, Value>, Vec<String>), String> {
    // Matching by globs over the pod spec's images needs no CEL.
    let plain =
        ivp.variables.is_empty() && ivp.extractors.is_empty() && ivp.image_expressions.is_empty();
    let ctx = if plain {
        None
    } else {
        let mut ctx = bound.context()?;
        bind_variables(ivp, &mut ctx)?;
        Some(ctx)
    };
    let mut images = default_images(&bound.object);
    for (name, extractor) in &ivp.extractors {
        // There is a context whenever there are extractors.
        let Some(ctx) = &ctx else { break };
        let v = cel_env::to_json(&cel_env::run(ctx, extractor)?);
        let list = match v {
            Value::Array(a) => a,
            Value::String(s) => vec![json!(s)],
            other => {
                return Err(format!(
                    "{}: gave {other}, not a list of images",
                    extractor.field
                ))
            }
        };
        images.insert(name.clone(), Value::Array(list));
    }
    let mut matched: Vec<String> = Vec::new();
    for image in images
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
    {
        if matched.iter().any(|m| m == image) {
            continue;
        }
        if matches_reference(ivp, ctx.as_ref(), image)? {
            matched.push(image.to_string());
        }
    }
    Ok((images, matched))
}

fn matches_reference(
    ivp: &CompiledIvp,
    ctx: Option<&Context<'static, 'static>>,
    image: &str,
) -> Result<bool, String> {
    let canonical = crate::image::ImageRef::parse(image)
        .ok()
        .map(|r| r.glob_name());
    if ivp
        .image_globs
        .iter()
        .any(|g| g.is_match(image) || canonical.as_deref().is_some_and(|c| g.is_match(c)))
    {
        return Ok(true);
    }
    // There is a context whenever there are expressions.
    let Some(ctx) = ctx.filter(|_| !ivp.image_expressions.is_empty()) else {
        return Ok(false);
    };
    let mut inner = ctx.new_inner_scope();
    inner.add_variable_from_value("image", image.to_string());
    for e in &ivp.image_expressions {
        match e.program.execute(&inner) {
            Ok(CelValue::Bool(true)) => return Ok(true),
            Ok(_) => {}
            Err(err) => return Err(format!("{}: {err}", e.field)),
        }
    }
    Ok(false)
}

/// Runs the validations over the request and the verifier's facts.
pub fn evaluate(
    ivp: &CompiledIvp,
    bound: &Bound,
    images: &Map<String, Value>,
    matched: &[String],
    facts: Arc<Facts>,
) -> Outcome {
    let error = |e: String| Outcome {
        failure: None,
        error: Some(e),
    };
    let mut ctx = match bound.context() {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let verified = Arc::new(Mutex::new(Default::default()));
    cel_env::add_verification_library(&mut ctx, facts.clone(), verified.clone());
    let named = |names: Vec<&String>, extra: &dyn Fn(&str) -> Value| {
        Value::Object(names.into_iter().map(|n| (n.clone(), extra(n))).collect())
    };
    let attestors = named(
        ivp.attestors.iter().map(|a| &a.name).collect(),
        &|n| json!({"name": n}),
    );
    let attestations = named(
        ivp.attestations.keys().collect(),
        &|n| match &ivp.attestations[n] {
            super::compile::AttestationKind::Intoto(t) => json!({"name": n, "intoto": {"type": t}}),
            super::compile::AttestationKind::Referrer(t) => {
                json!({"name": n, "referrer": {"type": t}})
            }
        },
    );
    for (name, v) in [
        ("images", Value::Object(images.clone())),
        ("attestors", attestors),
        ("attestations", attestations),
    ] {
        if let Err(e) = cel_env::bind(&mut ctx, name, &v) {
            return error(e);
        }
    }
    if let Err(e) = bind_variables(ivp, &mut ctx) {
        return error(e);
    }
    if ivp.verify_digest {
        if let Some(unpinned) = matched.iter().find(|i| !i.contains('@')) {
            return Outcome {
                failure: Some(format!("image {unpinned} is not pinned to a digest (validationConfigurations.verifyDigest)")),
                error: None,
            };
        }
    }
    for v in &ivp.validations {
        match cel_env::run(&ctx, &v.expression) {
            Ok(CelValue::Bool(true)) => {}
            Ok(CelValue::Bool(false)) => {
                let message = v
                    .message_expression
                    .as_ref()
                    .and_then(|m| match cel_env::run(&ctx, m) {
                        Ok(CelValue::String(s)) => Some(s.to_string()),
                        _ => None,
                    })
                    .or_else(|| v.message.clone())
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.source));
                return Outcome {
                    failure: Some(message),
                    error: None,
                };
            }
            Ok(other) => {
                return error(format!("{} gave {other:?}, not a bool", v.expression.field))
            }
            Err(e) => return error(e),
        }
    }
    if ivp.required {
        let seen = verified.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(unverified) = matched.iter().find(|i| !seen.contains(*i)) {
            return Outcome {
                failure: Some(format!("image {unverified} was not verified by any validation (validationConfigurations.required)")),
                error: None,
            };
        }
    }
    Outcome::default()
}
