//! policy-controller's own ClusterImagePolicy manifests
//! (tests/fixtures/policy-controller) parse unchanged; the valid ones compile.

use std::path::Path;

use sigil::policy::files::parse_documents;
use sigil::policy::store::{load, LoadedPolicy};

fn manifests(folder: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy-controller")
        .join(folder);
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Expected to differ from policy-controller: valid manifests whose
/// attestation policies are `type: cue`. No Rust CUE implementation exists,
/// so sigil refuses them (naming the field) instead of accepting a policy it
/// cannot evaluate.
fn refused_by_design(text: &str) -> bool {
    text.contains("type: cue")
}

/// policy-controller's invalid manifests sigil accepts on purpose: AWS KMS
/// key IDs and `alias/NAME` references, which cosign takes and sigil
/// resolves (issue 14); policy-controller only takes ARNs.
pub const ACCEPTED_BY_DESIGN: &[&str] = &[
    "invalid-keyref-awskms.yaml",
    "v1beta1-invalid-keyref-awskms.yaml",
];

#[test]
fn every_valid_manifest_parses_and_compiles() {
    let all = manifests("valid");
    assert!(all.len() >= 14);
    let mut refused = 0;
    for (name, text) in all {
        let defs = parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(defs.len(), 1, "{name}");
        match load(&defs[0]) {
            LoadedPolicy::Valid(p) => {
                assert!(!refused_by_design(&text), "{name}: CUE accepted");
                assert!(!p.globs.is_empty(), "{name}")
            }
            LoadedPolicy::Invalid(p) if refused_by_design(&text) => {
                refused += 1;
                assert!(
                    p.error.field.ends_with(".policy.type"),
                    "{name}: {}",
                    p.error
                );
                assert_eq!(p.error.message, "CUE is not supported; use rego or cel");
            }
            LoadedPolicy::Invalid(p) => panic!("{name}: rejected valid policy: {}", p.error),
        }
    }
    assert_eq!(refused, 5, "the five CUE manifests");
}

/// Invalid manifests that sigil already refuses when compiling (the full
/// policy-controller rule set is the validating webhook's job).
#[test]
fn invalid_manifests_are_refused_naming_the_field() {
    let expected: &[(&str, &str)] = &[
        ("invalid-glob.yaml", "spec.images[0].glob"),
        ("invalid-pubkey.yaml", "spec.authorities[0].key.data"),
        ("invalid-mode.yaml", "spec.mode"),
        ("v1beta1-invalid-glob.yaml", "spec.images[0].glob"),
        (
            "v1beta1-invalid-pubkey.yaml",
            "spec.authorities[0].key.data",
        ),
        ("v1beta1-invalid-mode.yaml", "spec.mode"),
        (
            "v1beta1-invalid-hash-algo.yaml",
            "spec.authorities[0].key.hashAlgorithm",
        ),
        ("valid-keyref-and-keylessref.yaml", "spec.authorities[0]"),
        (
            "v1beta1-valid-keyref-and-keylessref.yaml",
            "spec.authorities[0]",
        ),
        (
            "keyref-with-multiple-properties.yaml",
            "spec.authorities[0].key",
        ),
        (
            "v1beta1-keyref-with-multiple-properties.yaml",
            "spec.authorities[0].key",
        ),
        ("empty-keyref-and-keylessref.yaml", "spec.authorities[0]"),
    ];
    let all = manifests("invalid");
    for (file, field) in expected {
        let (_, text) = all
            .iter()
            .find(|(n, _)| n == file)
            .unwrap_or_else(|| panic!("{file} missing"));
        let defs = parse_documents(text).unwrap();
        match load(&defs[0]) {
            LoadedPolicy::Invalid(p) => {
                assert!(p.error.field.starts_with(field), "{file}: {}", p.error)
            }
            LoadedPolicy::Valid(_) => panic!("{file}: accepted"),
        }
    }
}

/// `crds/` holds exactly what `sigil crd` generates from the Rust types.
#[test]
fn checked_in_crds_match_the_generated_ones() {
    let crds = sigil::crd::all();
    assert_eq!(crds.len(), 2);
    let kyverno = sigil::crd::kyverno();
    assert_eq!(kyverno.len(), 2);
    let placed = crds
        .iter()
        .map(|c| ("crds", c))
        .chain(kyverno.iter().map(|c| ("crds/kyverno", c)));
    for (dir, crd) in placed {
        let name = crd.metadata.name.clone().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("{dir}/{name}.yaml"));
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = sigil::crd::to_yaml(crd).unwrap();
        assert!(
            checked_in == generated,
            "crds/ is stale: run `scripts/gen-crds.sh` ({} differs)",
            path.display()
        );
    }
}

/// `/validate-policy`'s answer to a CREATE of the manifest `text`.
fn validate_policy_review(text: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "policy.sigstore.dev", "version": "v1beta1", "kind": "ClusterImagePolicy"},
            "resource": {"group": "policy.sigstore.dev", "version": "v1beta1", "resource": "clusterimagepolicies"},
            "name": doc["metadata"]["name"], "operation": "CREATE", "userInfo": {"username": "u"},
            "object": doc
        }
    });
    serde_json::from_slice(
        &sigil::service::validate_policy(&serde_json::to_vec(&review).unwrap()).unwrap(),
    )
    .unwrap()
}

/// Every invalid manifest is refused by the policy validator with a message
/// naming the field, through the same code as `/validate-policy`.
#[test]
fn every_invalid_manifest_is_refused_by_validate_policy() {
    let all = manifests("invalid");
    assert!(all.len() >= 30);
    for (name, text) in all {
        let resp = validate_policy_review(&text);
        if ACCEPTED_BY_DESIGN.contains(&name.as_str()) {
            assert_eq!(resp["response"]["allowed"], true, "{name}: {resp}");
            continue;
        }
        assert_eq!(resp["response"]["allowed"], false, "{name} accepted");
        let msg = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("invalid ClusterImagePolicy") && msg.contains("spec."),
            "{name}: {msg}"
        );
    }
    for (name, text) in manifests("valid") {
        let resp = validate_policy_review(&text);
        assert_eq!(
            resp["response"]["allowed"],
            !refused_by_design(&text),
            "{name}: {}",
            resp["response"]["status"]["message"]
        );
        if refused_by_design(&text) {
            assert!(resp["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("CUE is not supported; use rego or cel"));
        }
    }
}

/// `/validate-policy` also checks TrustRoots, naming the wrong field.
#[test]
fn validate_policy_checks_trust_roots() {
    let sigstore = sigil_testkit::sigstore::OfflineSigstore::new().unwrap();
    let review = |spec: serde_json::Value| {
        let doc = serde_json::json!({
            "apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot",
            "metadata": {"name": "tr"}, "spec": spec,
        });
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "kind": {"group": "policy.sigstore.dev", "version": "v1alpha1", "kind": "TrustRoot"},
                "resource": {"group": "policy.sigstore.dev", "version": "v1alpha1", "resource": "trustroots"},
                "name": "tr", "operation": "CREATE", "userInfo": {"username": "u"},
                "object": doc
            }
        });
        let v: serde_json::Value = serde_json::from_slice(
            &sigil::service::validate_policy(&serde_json::to_vec(&review).unwrap()).unwrap(),
        )
        .unwrap();
        v["response"].clone()
    };
    assert_eq!(review(sigstore.trust_root_spec())["allowed"], true);
    let resp = review(
        serde_json::json!({"sigstoreKeys": {"tLogs": [{"baseURL": "x", "publicKey": "bm9wZQ=="}]}}),
    );
    assert_eq!(resp["allowed"], false);
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.sigstoreKeys.tLogs[0].publicKey: holds no PEM block"),
        "{resp}"
    );
    let resp = review(serde_json::json!({"sigstoreKeys": {"tlogs": []}}));
    assert_eq!(resp["allowed"], false);
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.sigstoreKeys.tlogs"),
        "{resp}"
    );
    let resp =
        review(serde_json::json!({"remote": {"root": "e30=", "mirror": "https://tuf.example"}}));
    assert_eq!(resp["allowed"], false);
    assert!(
        resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.remote.root: not a valid TUF root"),
        "{resp}"
    );
    // A remote mirror is not fetched at admission; its pinned root is checked.
    let repo = sigil_testkit::tuf::TestTufRepo::new(
        &sigstore.trusted_root_json(None),
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
    )
    .unwrap();
    let resp = review(
        serde_json::json!({"remote": {"root": repo.root_b64(), "mirror": "https://tuf.example"}}),
    );
    assert_eq!(resp["allowed"], true, "{resp}");
}

/// Fulcio's workflow claims in `keyless.identities[]` are accepted by the
/// CRD's types and by `/validate-policy`; a bad pattern, or a claim given
/// both exactly and as a pattern, is refused naming the field.
#[test]
fn workflow_claims_in_identities_are_validated() {
    let policy = |claims: &str| {
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: gha\nspec:\n  images:\n    - glob: \"ghcr.io/acme/**\"\n  authorities:\n    - keyless:\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subjectRegExp: \"https://github.com/acme/.*\"\n{claims}"
        )
    };
    let ok = policy(
        "            sourceRepositoryURI: https://github.com/acme/app\n            sourceRepositoryRefRegExp: \"refs/heads/main\"\n            sourceRepositoryDigest: 0f1e2d\n            sourceRepositoryOwnerURI: https://github.com/acme\n            buildSignerURIRegExp: \"https://github.com/acme/workflows/.*\"\n            buildSignerDigest: 0f1e2d\n            buildTrigger: push\n            runnerEnvironment: github-hosted\n            buildConfigURI: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main\n            githubWorkflowTrigger: push\n            githubWorkflowSha: 0f1e2d\n            githubWorkflowName: Release\n            githubWorkflowRepository: acme/app\n            githubWorkflowRef: refs/heads/main\n",
    );
    let resp = validate_policy_review(&ok);
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    for (claims, says) in [
        (
            "            sourceRepositoryRefRegExp: \"refs/(heads\"\n",
            "spec.authorities[0].keyless.identities[0].sourceRepositoryRefRegExp: regex is invalid",
        ),
        (
            "            buildTrigger: push\n            buildTriggerRegExp: \"push|release\"\n",
            "buildTrigger and buildTriggerRegExp cannot both be set",
        ),
        (
            "            runnerEnvironmentRegExp: \".*\"\n",
            "spec.authorities[0].keyless.identities[0].runnerEnvironmentRegExp",
        ),
    ] {
        let resp = validate_policy_review(&policy(claims));
        assert_eq!(resp["response"]["allowed"], false, "{claims}: {resp}");
        let msg = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{claims}: {msg}");
    }
}

#[test]
fn github_attestation_sources_are_validated() {
    let policy = |source: &str| {
        format!(
            "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: gh\nspec:\n  images:\n    - glob: \"ghcr.io/acme/**\"\n  authorities:\n    - keyless:\n        identities:\n          - issuer: https://token.actions.githubusercontent.com\n            subjectRegExp: \"https://github.com/acme/.*\"\n      source:\n        - githubAttestations:\n{source}      attestations:\n        - name: provenance\n          predicateType: https://slsa.dev/provenance/v1\n"
        )
    };
    let resp = validate_policy_review(&policy(
        "            owner: acme\n            repository: app\n            url: https://ghe.acme.test/api/v3\n            tokenSecretRef:\n              name: github-token\n",
    ));
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    for (source, says) in [
        (
            "            owner: acme/app\n",
            "spec.authorities[0].source[0].githubAttestations.owner: \"acme/app\" is not a GitHub owner name",
        ),
        (
            "            owner: acme\n            repository: ../x\n",
            "spec.authorities[0].source[0].githubAttestations.repository",
        ),
        (
            "            owner: acme\n            url: http://api.github.com\n",
            "spec.authorities[0].source[0].githubAttestations.url: \"http://api.github.com\" is not an https URL",
        ),
        (
            "            owner: acme\n          oci: ghcr.io/acme/sigs\n",
            "spec.authorities[0].source[0].oci: githubAttestations reads GitHub's API",
        ),
        (
            "            owner: acme\n            tokenSecretRef: {}\n",
            "spec.authorities[0].source[0].githubAttestations.tokenSecretRef.name: missing field",
        ),
        (
            "            owner: acme\n            token: ghp_inline\n",
            "token",
        ),
    ] {
        let resp = validate_policy_review(&policy(source));
        assert_eq!(resp["response"]["allowed"], false, "{source}: {resp}");
        let msg = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{source}: {msg}");
    }
}
