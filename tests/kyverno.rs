//! Kyverno `ImageValidatingPolicy` files, unchanged but for the registry
//! host and the Notary certificate, judged by `/validate`'s pipeline
//! against images signed in the test in the shapes Kyverno's own tests use
//! (a Notation signature, and a Notation-signed CycloneDX SBOM referrer)
//! on the real docker-registry.

mod common;

use std::time::SystemTime;

use common::*;
use serde_json::json;
use sigil_testkit::notation::{attach, descriptor, NotationCa, NotationSigner, JWS};

const FIXTURES: &str = "tests/fixtures/kyverno-ivp/chainsaw/image-validating-policies";

/// The upstream file at `path`, with `ghcr.io` replaced by the test
/// registry and the Notary certificate by `pem`.
fn upstream(path: &str, registry: &str, pem: &str) -> String {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap();
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let indent = text[..begin].rsplit('\n').next().unwrap().to_string();
    let cert: Vec<String> = pem.trim().lines().map(|l| format!("{indent}{l}")).collect();
    let text = format!(
        "{}{}{}",
        &text[..begin - indent.len()],
        cert.join("\n"),
        &text[end..]
    );
    text.replace("ghcr.io", registry)
}

struct Lab {
    env: Env,
    signer: NotationSigner,
    ca: NotationCa,
}

impl Lab {
    fn new() -> Lab {
        let ca = NotationCa::new("Notary test").unwrap();
        Lab {
            env: Env::start(),
            signer: ca.issue_valid("release").unwrap(),
            ca,
        }
    }

    async fn sign(&self, repo: &str, digest: &str, by: &NotationSigner) {
        let d = descriptor(&self.env.client, self.env.addr(), repo, digest)
            .await
            .unwrap();
        let envelope = by.jws(&d.payload(), SystemTime::now(), None).unwrap();
        attach(
            &self.env.client,
            self.env.addr(),
            repo,
            digest,
            JWS,
            &envelope,
        )
        .await
        .unwrap();
    }

    /// Pushes `repo:v1`, signed when `signed`, with a CycloneDX SBOM
    /// referrer signed by `sbom_signer` (none: no SBOM).
    async fn image(
        &self,
        repo: &str,
        signed: bool,
        sbom: Option<(&NotationSigner, &str)>,
    ) -> String {
        let digest = self.env.push(repo, "v1").await;
        if signed {
            self.sign(repo, &digest, &self.signer).await;
        }
        if let Some((by, format)) = sbom {
            let body = json!({"bomFormat": format, "specVersion": "1.5"}).to_string();
            let sbom = sigil_testkit::sigstore::push_referrer(
                &self.env.client,
                self.env.addr(),
                repo,
                &digest,
                "sbom/cyclone-dx",
                "application/vnd.cyclonedx+json",
                body.as_bytes(),
                Default::default(),
            )
            .await
            .unwrap();
            self.sign(repo, &sbom, by).await;
        }
        format!("{}/{repo}:v1", self.env.addr())
    }

    /// The upstream notary-basic policy, read for this lab.
    fn notary_basic(&self) -> String {
        upstream(
            "standard/notary-basic/policy.yaml",
            self.env.addr(),
            &self.ca.pem(),
        )
    }

    /// `kyverno/test-verify-image:v1`, signed, with a signed CycloneDX SBOM.
    async fn signed(&self) -> String {
        self.image(
            "kyverno/test-verify-image",
            true,
            Some((&self.signer, "CycloneDX")),
        )
        .await
    }

    fn pipeline(&self, ivp: &str) -> std::sync::Arc<sigil::service::Evaluator> {
        let (ev, _) = pipeline("", &Opts::for_registry(self.env.addr()));
        let docs = sigil::kyverno::files::parse_documents(ivp).unwrap();
        let loaded = ev.kyverno.replace_source("test", &docs);
        assert!(
            loaded.iter().all(|p| p.error().is_none()),
            "{:?}",
            loaded[0].error()
        );
        ev
    }
}

async fn review_labelled(
    ev: &sigil::service::Evaluator,
    image: &str,
    prod: bool,
) -> serde_json::Value {
    let mut body = sigil_testkit::pod_review("uid-1", "default", "p", image);
    if prod {
        body["request"]["object"]["metadata"]["labels"] = json!({"prod": "true"});
    }
    review(ev, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notary_basic_admits_the_signed_image_and_denies_the_rest_in_kyvernos_words() {
    let lab = Lab::new();
    let policy = lab.notary_basic();
    let ev = lab.pipeline(&policy);
    let signed = lab.signed().await;
    let resp = review_labelled(&ev, &signed, true).await;
    assert!(allowed(&resp), "{}", message(&resp));

    // Unsigned: Kyverno's message, word for word.
    let unsigned = lab.image("kyverno/unsigned", false, None).await;
    let resp = review_labelled(&ev, &unsigned, true).await;
    assert!(!allowed(&resp));
    assert_eq!(
        message(&resp),
        "Policy ivpol-sample failed: failed to verify image with notary cert"
    );

    // Signed, but its SBOM signed by a stranger: the attestation does not
    // verify, and its payload is never read as if it did.
    let stranger = NotationCa::new("stranger")
        .unwrap()
        .issue_valid("x")
        .unwrap();
    let forged = lab
        .image("kyverno/forged-sbom", true, Some((&stranger, "CycloneDX")))
        .await;
    let resp = review_labelled(&ev, &forged, true).await;
    assert_eq!(
        message(&resp),
        "Policy ivpol-sample failed: failed to verify attestation with notary cer"
    );

    // A verified SBOM in another format fails the payload check.
    let spdx = lab
        .image("kyverno/spdx", true, Some((&lab.signer, "SPDX")))
        .await;
    let resp = review_labelled(&ev, &spdx, true).await;
    assert_eq!(
        message(&resp),
        "Policy ivpol-sample failed: sbom is not a cyclone dx sbom"
    );

    // matchConditions: without the prod label the policy does not apply,
    // and an image no policy claims meets the no-match rule (deny).
    let resp = review_labelled(&ev, &unsigned, false).await;
    assert!(!allowed(&resp));
    assert!(
        message(&resp).contains("no ClusterImagePolicy matches"),
        "{}",
        message(&resp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_and_audit_actions_admit_and_ignore_admits_only_errors() {
    let lab = Lab::new();
    let base = lab.notary_basic();
    let unsigned = lab.image("kyverno/unsigned", false, None).await;

    let warn = lab.pipeline(&base.replace("    - Deny", "    - Warn"));
    let resp = review_labelled(&warn, &unsigned, true).await;
    assert!(allowed(&resp));
    let warned = warnings(&resp);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0]
            .starts_with("Policy ivpol-sample failed: failed to verify image with notary cert"),
        "{warned:?}"
    );

    let audit = lab.pipeline(&base.replace("    - Deny", "    - Audit"));
    let resp = review_labelled(&audit, &unsigned, true).await;
    assert!(allowed(&resp));
    assert!(warnings(&resp).is_empty());

    // failurePolicy: Ignore (the upstream file's) admits an image whose
    // registry cannot be reached, never one that fails its check.
    let gone = upstream(
        "standard/notary-basic/policy.yaml",
        "127.0.0.1:9",
        &lab.ca.pem(),
    );
    let ignore = lab.pipeline(&gone);
    let resp = review_labelled(&ignore, "127.0.0.1:9/kyverno/gone:v1", true).await;
    assert!(allowed(&resp), "{}", message(&resp));
    let fail = lab.pipeline(&gone.replace("failurePolicy: Ignore", "failurePolicy: Fail"));
    let resp = review_labelled(&fail, "127.0.0.1:9/kyverno/gone:v1", true).await;
    assert!(!allowed(&resp));
    let said = message(&resp);
    assert!(said.starts_with("Policy ivpol-sample failed: "), "{said}");
    assert!(said.contains("127.0.0.1:9"), "{said}");
}

#[test]
fn a_field_sigil_does_not_implement_is_refused_naming_it() {
    let pem = NotationCa::new("Notary test").unwrap().pem();
    let base = upstream("standard/notary-basic/policy.yaml", "reg.example", &pem);
    let with = |from: &str, to: &str| {
        let docs = sigil::kyverno::files::parse_documents(&base.replace(from, to)).unwrap();
        sigil::kyverno::load(&docs[0]).error().cloned()
    };
    let e = with(
        "  attestors:\n",
        "  auditAnnotations:\n    - key: a\n      valueExpression: \"'x'\"\n  attestors:\n",
    )
    .unwrap();
    assert_eq!(e.field, "spec.auditAnnotations");
    let e = with("  attestors:\n", "  surprise: 1\n  attestors:\n").unwrap();
    assert!(e.message.contains("surprise"), "{e}");
    let e = with(
        "images.containers.map(image, verifyImageSignatures(image, [attestors.notary])).all(e, e > 0)",
        "resource.get('v1', 'configmaps', 'default', 'x') != null",
    )
    .unwrap();
    assert_eq!(e.field, "spec.validations[0].expression");
    assert!(e.message.contains("resource.get"), "{e}");
    let e = with(
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n            AAAA",
    )
    .unwrap();
    assert_eq!(e.field, "spec.attestors[0].notary.certs");
}

/// `sigil check` reads the same policy offline: the manifest as written is
/// what its CEL sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigil_check_evaluates_the_policy_over_manifests() {
    let lab = Lab::new();
    let policy = lab.notary_basic();
    let ev = lab.pipeline(&policy);
    let signed = lab.signed().await;
    let unsigned = lab.image("kyverno/unsigned", false, None).await;
    let manifest = |name: &str, image: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{prod: \"true\"}}\nspec:\n  containers:\n    - name: c\n      image: {image}\n")
    };
    let texts = vec![(
        "pods.yaml".to_string(),
        format!(
            "{}---\n{}",
            manifest("good", &signed),
            manifest("bad", &unsigned)
        ),
    )];
    let workloads = sigil::check::workloads(&texts, &[], "default").unwrap();
    let result = sigil::check::run_check(&ev, workloads).await;
    assert!(!result.allowed);
    assert_eq!(
        result.denied,
        vec![
            "Pod default/bad: Policy ivpol-sample failed: failed to verify image with notary cert"
                .to_string()
        ]
    );
}

/// A policy sigil refuses fails closed for what its matchConstraints
/// select, and only that: a cluster never stops admitting every Pod
/// because one policy calls a function sigil does not build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_policy_fails_closed_for_what_it_selects_only() {
    let lab = Lab::new();
    let pem = lab.ca.pem();
    let policy = upstream("standard/notary-basic/policy.yaml", lab.env.addr(), &pem)
        .replace("resources: [\"pods\"]", "resources: [\"deployments\"]")
        .replace("apiGroups: [\"\"]", "apiGroups: [\"apps\"]")
        .replace(
            "images.containers.map(image, verifyImageSignatures(image, [attestors.notary])).all(e, e > 0)",
            "resource.get('v1', 'configmaps', 'default', 'x') != null",
        );
    let (ev, _) = pipeline("", &Opts::for_registry(lab.env.addr()));
    let docs = sigil::kyverno::files::parse_documents(&policy).unwrap();
    let loaded = ev.kyverno.replace_source("test", &docs);
    assert!(loaded[0].error().is_some());
    let signed = lab.signed().await;

    // A Pod: not selected, so the policy is not in the way (and no other
    // policy claims the image: the no-match rule speaks).
    let resp = review_labelled(&ev, &signed, true).await;
    assert!(
        message(&resp).contains("no ClusterImagePolicy matches"),
        "{}",
        message(&resp)
    );
    // A Deployment: selected, denied naming the field and the function.
    let mut body = sigil_testkit::pod_review("uid-2", "default", "d", &signed);
    let pod_spec = body["request"]["object"]["spec"].clone();
    body["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    body["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    body["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec}}});
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    let said = message(&resp);
    let line = said
        .lines()
        .find(|l| l.starts_with("Policy ivpol-sample failed: "))
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(
        line,
        "Policy ivpol-sample failed: policy is invalid: spec.validations[0].expression: resource.get / resource.list / resource.post is not supported by sigil: it reaches outside the request"
    );
}

/// Attestations cosign v3 stores as Sigstore bundles (OCI referrers)
/// verify for an ImageValidatingPolicy's cosign attestor, as those in
/// cosign's `.att` tag do, and their Statement is what `extractPayload`
/// returns (Kyverno counts them as 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_v3_bundle_attestations_verify_and_extract() {
    use sigil_testkit::sigstore::{
        push_referrer_in, BundleSigner, CertRequest, OfflineSigstore, ProofMode, San,
    };
    const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
    const SUBJECT: &str =
        "https://github.com/kyverno/test-images/.github/workflows/cosign.yml@refs/heads/main";
    let env = Env::start();
    let sigstore = OfflineSigstore::new().unwrap();
    let mut req = CertRequest::github_actions(
        "kyverno/test-images",
        "refs/heads/main",
        "github-hosted",
        "push",
    );
    req.subject = San::Uri(SUBJECT.into());
    let cert = sigstore.issue(&req).unwrap();
    let repo = "kyverno/test-images/cosign";
    let digest = env.push(repo, "bundle").await;
    let full = format!("{}/{repo}", env.addr());
    let statement = sigil_testkit::in_toto_statement(
        &full,
        &digest,
        "https://slsa.dev/provenance/v1",
        json!({"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}}),
    );
    let bundle = sigstore
        .dsse_bundle(
            BundleSigner::Certificate(&cert),
            &statement,
            ProofMode::Valid,
        )
        .unwrap();
    let held_at =
        oci_client::Reference::with_digest(env.addr().into(), repo.into(), digest.clone());
    push_referrer_in(
        &env.client,
        &held_at,
        env.addr(),
        repo,
        (BUNDLE, BUNDLE, BUNDLE),
        &bundle,
        Default::default(),
        &oci_client::secrets::RegistryAuth::Anonymous,
    )
    .await
    .unwrap();
    // The upstream policy of the extract-cache-hit test, as it is.
    let policy = std::fs::read_to_string(format!(
        "{FIXTURES}/standard/cosign-attestation-extract-cache-hit/policy.yaml"
    ))
    .unwrap()
    .replace("ghcr.io", env.addr());
    let mut opts = Opts::for_registry(env.addr());
    opts.trust = Some(std::sync::Arc::new(sigil::trust::TrustStore::new(
        sigil::trust::TrustMaterial::from_json("default", &sigstore.trusted_root_json(None))
            .unwrap(),
    )));
    let (ev, _) = pipeline("", &opts);
    ev.kyverno.replace_source(
        "test",
        &sigil::kyverno::files::parse_documents(&policy).unwrap(),
    );
    let image = format!("{full}:bundle");
    for _ in 0..3 {
        let resp = review_labelled(&ev, &image, false).await;
        assert!(allowed(&resp), "{}", message(&resp));
    }
    // Nothing attested: denied with the policy's words.
    let bare = format!("{full}:bare");
    env.push(repo, "bare").await;
    let resp = review_labelled(&ev, &bare, false).await;
    assert_eq!(
        message(&resp),
        "Policy ivpol-cosign-attestation-extract-cache failed: failed to verify SLSA intoto attestation with Cosign keyless"
    );
}

/// sigil's CRD of the kind has exactly Kyverno's fields (by path): a field
/// spelled otherwise would be pruned by the apiserver from a policy written
/// for Kyverno, silently.
#[test]
fn the_crds_fields_are_kyvernos() {
    use std::collections::BTreeSet;
    fn paths(schema: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = format!("{prefix}.{k}");
                // A label selector's insides are Kubernetes', not the policy's.
                if !k.ends_with("Selector") {
                    paths(v, &p, out);
                    if let Some(items) = v.get("items") {
                        paths(items, &format!("{p}[]"), out);
                    }
                }
                out.insert(p);
            }
        }
    }
    let spec = |path: &str| {
        let crd: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let version = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "v1beta1")
            .unwrap()
            .clone();
        let mut out = BTreeSet::new();
        paths(
            &version["schema"]["openAPIV3Schema"]["properties"]["spec"],
            "spec",
            &mut out,
        );
        out
    };
    let kyverno =
        spec("tests/fixtures/kyverno-ivp/crds/policies.kyverno.io_imagevalidatingpolicies.yaml");
    let ours = spec("crds/kyverno/imagevalidatingpolicies.policies.kyverno.io.yaml");
    assert!(kyverno.len() > 100, "{}", kyverno.len());
    assert_eq!(
        kyverno.difference(&ours).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "Kyverno's fields sigil's CRD lacks"
    );
    assert_eq!(
        ours.difference(&kyverno).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "fields only sigil's CRD has"
    );
}

/// An ImageValidatingPolicy's images count against the same
/// registries-per-review limit as a ClusterImagePolicy's: a Pod naming more
/// registries than sigil reaches gets the rest denied, not contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registries_per_review_limit_holds_for_image_validating_policies() {
    let lab = Lab::new();
    let policy = lab
        .notary_basic()
        .replace("glob: ghcr.io/*", "glob: \"*\"")
        .replace(&format!("glob: {}/*", lab.env.addr()), "glob: \"*\"")
        .replace("failurePolicy: Ignore", "failurePolicy: Fail");
    let mut ev = lab.pipeline(&policy);
    std::sync::Arc::get_mut(&mut ev)
        .expect("the only handle")
        .settings
        .max_registries_per_review = 1;
    let signed = lab.signed().await;
    let mut body = sigil_testkit::pod_review("uid-3", "default", "p", &signed);
    body["request"]["object"]["metadata"]["labels"] = json!({"prod": "true"});
    body["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "far", "image": "10.255.255.1:5000/far/away:v1"}));
    let resp = review(&ev, &body).await;
    assert!(!allowed(&resp));
    let said = message(&resp);
    assert!(
        said.starts_with("Policy ivpol-sample failed: failed to verify image with notary cert"),
        "{said}"
    );
    // The first registry is read as ever: alone, the signed image passes.
    let resp = review_labelled(&ev, &signed, true).await;
    assert!(allowed(&resp), "{}", message(&resp));
}
