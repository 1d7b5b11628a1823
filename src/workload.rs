//! Every image a workload would run or mount: containers, initContainers and
//! ephemeralContainers, and image volumes (`volumes[].image.reference`,
//! Kubernetes ≥ 1.31), of Pods and of the pod templates of pod-owning kinds.

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde_json::Value;

/// One image reference and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageUse {
    /// Field path, e.g. `spec.template.spec.initContainers[0].image`.
    pub field: String,
    /// The reference as written.
    pub reference: String,
    /// JSON pointer of the field in the object, e.g.
    /// `/spec/template/spec/containers/0/image` (for digest pinning patches).
    #[serde(skip)]
    pub pointer: String,
}

/// A workload object sigil cannot read.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("cannot read the pod spec of this {kind} at {path}: {reason}")]
pub struct WorkloadError {
    /// Kind of the object.
    pub kind: String,
    /// Path of the pod spec.
    pub path: String,
    /// Parser message.
    pub reason: String,
}

/// Where the pod spec of a kind lives (JSON pointer), or `None` for kinds that run no pods.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The images of `object` (a workload of `kind`), `Ok(None)` when the kind
/// runs no pods.
pub fn images_of(kind: &str, object: &Value) -> Result<Option<Vec<ImageUse>>, WorkloadError> {
    let Some(pointer) = pod_spec_pointer(kind) else {
        return Ok(None);
    };
    let prefix = pointer.trim_start_matches('/').replace('/', ".");
    let Some(spec_value) = object.pointer(pointer) else {
        return Ok(Some(Vec::new()));
    };
    let spec = PodSpec::deserialize(spec_value).map_err(|e| WorkloadError {
        kind: kind.to_string(),
        path: prefix.clone(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        if let Some(image) = &c.image {
            out.push(ImageUse {
                field: format!("{prefix}.initContainers[{i}].image"),
                reference: image.clone(),
                pointer: format!("{pointer}/initContainers/{i}/image"),
            });
        }
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if let Some(image) = &c.image {
            out.push(ImageUse {
                field: format!("{prefix}.containers[{i}].image"),
                reference: image.clone(),
                pointer: format!("{pointer}/containers/{i}/image"),
            });
        }
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        if let Some(image) = &c.image {
            out.push(ImageUse {
                field: format!("{prefix}.ephemeralContainers[{i}].image"),
                reference: image.clone(),
                pointer: format!("{pointer}/ephemeralContainers/{i}/image"),
            });
        }
    }
    // An image volume mounts an OCI image's content into the pod: it is
    // code and data the workload runs with, checked like a container image.
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if let Some(image) = v.image.as_ref().and_then(|s| s.reference.as_ref()) {
            out.push(ImageUse {
                field: format!("{prefix}.volumes[{i}].image.reference"),
                reference: image.clone(),
                pointer: format!("{pointer}/volumes/{i}/image/reference"),
            });
        }
    }
    Ok(Some(out))
}

/// The pull secret names and service account a workload's pods would use
/// (`spec.imagePullSecrets`, `spec.serviceAccountName`, default `default`).
pub fn pull_secrets_of(kind: &str, object: &Value) -> (Vec<String>, Option<String>) {
    let spec = pod_spec_pointer(kind)
        .and_then(|p| object.pointer(p))
        .and_then(|v| PodSpec::deserialize(v).ok());
    match spec {
        Some(spec) => (
            spec.image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            Some(
                spec.service_account_name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into()),
            ),
        ),
        None => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_all_container_kinds_in_a_deployment() {
        let obj = json!({"spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "image": "init:1"}],
            "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "side:2"}],
            "ephemeralContainers": [{"name": "e", "image": "debug:3"}]
        }}}});
        let imgs = images_of("Deployment", &obj).unwrap().unwrap();
        let got: Vec<(&str, &str)> = imgs
            .iter()
            .map(|i| (i.field.as_str(), i.reference.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("spec.template.spec.initContainers[0].image", "init:1"),
                ("spec.template.spec.containers[0].image", "app:1"),
                ("spec.template.spec.containers[1].image", "side:2"),
                ("spec.template.spec.ephemeralContainers[0].image", "debug:3"),
            ]
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
        let imgs = images_of("Pod", &obj).unwrap().unwrap();
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[1].field, "spec.volumes[1].image.reference");
        assert_eq!(imgs[1].reference, "reg.example/models/llm:v1");
        assert_eq!(imgs[1].pointer, "/spec/volumes/1/image/reference");
        let deploy = json!({"spec": {"template": {"spec": {"containers": [], "volumes": [{"name": "m", "image": {"reference": "x:1"}}]}}}});
        let imgs = images_of("Deployment", &deploy).unwrap().unwrap();
        assert_eq!(
            imgs[0].field,
            "spec.template.spec.volumes[0].image.reference"
        );
    }

    #[test]
    fn cronjob_and_unknown_kinds() {
        let obj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}}});
        let imgs = images_of("CronJob", &obj).unwrap().unwrap();
        assert_eq!(
            imgs[0].field,
            "spec.jobTemplate.spec.template.spec.containers[0].image"
        );
        assert_eq!(images_of("ConfigMap", &obj).unwrap(), None);
    }

    #[test]
    fn malformed_spec_is_an_error_not_a_panic() {
        let obj = json!({"spec": {"containers": "nope"}});
        let err = images_of("Pod", &obj).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read the pod spec of this Pod at spec"),
            "{err}"
        );
    }
}
