mod common;
use common::kube::{ok, text, KubeCluster};
#[test]
fn probe() {
    let c = KubeCluster::start();
    let out = c.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        "crds/kyverno/imagevalidatingpolicies.policies.kyverno.io.yaml",
    ]);
    eprintln!("{}", text(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let body = r#"{"apiVersion":"policies.kyverno.io/v1beta1","kind":"ImageValidatingPolicy","metadata":{"name":"a"},"spec":{"matchConstraints":{"resourceRules":[{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods"]}]}}}"#;
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("Authorization: Bearer {}", c.token),
            "--data",
            body,
            &format!(
                "{}/apis/policies.kyverno.io/v1beta1/imagevalidatingpolicies",
                c.url
            ),
        ])
        .output()
        .unwrap();
    eprintln!("curl: {}", text(&out));
    let out = c.kubectl(&["version", "--client"]);
    eprintln!("{}", text(&out));
    let _ = ok(&out);
}
