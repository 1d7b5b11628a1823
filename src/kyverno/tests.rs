//! The pure parts: loading and refusals, matching, the CEL libraries over
//! facts, and the validation configurations.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;

fn spec(extra: Value) -> Value {
    let mut base = json!({
        "validationActions": ["Deny"],
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]
        }]},
        "matchImageReferences": [{"glob": "reg.example/*"}],
        "validationConfigurations": {"mutateDigest": false, "verifyDigest": false, "required": false},
        "attestors": [{"name": "k", "cosign": {"key": {"data": key()}}}],
        "attestations": [{"name": "slsa", "intoto": {"type": "https://slsa.dev/provenance/v1"}}],
        "validations": [{
            "expression": "images.containers.map(i, verifyImageSignatures(i, [attestors.k])).all(n, n > 0)",
            "message": "unsigned",
        }],
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    base
}

/// A real public key (compilation parses it).
fn key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        sigil_testkit::TestKey::generate(sigil_testkit::TestKeyKind::P256)
            .unwrap()
            .public_pem
    })
    .clone()
}

fn load_spec(spec: Value) -> LoadedIvp {
    load(&IvpDocument {
        kind: types::KIND.into(),
        name: "p".into(),
        namespace: None,
        spec,
    })
}

fn compiled(spec: Value) -> Arc<CompiledIvp> {
    match load_spec(spec) {
        LoadedIvp::Valid(p) => p,
        LoadedIvp::Invalid { error, .. } => panic!("refused: {error}"),
    }
}

fn refused(spec: Value) -> PolicyError {
    load_spec(spec).error().cloned().expect("refused")
}

fn pod_input(image: &str, labels: Value) -> Input {
    Input {
        request: json!({
            "uid": "u", "operation": "CREATE", "namespace": "team", "name": "p",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
        }),
        object: json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "team", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": image}]}}),
        ..Input::default()
    }
}

fn facts(image: &str, signature: Check, payload: Option<Value>) -> Arc<Facts> {
    let mut f = ImageFacts::default();
    f.signatures.insert("k".into(), signature.clone());
    let payloads: Vec<Value> = payload.into_iter().collect();
    f.attestations
        .insert(("slsa".into(), "k".into()), (signature, payloads));
    let mut all = Facts::default();
    all.images.insert(image.into(), f);
    Arc::new(all)
}

fn applies(ivp: &CompiledIvp, input: &Input) -> Applies {
    judge::applies(ivp, &Arc::new(input.clone()))
}

fn run(ivp: &CompiledIvp, input: &Input, facts: Arc<Facts>) -> Outcome {
    let input = &Arc::new(input.clone());
    let Applies::Yes { bound } = judge::applies(ivp, input) else {
        panic!("does not apply");
    };
    let (images, matched) = judge::images(ivp, &bound).unwrap();
    judge::evaluate(ivp, &bound, &images, &matched, facts)
}

#[test]
fn the_three_versions_and_both_kinds_are_read() {
    for v in types::VERSIONS {
        assert!(is_ivp(
            &format!("policies.kyverno.io/{v}"),
            "ImageValidatingPolicy"
        ));
        assert!(is_ivp(
            &format!("policies.kyverno.io/{v}"),
            "NamespacedImageValidatingPolicy"
        ));
    }
    assert!(!is_ivp("policies.kyverno.io/v2", "ImageValidatingPolicy"));
    assert!(!is_ivp("kyverno.io/v1", "ClusterPolicy"));
    let doc = json!({"apiVersion": "policies.kyverno.io/v1", "kind": "NamespacedImageValidatingPolicy",
        "metadata": {"name": "n"}, "spec": {}});
    assert!(document(&doc)
        .unwrap()
        .unwrap_err()
        .contains("no metadata.namespace"));
}

#[test]
fn refusals_name_the_field() {
    let e = refused(spec(json!({"validationActions": ["Deny", "Warn"]})));
    assert_eq!(e.field, "spec.validationActions");
    let e = refused(spec(json!({"validationActions": ["Block"]})));
    assert_eq!(e.field, "spec.validationActions[0]");
    let e = refused(spec(json!({"failurePolicy": "Maybe"})));
    assert_eq!(e.field, "spec.failurePolicy");
    let e = refused(spec(json!({"credentials": {"providers": ["amazon"]}})));
    assert_eq!(e.field, "spec.credentials.providers");
    let e = refused(spec(
        json!({"attestors": [{"name": "k", "cosign": {"key": {"kms": "awskms:///x"}}}]}),
    ));
    assert_eq!(e.field, "spec.attestors[0].cosign.key.kms");
    let e = refused(spec(
        json!({"attestors": [{"name": "n", "notary": {"certs": {"expression": "variables.c"}}}]}),
    ));
    assert_eq!(e.field, "spec.attestors[0].notary.certs.expression");
    let e = refused(spec(
        json!({"variables": [{"name": "cm", "expression": "globalContext.Get('a', 'b')"}]}),
    ));
    assert_eq!(e.field, "spec.variables[0].expression");
    assert!(e.message.contains("globalContext"), "{e}");
    let e = refused(spec(
        json!({"validations": [{"expression": "image.GetMetadata('x') != null"}]}),
    ));
    assert!(e.message.contains("image.GetMetadata"), "{e}");
    let e = refused(spec(
        json!({"validations": [{"expression": "images.containers.("}]}),
    ));
    assert_eq!(e.field, "spec.validations[0].expression");
    let e = refused(spec(
        json!({"matchImageReferences": [{"glob": "a", "expression": "true"}]}),
    ));
    assert_eq!(e.field, "spec.matchImageReferences[0]");
    let e = refused(spec(json!({"unknownField": 1})));
    assert!(e.message.contains("unknownField"), "{e}");
    let e = refused(spec(
        json!({"attestors": [{"name": "k", "cosign": {"key": {"data": "not a key"}}}]}),
    ));
    assert_eq!(e.field, "spec.attestors[0].cosign.key.data");
    let e = refused(spec(
        json!({"attestors": [{"name": "k", "cosign": {"keyless": {"identities": [], "roots": "x"}}}]}),
    ));
    assert!(
        e.field.starts_with("spec.attestors[0].cosign.keyless"),
        "{e}"
    );
    let e = refused(spec(
        json!({"attestors": [{"name": "n", "notary": {"certs": {"value": "nope"}}}]}),
    ));
    assert_eq!(e.field, "spec.attestors[0].notary.certs");
}

#[test]
fn resource_rules_subresources_and_autogen() {
    let ivp = compiled(spec(json!({})));
    let pod = pod_input("reg.example/app@sha256:aa", json!({}));
    assert!(matches!(applies(&ivp, &pod), Applies::Yes { .. }));
    let mut update = pod.clone();
    update.request["operation"] = json!("UPDATE");
    assert!(matches!(applies(&ivp, &update), Applies::No));
    let mut ephemeral = pod.clone();
    ephemeral.request["subResource"] = json!("ephemeralcontainers");
    assert!(matches!(applies(&ivp, &ephemeral), Applies::No));
    let sub = compiled(spec(json!({"matchConstraints": {"resourceRules": [{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods/ephemeralcontainers"]}]}})));
    let mut e = ephemeral.clone();
    e.request["operation"] = json!("UPDATE");
    assert!(matches!(applies(&sub, &e), Applies::Yes { .. }));

    // A Deployment is seen through its pod template, as Kyverno's autogen does.
    let deployment = Input {
        request: json!({"operation": "CREATE", "namespace": "team", "name": "d",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"}}),
        object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"metadata": {"labels": {"prod": "true"}},
                "spec": {"containers": [{"name": "c", "image": "reg.example/app:v1"}]}}}}),
        ..Input::default()
    };
    let Applies::Yes { bound } = applies(&ivp, &deployment) else {
        panic!("autogen")
    };
    let object = bound.object();
    assert_eq!(object["kind"], "Pod");
    assert_eq!(object["metadata"]["labels"]["prod"], "true");
    let none = compiled(spec(
        json!({"autogen": {"podControllers": {"controllers": []}}}),
    ));
    assert!(matches!(applies(&none, &deployment), Applies::No));
    let e = refused(spec(
        json!({"autogen": {"podControllers": {"controllers": ["pods"]}}}),
    ));
    assert_eq!(e.field, "spec.autogen.podControllers.controllers[0]");
}

#[test]
fn match_conditions_and_namespaced_policies() {
    let ivp = compiled(spec(json!({"matchConditions": [{"name": "prod",
        "expression": "has(object.metadata.labels.prod) && object.metadata.labels.prod == 'true'"}]})));
    assert!(matches!(
        applies(&ivp, &pod_input("reg.example/a", json!({"prod": "true"}))),
        Applies::Yes { .. }
    ));
    assert!(matches!(
        applies(&ivp, &pod_input("reg.example/a", json!({}))),
        Applies::No
    ));
    let broken = compiled(spec(
        json!({"matchConditions": [{"name": "x", "expression": "object.nope.deeper == 1"}]}),
    ));
    assert!(matches!(
        applies(&broken, &pod_input("reg.example/a", json!({}))),
        Applies::Error(_)
    ));
    let doc = IvpDocument {
        kind: types::NAMESPACED_KIND.into(),
        name: "n".into(),
        namespace: Some("other".into()),
        spec: spec(json!({})),
    };
    let LoadedIvp::Valid(namespaced) = load(&doc) else {
        panic!()
    };
    assert!(matches!(
        applies(&namespaced, &pod_input("reg.example/a", json!({}))),
        Applies::No
    ));
}

#[test]
fn verification_functions_count_only_what_verified() {
    let image = "reg.example/app@sha256:aa";
    let ivp = compiled(spec(json!({})));
    let input = pod_input(image, json!({}));
    assert_eq!(
        run(&ivp, &input, facts(image, Check::Verified, None)),
        Outcome::default()
    );
    let failed = run(
        &ivp,
        &input,
        facts(image, Check::Failed("no signature".into()), None),
    );
    assert_eq!(failed.failure.as_deref(), Some("unsigned"));
    // Undecided is an error (failurePolicy decides), never a silent 0.
    let undecided = run(
        &ivp,
        &input,
        facts(image, Check::Error("registry down".into()), None),
    );
    assert!(undecided.error.unwrap().contains("registry down"));
    // An image the policy does not claim verifies as 0.
    let other = pod_input("elsewhere.example/app@sha256:aa", json!({}));
    let ivp_all = compiled(spec(
        json!({"matchImageReferences": [{"expression": "image.startsWith('elsewhere')"}]}),
    ));
    let out = run(&ivp_all, &other, Arc::new(Facts::default()));
    assert_eq!(out.failure.as_deref(), Some("unsigned"));
}

#[test]
fn extract_payload_returns_only_verified_statements() {
    let image = "reg.example/app@sha256:aa";
    let ivp = compiled(spec(json!({"validations": [{
        "expression": "images.containers.all(i, extractPayload(i, attestations.slsa).predicate.builder == 'ci')",
        "message": "wrong builder"}]})));
    let input = pod_input(image, json!({}));
    let statement = json!({"predicate": {"builder": "ci"}});
    assert_eq!(
        run(
            &ivp,
            &input,
            facts(image, Check::Verified, Some(statement.clone()))
        ),
        Outcome::default()
    );
    // The same Statement, not verified: never returned.
    let out = run(
        &ivp,
        &input,
        facts(
            image,
            Check::Failed("bad signature".into()),
            Some(statement),
        ),
    );
    assert!(out.error.unwrap().contains("no verified slsa attestation"));
    let wrong = json!({"predicate": {"builder": "evil"}});
    let out = run(&ivp, &input, facts(image, Check::Verified, Some(wrong)));
    assert_eq!(out.failure.as_deref(), Some("wrong builder"));
}

#[test]
fn references_library_and_message_expressions() {
    let image = "reg.example/team/app:v1";
    let ivp = compiled(spec(json!({
    "variables": [{"name": "refs", "expression": "object.spec.containers.map(c, parseImageReference(c.image))"}],
    "validations": [
        {"expression": "variables.refs.all(r, r.registry() == 'reg.example' && r.repository() == 'team/app' && r.tag() == 'v1' && !r.containsDigest() && isImage(r.reference))"},
        {"expression": "image('reg.example/a@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa').containsDigest() == false",
         "messageExpression": "'found ' + string(size(variables.refs)) + ' images'"},
    ]})));
    let out = run(
        &ivp,
        &pod_input(image, json!({})),
        Arc::new(Facts::default()),
    );
    assert_eq!(
        out,
        Outcome {
            failure: Some("found 1 images".into()),
            error: None
        }
    );
}

#[test]
fn verify_digest_and_required() {
    let tagged = "reg.example/app:v1";
    let pinned = "reg.example/app@sha256:aa";
    let digest = compiled(spec(
        json!({"validationConfigurations": {"verifyDigest": true, "required": false}}),
    ));
    let out = run(
        &digest,
        &pod_input(tagged, json!({})),
        facts(tagged, Check::Verified, None),
    );
    assert!(out.failure.unwrap().contains("verifyDigest"));
    assert_eq!(
        run(
            &digest,
            &pod_input(pinned, json!({})),
            facts(pinned, Check::Verified, None)
        ),
        Outcome::default()
    );
    let required = compiled(spec(json!({
        "validationConfigurations": {"verifyDigest": false, "required": true},
        "validations": [{"expression": "true"}]})));
    let out = run(
        &required,
        &pod_input(pinned, json!({})),
        facts(pinned, Check::Verified, None),
    );
    assert!(out.failure.unwrap().contains("required"));
    let defaults = compiled(spec(json!({"validationConfigurations": {}})));
    assert!(defaults.mutate_digest && defaults.verify_digest && defaults.required);
}

#[test]
fn namespace_selectors_read_the_namespace_and_never_skip_an_unknown_one() {
    let ivp = compiled(spec(json!({"matchConstraints": {
        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
        "namespaceSelector": {"matchLabels": {"team": "payments"}},
    }})));
    let with_labels = |labels: Value| {
        let mut input = pod_input("reg.example/a", json!({}));
        input.namespace_object = json!({"metadata": {"name": "team", "labels": labels}});
        input
    };
    assert!(matches!(
        applies(&ivp, &with_labels(json!({"team": "payments"}))),
        Applies::Yes { .. }
    ));
    assert!(matches!(
        applies(&ivp, &with_labels(json!({"team": "web"}))),
        Applies::No
    ));
    // Labels sigil could not read: the policy applies (fails closed).
    assert!(matches!(
        applies(&ivp, &pod_input("reg.example/a", json!({}))),
        Applies::Yes { .. }
    ));
}

#[test]
fn a_review_too_large_to_read_fails_every_policy_that_could_apply() {
    let ivp = compiled(spec(json!({})));
    let mut big = Input::too_large(5 << 20);
    big.request = json!({"namespace": "team"});
    let Applies::Error(why) = applies(&ivp, &big) else {
        panic!("a review sigil did not read must not pass or be skipped");
    };
    assert_eq!(
        why,
        "the review is 5,242,880 bytes, over sigil's limit of 3,145,728 for ImageValidatingPolicies"
    );
    // A namespaced policy of another namespace is not concerned.
    let doc = IvpDocument {
        kind: types::NAMESPACED_KIND.into(),
        name: "n".into(),
        namespace: Some("other".into()),
        spec: spec(json!({})),
    };
    let LoadedIvp::Valid(namespaced) = load(&doc) else {
        panic!()
    };
    assert!(matches!(applies(&namespaced, &big), Applies::No));
}
