use super::*;
use serde_json::json;

fn images(kind: &str, obj: &serde_json::Value) -> Vec<(String, String, String)> {
    read_value(obj, kind, PodSpecAt::of_kind(kind))
        .unwrap()
        .checked()
        .unwrap()
        .pod
        .unwrap()
        .images
        .into_iter()
        .map(|i| (i.field, i.reference, i.pointer))
        .collect()
}

#[test]
fn finds_all_container_kinds_in_a_deployment() {
    // Keys in another order than the result: the order is by list.
    let obj = json!({"spec": {"template": {"spec": {
        "ephemeralContainers": [{"name": "e", "image": "debug:3"}],
        "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:2"}],
        "initContainers": [{"name": "i", "image": "init:1"}],
    }}}});
    let got: Vec<(String, String)> = images("Deployment", &obj)
        .into_iter()
        .map(|(f, r, _)| (f, r))
        .collect();
    let want = [
        ("spec.template.spec.initContainers[0].image", "init:1"),
        ("spec.template.spec.containers[0].image", "app:1"),
        ("spec.template.spec.containers[1].image", "side:2"),
        ("spec.template.spec.ephemeralContainers[0].image", "debug:3"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(f, r)| (f.to_string(), r.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn image_volumes_are_images_too() {
    let obj = json!({"spec": {
        "containers": [{"name": "a", "image": "app:1"}],
        "volumes": [
            {"name": "cfg", "configMap": {"name": "c"}},
            {"name": "model", "image": {"reference": "reg.example/models/llm:v1", "pullPolicy": "IfNotPresent"}}
        ]
    }});
    let imgs = images("Pod", &obj);
    assert_eq!(imgs.len(), 2);
    assert_eq!(
        imgs[1],
        (
            "spec.volumes[1].image.reference".to_string(),
            "reg.example/models/llm:v1".to_string(),
            "/spec/volumes/1/image/reference".to_string()
        )
    );
    let deploy = json!({"spec": {"template": {"spec": {"containers": [], "volumes": [{"name": "m", "image": {"reference": "x:1"}}]}}}});
    assert_eq!(
        images("Deployment", &deploy)[0].0,
        "spec.template.spec.volumes[0].image.reference"
    );
}

#[test]
fn cronjob_and_unknown_kinds() {
    let obj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}});
    let imgs = images("CronJob", &obj);
    assert_eq!(
        imgs[0].0,
        "spec.jobTemplate.spec.template.spec.containers[0].image"
    );
    assert_eq!(
        imgs[0].2,
        "/spec/jobTemplate/spec/template/spec/containers/0/image"
    );
    assert!(PodSpecAt::of_kind("ConfigMap").is_none());
    let w = read_value(&obj, "ConfigMap", None).unwrap();
    assert_eq!(w.pod, None);
}

#[test]
fn malformed_spec_is_an_error_not_a_panic() {
    let obj = json!({"spec": {"containers": "nope"}});
    let err = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read the pod spec of this Pod at spec"),
        "{err}"
    );
    for bad in [
        r#"{"spec": {"containers": [{"image": 7}]}}"#,
        r#"{"spec": [1]}"#,
        r#"{"spec": {"containers": [], "containers": []}}"#,
        r#"{"metadata": {"labels": {"a": 1}}}"#,
        r#"{"metadata": {}, "metadata": {}}"#,
        r#"{"spec": {"imagePullSecrets": "x"}}"#,
        r#"{"spec": {"containers": [{"image": "a"}"#,
    ] {
        assert!(
            read_object(bad, "Pod", PodSpecAt::of_kind("Pod")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn metadata_pull_secrets_and_service_account() {
    let obj = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"big": "ignored"},
            "deletionTimestamp": "2026-11-23T10:00:00Z",
            "ownerReferences": [{"kind": "Thing", "controller": false}, {"kind": "ReplicaSet", "controller": true}]},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"x": "y"}}, "spec": {
            "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "a"}, {"name": ""}, {"name": "b"}, {"name": "a"}, {}],
            "containers": [{"name": "c", "image": "app:1", "env": [{"name": "X", "value": "y"}]}]}}}}"#;
    let w = read_object(obj, "Deployment", PodSpecAt::of_kind("Deployment"))
        .unwrap()
        .checked()
        .unwrap();
    assert_eq!(w.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(w.kind.as_deref(), Some("Deployment"));
    assert_eq!(w.meta.name.as_deref(), Some("web"));
    assert_eq!(w.meta.namespace.as_deref(), Some("shop"));
    assert_eq!(w.meta.uid.as_deref(), Some("u-1"));
    assert_eq!(
        w.meta.labels.len(),
        2,
        "the template's labels are not the object's"
    );
    assert!(w.meta.deleting);
    assert_eq!(w.meta.controller_kind.as_deref(), Some("ReplicaSet"));
    let pod = w.pod.unwrap();
    assert_eq!(pod.pull_secrets, vec!["a", "b"]);
    assert_eq!(pod.service_account.as_deref(), Some("builder"));
    assert_eq!(pod.images.len(), 1);
    // A null deletionTimestamp is not a deletion; a missing spec has no images.
    let w = read_object(
        r#"{"metadata": {"deletionTimestamp": null}}"#,
        "Pod",
        PodSpecAt::of_kind("Pod"),
    )
    .unwrap();
    assert!(!w.meta.deleting);
    assert_eq!(w.pod.unwrap(), PodView::default());
}

#[test]
fn lists_over_their_caps_are_reported_not_kept() {
    let containers: Vec<_> = (0..MAX_IMAGES + 5)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("app:{i}")}))
        .collect();
    let obj = json!({"spec": {"containers": containers}});
    let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
    assert_eq!(w.pod.as_ref().unwrap().images.len(), MAX_IMAGES);
    let e = w.checked().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("spec.containers: this Pod has {} images (containers of every kind and image volumes), over sigil's limit of {MAX_IMAGES} per workload", MAX_IMAGES + 5)
    );
    // Volumes count with containers.
    let volumes: Vec<_> = (0..MAX_IMAGES)
        .map(|i| json!({"name": format!("v{i}"), "image": {"reference": "m:1"}}))
        .collect();
    let obj = json!({"spec": {"containers": [{"image": "a:1"}], "volumes": volumes}});
    let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("spec.volumes: this Pod has 257 images"),
        "{e}"
    );
    // Pull secrets: distinct names count; repeats of one do not.
    let many: Vec<_> = (0..MAX_PULL_SECRETS + 1)
        .map(|i| json!({"name": format!("s{i}")}))
        .collect();
    let obj = json!({"spec": {"imagePullSecrets": many}});
    let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.imagePullSecrets: this Pod names more than 32 distinct pull secrets (33 entries), over sigil's limit of 32 per workload"
    );
    let same: Vec<_> = (0..1000).map(|_| json!({"name": "one"})).collect();
    let obj = json!({"spec": {"imagePullSecrets": same}});
    let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap();
    assert_eq!(w.pod.unwrap().pull_secrets, vec!["one"]);
    // Labels.
    let labels: serde_json::Map<String, serde_json::Value> = (0..MAX_LABELS + 1)
        .map(|i| (format!("l{i}"), json!("v")))
        .collect();
    let obj = json!({"metadata": {"labels": labels}});
    let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
    assert_eq!(w.meta.labels.len(), MAX_LABELS);
    let e = w.checked().unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata.labels: this Pod has 1025 labels, over sigil's limit of 1024 per workload"
    );
    // Long values: a reference, a label, a service account.
    let obj = json!({"spec": {"containers": [{"image": "a:1"}, {"image": "x".repeat(MAX_REFERENCE_BYTES + 1)}]}});
    let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "spec.containers[1].image: an image reference of 4097 bytes, over sigil's limit of 4096 per workload"
    );
    let obj = json!({"metadata": {"labels": {"a": "v".repeat(MAX_LABEL_BYTES)}}});
    let e = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("metadata.labels: this Pod has 262145 bytes of labels"),
        "{e}"
    );
    let obj = json!({"spec": {"serviceAccountName": "s".repeat(300), "imagePullSecrets": [{"name": "n".repeat(300)}]}});
    let w = read_value(&obj, "Pod", PodSpecAt::of_kind("Pod")).unwrap();
    assert!(w.pod.as_ref().unwrap().pull_secrets.is_empty());
    assert_eq!(w.checked().unwrap_err().field(), "spec.serviceAccountName");
}

#[test]
fn what_is_not_read_is_skipped_at_any_depth() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let obj = format!(
        r#"{{"spec": {{"x": {deep}, "containers": [{{"image": "a:1", "y": {deep}}}]}}, "status": {deep}}}"#
    );
    let w = read_object(&obj, "Pod", PodSpecAt::of_kind("Pod"))
        .unwrap()
        .checked()
        .unwrap();
    assert_eq!(w.pod.unwrap().images.len(), 1);
}

#[test]
fn the_old_ephemeral_containers_object() {
    let obj = json!({"metadata": {"name": "p"}, "ephemeralContainers": [{"name": "d", "image": "debug:1"}]});
    let w = read_value(
        &obj,
        "EphemeralContainers",
        Some(&EPHEMERAL_CONTAINERS_OBJECT),
    )
    .unwrap()
    .checked()
    .unwrap();
    let i = &w.pod.unwrap().images[0];
    assert_eq!(i.field, "spec.ephemeralContainers[0].image");
    assert_eq!(i.pointer, "/ephemeralContainers/0/image");
}
