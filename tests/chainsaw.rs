//! Kyverno's chainsaw conformance tests for `ImageValidatingPolicy` and
//! `NamespacedImageValidatingPolicy` (tests/fixtures/kyverno-ivp/chainsaw,
//! unmodified upstream files), run against `sigil serve` through a real
//! kube-apiserver.
//!
//! chainsaw itself is a Go program that cannot be installed here, so this
//! is a small reader of its steps: `create`, `apply`, `assert` (subset
//! match, with the `(conditions[?type == '…'])` filters the files use),
//! `delete`, `sleep` and `script`, step templates with their bindings,
//! `expect` checks on `$error`, `$stdout` and `$stderr`. Each test runs in a
//! fresh namespace (chainsaw's `$namespace`) and what it created is
//! deleted after it, as chainsaw does.
//!
//! The images the files name on ghcr.io cannot be reached here; they are
//! made in the test in the same shapes (Notation-signed with a CycloneDX
//! SBOM referrer signed too, unsigned, cosign keyless with an SLSA v1
//! attestation) on Debian's registry, and the files are read with only
//! the registry host, the Notary certificate and one asserted digest
//! replaced. A denial is compared from `denied the request:` on: the
//! webhook's name is sigil's, not Kyverno's.
//!
//! Which folders pass, and why the others differ or do not apply, is the
//! table in docs/kyverno.md: this test reads it, runs every folder it
//! marks `passes`, and fails if a folder of the fixtures has no row.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::kube::{apply, ok, text, within, KubeCluster};
use common::sigil_proc::{ready_behind_the_apiserver, start_sigil_with, Sigil};
use common::*;
use serde_json::{json, Value};
use sigil_testkit::notation::{attach, descriptor, NotationCa, JWS};
use sigil_testkit::sigstore::{CertRequest, OfflineSigstore, San, SetMode};
use sigil_testkit::{attach_attestations_at, in_toto_statement};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CHAINSAW: &str = "tests/fixtures/kyverno-ivp/chainsaw";
/// The digest `mutate-digest` asserts for `test-verify-image:signed-keyless`.
const UPSTREAM_KEYLESS_DIGEST: &str =
    "sha256:445a99db22e9add9bfb15ddb1980861a329e5dff5c88d7eec9cbf08b6b2f4eb1";
const COSIGN_SUBJECT: &str =
    "https://github.com/kyverno/test-images/.github/workflows/cosign.yml@refs/heads/main";

/// docs/kyverno.md's table: each folder, and `None` when it passes or why
/// it does not apply.
fn table() -> Vec<(String, Option<String>)> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/kyverno.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (folder, rest) = l.split_once("` | ")?;
            let result = rest.trim_end_matches(" |").trim();
            let outcome = if result == "passes" {
                None
            } else {
                let why = result
                    .strip_prefix("not applicable: ")
                    .or_else(|| result.strip_prefix("differs: "));
                Some(why?.to_string())
            };
            Some((folder.to_string(), outcome))
        })
        .collect()
}

/// Every folder of the fixtures holding a `chainsaw-test.yaml`.
fn folders() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.file_name().is_some_and(|n| n == "chainsaw-test.yaml") {
                let folder = p.parent().unwrap().strip_prefix(base).unwrap();
                out.push(folder.to_string_lossy().into_owned());
            }
        }
    }
    let base = Path::new(ROOT).join(CHAINSAW);
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

#[test]
fn every_upstream_folder_has_a_row_in_the_docs() {
    let table = table();
    let rows: Vec<&String> = table.iter().map(|(f, _)| f).collect();
    let folders = folders();
    assert_eq!(folders.len(), 50);
    for f in &folders {
        assert!(rows.contains(&f), "docs/kyverno.md has no row for {f}");
    }
    assert_eq!(rows.len(), folders.len(), "a row names no folder: {rows:?}");
}

/// The cluster, the registry with the images the files name, and sigil.
struct Lab {
    cluster: KubeCluster,
    env: Env,
    /// A registry that requires basic auth, holding the same signed image.
    private: PrivateRegistry,
    sigil: Sigil,
    ca_pem: String,
    keyless_digest: String,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn new() -> Lab {
        let env = Env::start();
        let ca = NotationCa::new("Notary test").unwrap();
        let signer = ca.issue_valid("test").unwrap();
        let repo = "kyverno/test-verify-image";
        let sign = |digest: String| {
            let (env, signer) = (&env, &signer);
            async move {
                let d = descriptor(&env.client, env.addr(), repo, &digest)
                    .await
                    .unwrap();
                let envelope = signer.jws(&d.payload(), SystemTime::now(), None).unwrap();
                attach(&env.client, env.addr(), repo, &digest, JWS, &envelope)
                    .await
                    .unwrap();
            }
        };
        // :signed, Notation-signed, with a Notation-signed CycloneDX SBOM.
        let signed = env.push(repo, "signed").await;
        sign(signed.clone()).await;
        let sbom = sigil_testkit::sigstore::push_referrer(
            &env.client,
            env.addr(),
            repo,
            &signed,
            "sbom/cyclone-dx",
            "application/vnd.cyclonedx+json",
            json!({"bomFormat": "CycloneDX", "specVersion": "1.5"})
                .to_string()
                .as_bytes(),
            Default::default(),
        )
        .await
        .unwrap();
        sign(sbom).await;
        for tag in ["unsigned", "latest"] {
            env.push(repo, tag).await;
        }
        let keyless_digest = env.push(repo, "signed-keyless").await;

        // cosign:github-attestation: an SLSA v1 attestation signed keyless
        // by the test-images workflow, logged in the test's Rekor.
        let sigstore = OfflineSigstore::new().unwrap();
        let cosign_repo = "kyverno/test-images/cosign";
        let digest = env.push(cosign_repo, "github-attestation").await;
        let mut req = CertRequest::github_actions(
            "kyverno/test-images",
            "refs/heads/main",
            "github-hosted",
            "push",
        );
        req.subject = San::Uri(COSIGN_SUBJECT.into());
        let cert = sigstore.issue(&req).unwrap();
        let full = format!("{}/{cosign_repo}", env.addr());
        let statement = in_toto_statement(
            &full,
            &digest,
            "https://slsa.dev/provenance/v1",
            json!({"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}}),
        );
        let att = sigstore
            .attest_keyless(
                &cert,
                &statement,
                SystemTime::now() - Duration::from_secs(5),
                SetMode::Valid,
            )
            .unwrap();
        attach_attestations_at(
            &env.client,
            env.addr(),
            cosign_repo,
            &format!("{}.att", digest.replace(':', "-")),
            &[att],
            &oci_client::secrets::RegistryAuth::Anonymous,
        )
        .await
        .unwrap();
        let private = private_registry();
        push_signed_privately(&private, &signer).await;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("trusted_root.json");
        std::fs::write(&root, sigstore.trusted_root_json(None)).unwrap();

        let cluster = KubeCluster::start();
        // sigil's CRDs, its CRDs of Kyverno's two kinds, and Kyverno's PolicyException
        // (one test creates one; sigil does not read them).
        let crds = ["crds", "crds/kyverno"]
            .iter()
            .flat_map(|d| std::fs::read_dir(Path::new(ROOT).join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .chain([Path::new(ROOT).join(
                "tests/fixtures/kyverno-ivp/crds/policies.kyverno.io_policyexceptions.yaml",
            )]);
        for crd in crds {
            let out = cluster.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
            assert!(ok(&out), "{}", text(&out));
        }
        for crd in [
            "imagevalidatingpolicies",
            "namespacedimagevalidatingpolicies",
            "policyexceptions",
        ] {
            let out = cluster.kubectl(&[
                "wait",
                "--for=condition=Established",
                &format!("crd/{crd}.policies.kyverno.io"),
                "--timeout=120s",
            ]);
            assert!(ok(&out), "{}", text(&out));
        }
        let sigil = start_sigil_with(
            &cluster,
            &[env.addr(), &private.registry.addr],
            &["--trust-root", root.to_str().unwrap()],
        );
        ready_behind_the_apiserver(&cluster, &sigil).await;
        Lab {
            cluster,
            env,
            private,
            sigil,
            ca_pem: ca.pem(),
            keyless_digest,
            _dir: dir,
        }
    }

    /// An upstream text as it reads here: the registry host, every PEM
    /// certificate (the Notary one), the asserted keyless digest.
    fn local(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        while let (Some(b), Some(e)) = (rest.find(BEGIN), rest.find(END)) {
            let indent = rest[..b].rsplit('\n').next().unwrap_or("").to_string();
            out.push_str(&rest[..b - indent.len()]);
            let cert: Vec<String> = self
                .ca_pem
                .trim()
                .lines()
                .map(|l| format!("{indent}{l}"))
                .collect();
            out.push_str(&cert.join("\n"));
            rest = &rest[e + END.len()..];
        }
        out.push_str(rest);
        out.replace("ghcr.io", self.env.addr())
            .replace(UPSTREAM_KEYLESS_DIGEST, &self.keyless_digest)
    }

    /// How many policies sigil has loaded (its `sigil_policies` gauges).
    async fn policies_loaded(&self) -> u64 {
        let body = reqwest::get(&self.sigil.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .filter(|l| l.starts_with("sigil_policies{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// `kyverno/test-verify-image:signed` in `private` (basic auth): Notation
/// signed by `signer`, with a CycloneDX SBOM referrer signed too.
async fn push_signed_privately(
    private: &PrivateRegistry,
    signer: &sigil_testkit::notation::NotationSigner,
) {
    use sigil_testkit::notation::SIGNATURE_ARTIFACT;
    use sigil_testkit::sigstore::push_referrer_in;
    let addr = private.registry.addr.as_str();
    let client = sigil_testkit::plain_http_client(&[addr.to_string()]);
    let repo = "kyverno/test-verify-image";
    let reference = oci_client::Reference::with_tag(addr.into(), repo.into(), "signed".into());
    let digest = sigil_testkit::push_image_as(&client, &reference, &private.auth)
        .await
        .unwrap();
    let sign = |digest: String| {
        let client = &client;
        async move {
            let held_at = oci_client::Reference::with_digest(addr.into(), repo.into(), digest);
            let (bytes, _) = client
                .pull_manifest_raw(
                    &held_at,
                    &private.auth,
                    &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
                )
                .await
                .unwrap();
            let d = sigil_testkit::notation::Descriptor {
                media_type: oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into(),
                digest: held_at.digest().unwrap().to_string(),
                size: bytes.len() as u64,
            };
            let envelope = signer.jws(&d.payload(), SystemTime::now(), None).unwrap();
            let kinds = (SIGNATURE_ARTIFACT, JWS, SIGNATURE_ARTIFACT);
            push_referrer_in(
                client,
                &held_at,
                addr,
                repo,
                kinds,
                &envelope,
                Default::default(),
                &private.auth,
            )
            .await
            .unwrap();
        }
    };
    sign(digest.clone()).await;
    let held_at = oci_client::Reference::with_digest(addr.into(), repo.into(), digest);
    let sbom = push_referrer_in(
        &client,
        &held_at,
        addr,
        repo,
        (
            "sbom/cyclone-dx",
            "application/vnd.cyclonedx+json",
            "sbom/cyclone-dx",
        ),
        json!({"bomFormat": "CycloneDX", "specVersion": "1.5"})
            .to_string()
            .as_bytes(),
        Default::default(),
        &private.auth,
    )
    .await
    .unwrap();
    sign(sbom).await;
}

/// One test being run: its folder, namespace, and what it created.
struct Run<'a> {
    lab: &'a Lab,
    dir: PathBuf,
    namespace: String,
    created: Vec<(String, String, String)>,
}

/// kubectl's name for a kind: `Kind.version.group` (`Kind` for core v1).
fn kubectl_type(doc: &Value) -> String {
    let api_version = doc["apiVersion"].as_str().unwrap_or("v1");
    let kind = doc["kind"].as_str().unwrap_or_default();
    match api_version.split_once('/') {
        Some((group, version)) => format!("{kind}.{version}.{group}"),
        None => kind.to_string(),
    }
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The check keys the files use, evaluated over `context`
/// (`$error`, `$stdout`, `$stderr`).
fn evaluate(expression: &str, context: &Value) -> Value {
    let var = |name: &str| context.get(name).cloned().unwrap_or(Value::Null);
    match expression {
        "$error" => var("$error"),
        "$error != null" => json!(!var("$error").is_null()),
        "trim_space($stdout)" => json!(var("$stdout").as_str().unwrap_or("").trim()),
        "trim_space($stderr)" => json!(var("$stderr").as_str().unwrap_or("").trim()),
        e if e.starts_with("contains($stdout, '") => {
            let needle = e
                .trim_start_matches("contains($stdout, '")
                .trim_end_matches("')");
            json!(var("$stdout").as_str().unwrap_or("").contains(needle))
        }
        e if e.starts_with("conditions[?type == '") => {
            let kind = e
                .trim_start_matches("conditions[?type == '")
                .trim_end_matches("']");
            let found: Vec<Value> = context
                .get("conditions")
                .and_then(Value::as_array)
                .map(|c| c.iter().filter(|c| c["type"] == kind).cloned().collect())
                .unwrap_or_default();
            json!(found)
        }
        other => panic!("the harness does not read the expression ({other})"),
    }
}

/// Whether `actual` holds `expected`, as chainsaw's assertion trees say:
/// maps by their keys (a `(…)` key is an expression over `actual`), lists
/// element by element, scalars equal. A denial is compared from
/// `denied the request:` on (the webhook's name differs).
fn holds(expected: &Value, actual: &Value) -> Result<(), String> {
    match expected {
        Value::Object(fields) => {
            for (k, v) in fields {
                let got = match k.strip_prefix('(').and_then(|k| k.strip_suffix(')')) {
                    Some(expression) => evaluate(expression, actual),
                    None => actual.get(k).cloned().unwrap_or(Value::Null),
                };
                holds(v, &got).map_err(|e| format!("{k}: {e}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let got = actual.as_array().cloned().unwrap_or_default();
            if got.len() != items.len() {
                return Err(format!(
                    "{} items, wanted {}: {actual}",
                    got.len(),
                    items.len()
                ));
            }
            items
                .iter()
                .zip(&got)
                .enumerate()
                .try_for_each(|(i, (e, a))| holds(e, a).map_err(|err| format!("[{i}] {err}")))
        }
        Value::String(s) if s.contains("denied the request: ") => {
            let want = s.split_once("denied the request: ").unwrap().1.trim();
            let got = actual.as_str().unwrap_or_default();
            match got.split_once("denied the request: ") {
                Some((_, said)) if said.trim() == want => Ok(()),
                _ => Err(format!("wanted a denial saying {want:?}, got {got:?}")),
            }
        }
        scalar => {
            let same = scalar == actual
                || scalar
                    .as_str()
                    .is_some_and(|s| actual.to_string().trim_matches('"') == s);
            if same {
                Ok(())
            } else {
                Err(format!("wanted {scalar}, got {actual}"))
            }
        }
    }
}

impl Run<'_> {
    fn kubectl_stdin(&self, args: &[&str], doc: &Value) -> std::process::Output {
        self.lab
            .cluster
            .kubectl_stdin(args, &serde_json::to_string(doc).unwrap())
    }

    fn file(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", self.dir.join(name).display()));
        self.lab.local(&text)
    }

    fn namespace_of(&self, doc: &Value) -> String {
        doc.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(&self.namespace)
            .to_string()
    }

    /// `create` or `apply` of each document, checked by `expect`.
    fn create(
        &mut self,
        verb: &str,
        op: &Value,
        bindings: &[(String, String)],
    ) -> Result<(), String> {
        let docs = self.resources(op, bindings);
        for doc in docs {
            let ns = self.namespace_of(&doc);
            let out = self.kubectl_stdin(&[verb, "-n", &ns, "-f", "-"], &doc);
            let error =
                (!ok(&out)).then(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
            let context = json!({"$error": error});
            match op.get("expect").and_then(Value::as_array) {
                Some(expect) => {
                    for e in expect {
                        holds(&e["check"], &context)?;
                    }
                }
                None => {
                    if let Some(e) = error {
                        return Err(format!("{verb} {}: {e}", kubectl_type(&doc)));
                    }
                }
            }
            if ok(&out) {
                let name = doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.created.push((kubectl_type(&doc), ns, name));
            }
        }
        Ok(())
    }

    fn resources(&self, op: &Value, bindings: &[(String, String)]) -> Vec<Value> {
        let bind = |s: &str| {
            let mut s = s.to_string();
            for (name, value) in bindings {
                s = s.replace(&format!("(${name})"), value);
            }
            s.replace("($namespace)", &self.namespace)
        };
        match (op.get("file"), op.get("resource")) {
            (Some(file), _) => yaml_docs(&bind(&self.file(&bind(file.as_str().unwrap())))),
            (None, Some(resource)) => yaml_docs(&bind(
                &self.lab.local(&serde_json::to_string(resource).unwrap()),
            )),
            _ => panic!("an operation with neither file nor resource: {op}"),
        }
    }

    /// `assert`: each document holds in the cluster within its timeout.
    fn assert(&mut self, op: &Value, bindings: &[(String, String)]) -> Result<(), String> {
        for doc in self.resources(op, bindings) {
            let ns = self.namespace_of(&doc);
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut last = String::new();
            let held = within(Duration::from_secs(30), || {
                let out = self.lab.cluster.kubectl(&[
                    "get",
                    &kubectl_type(&doc),
                    &name,
                    "-n",
                    &ns,
                    "-o",
                    "json",
                ]);
                if !ok(&out) {
                    last = text(&out);
                    return false;
                }
                let actual: Value = serde_json::from_slice(&out.stdout).unwrap();
                match holds(&doc, &actual) {
                    Ok(()) => true,
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            });
            if held.is_none() {
                return Err(format!("assert {} {name}: {last}", kubectl_type(&doc)));
            }
        }
        Ok(())
    }

    fn script(&self, op: &Value) -> Result<(), String> {
        let out = std::process::Command::new("bash")
            .args(["-c", op["content"].as_str().unwrap_or_default()])
            .current_dir(&self.dir)
            .env("KUBECONFIG", &self.lab.cluster.kubeconfig)
            .env("NAMESPACE", &self.namespace)
            .output()
            .unwrap();
        let error = (!out.status.success()).then(|| "exit status".to_string());
        let context = json!({
            "$error": error,
            "$stdout": String::from_utf8_lossy(&out.stdout),
            "$stderr": String::from_utf8_lossy(&out.stderr),
        });
        match op.get("check") {
            Some(check) => holds(check, &context),
            None if error.is_some() => Err(format!("script failed: {}", text(&out))),
            None => Ok(()),
        }
    }

    fn operations(&mut self, ops: &[Value], bindings: &[(String, String)]) -> Result<(), String> {
        for op in ops {
            let (verb, body) = op.as_object().and_then(|o| o.iter().next()).unwrap();
            match verb.as_str() {
                "create" | "apply" => self.create(verb, body, bindings)?,
                "assert" => self.assert(body, bindings)?,
                "delete" => {
                    let r = &body["ref"];
                    let ns = r["namespace"]
                        .as_str()
                        .unwrap_or(&self.namespace)
                        .to_string();
                    let out = self.lab.cluster.kubectl(&[
                        "delete",
                        &kubectl_type(r),
                        r["name"].as_str().unwrap_or_default(),
                        "-n",
                        &ns,
                    ]);
                    if !ok(&out) {
                        return Err(format!("delete: {}", text(&out)));
                    }
                }
                "sleep" => {
                    let d = body["duration"].as_str().unwrap_or("1s");
                    let secs: u64 = d.trim_end_matches('s').parse().unwrap_or(1);
                    std::thread::sleep(Duration::from_secs(secs));
                }
                "script" => self.script(body)?,
                other => return Err(format!("the harness does not run {other:?}")),
            }
        }
        Ok(())
    }

    fn steps(&mut self) -> Result<(), String> {
        let test =
            yaml_docs(&std::fs::read_to_string(self.dir.join("chainsaw-test.yaml")).unwrap());
        let steps = test[0]["spec"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for step in steps {
            let name = step["name"].as_str().unwrap_or("step").to_string();
            let result = if let Some(used) = step.get("use") {
                let path = used["template"].as_str().unwrap().trim_start_matches('/');
                let template = yaml_docs(&std::fs::read_to_string(self.dir.join(path)).unwrap());
                let bindings: Vec<(String, String)> = used["with"]["bindings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        (
                            b["name"].as_str().unwrap().to_string(),
                            b["value"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                let ops = template[0]["spec"]["try"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                self.operations(&ops, &bindings)
            } else {
                let ops = step["try"].as_array().cloned().unwrap_or_default();
                self.operations(&ops, &[])
            };
            result.map_err(|e| format!("step {name:?}: {e}"))?;
        }
        Ok(())
    }

    /// Deletes what the test created, newest first, and its namespace.
    fn clean(&mut self) {
        for (kind, ns, name) in self.created.drain(..).rev() {
            let _ = self.lab.cluster.kubectl(&[
                "delete",
                &kind,
                &name,
                "-n",
                &ns,
                "--ignore-not-found",
            ]);
        }
        let _ = self
            .lab
            .cluster
            .kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
    }
}

/// Every folder docs/kyverno.md marks `passes`, in order, one apiserver
/// and one sigil for all (as chainsaw runs a suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_tests_marked_passing_pass_against_sigil() {
    let lab = Lab::new().await;
    let mut failed = Vec::new();
    let mut ran = 0;
    for (n, (folder, outcome)) in table().into_iter().enumerate() {
        if outcome.is_some() {
            continue;
        }
        ran += 1;
        let namespace = format!("chainsaw-{n}");
        assert!(ok(&lab.cluster.kubectl(&[
            "create",
            "namespace",
            &namespace
        ])));
        let mut run = Run {
            lab: &lab,
            dir: Path::new(ROOT).join(CHAINSAW).join(&folder),
            namespace,
            created: Vec::new(),
        };
        let result = run.steps();
        run.clean();
        // The next test starts once sigil has let go of this one's policies.
        let mut loaded = u64::MAX;
        for _ in 0..300 {
            loaded = lab.policies_loaded().await;
            if loaded == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(loaded, 0, "{folder}: its policies were not unloaded");
        if let Err(e) = result {
            failed.push(format!("{folder}: {e}"));
        }
    }
    assert!(ran > 0);
    assert!(
        failed.is_empty(),
        "{} of {ran} failed:\n{}\n\nsigil's log:\n{}",
        failed.len(),
        failed.join("\n"),
        lab.sigil.log()
    );
    refused_policies_say_why_in_their_status(&lab);
    private_images_are_read_with_the_pods_pull_secrets(&lab);
}

/// A policy sigil refuses (here the upstream one that reads its
/// certificate through `resource.Get`) is not ready, and its status names
/// the field and why, in Kyverno's shape.
fn refused_policies_say_why_in_their_status(lab: &Lab) {
    let dir = Path::new(ROOT)
        .join(CHAINSAW)
        .join("image-validating-policies/standard/notary-configmap-cert");
    let policy = lab.local(&std::fs::read_to_string(dir.join("policy.yaml")).unwrap());
    let out = apply(&lab.cluster, &policy);
    assert!(ok(&out), "{}", text(&out));
    let name = yaml_docs(&policy)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut last = Value::Null;
    let said = within(Duration::from_secs(30), || {
        let out = lab.cluster.kubectl(&[
            "get",
            "imagevalidatingpolicies.v1beta1.policies.kyverno.io",
            &name,
            "-o",
            "json",
        ]);
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last["status"]["conditionStatus"]["ready"] == json!(false)
    });
    assert!(said.is_some(), "{last}");
    let status = &last["status"]["conditionStatus"];
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spec.variables[0].expression: "),
        "{status}"
    );
    assert!(message.contains("resource."), "{status}");
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][0]["reason"], "Invalid");
    let out = lab.cluster.kubectl(&[
        "delete",
        "imagevalidatingpolicies.v1beta1.policies.kyverno.io",
        &name,
    ]);
    assert!(ok(&out), "{}", text(&out));
}

/// The Pod's own `imagePullSecrets` reach a private registry for an
/// ImageValidatingPolicy's checks (Kyverno ignores them), in its own
/// namespace only.
fn private_images_are_read_with_the_pods_pull_secrets(lab: &Lab) {
    let c = &lab.cluster;
    let private = &lab.private;
    let addr = private.registry.addr.clone();
    let policy = std::fs::read_to_string(
        Path::new(ROOT)
            .join(CHAINSAW)
            .join("image-validating-policies/standard/notary-basic/policy.yaml"),
    )
    .unwrap();
    let policy = lab
        .local(&policy)
        .replace(lab.env.addr(), &addr)
        .replace("failurePolicy: Ignore", "failurePolicy: Fail")
        .replace("name: ivpol-sample", "name: ivpol-private");
    let out = c.kubectl_stdin(&["create", "-f", "-"], &policy);
    assert!(ok(&out), "{}", text(&out));
    for ns in ["private-ns", "other-ns"] {
        assert!(ok(&c.kubectl(&["create", "namespace", ns])));
    }
    let out = c.kubectl(&[
        "-n",
        "private-ns",
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-server",
        &addr,
        "--docker-username",
        "alice",
        "--docker-password",
        "s3cret",
    ]);
    assert!(ok(&out), "{}", text(&out));
    let image = format!("{addr}/kyverno/test-verify-image:signed");
    let pod = |name: &str, secrets: bool| {
        let pull = if secrets {
            r#", "imagePullSecrets": [{"name": "regcred"}]"#
        } else {
            ""
        };
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {{"prod": "true"}}}},
               "spec": {{"containers": [{{"name": "c", "image": "{image}"}}]{pull}}}}}"#
        )
    };
    // Without the Pod's secret the registry refuses: denied, with why.
    let mut last = String::new();
    let refused = within(Duration::from_secs(30), || {
        let out = c.kubectl_stdin(
            &["-n", "private-ns", "create", "-f", "-"],
            &pod("no-secret", false),
        );
        last = text(&out);
        !ok(&out)
            && last.contains("Policy ivpol-private failed: ")
            && last.contains("denied access")
    });
    assert!(refused.is_some(), "{last}");
    // (Retried while sigil lets go of the refused policy deleted before.)
    let admitted = within(Duration::from_secs(30), || {
        let out = c.kubectl_stdin(
            &["-n", "private-ns", "create", "-f", "-"],
            &pod("with-secret", true),
        );
        last = text(&out);
        ok(&out)
    });
    assert!(
        admitted.is_some(),
        "the Pod's imagePullSecrets give access: {last}"
    );
    // The same name in another namespace is not that Secret.
    let out = c.kubectl_stdin(
        &["-n", "other-ns", "create", "-f", "-"],
        &pod("borrowed", true),
    );
    assert!(
        !ok(&out) && text(&out).contains("denied access"),
        "{}",
        text(&out)
    );
}
