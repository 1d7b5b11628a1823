"""The Helm chart (charts/sigil), rendered and linted with Helm v4's own Go
SDK (the PyPI package helm-python-sdk; no helm binary). Run by
tests/chart.rs with the interpreter scripts/setup.sh prepared."""

import sys

import helm_python as helm
import yaml

CHART = sys.argv[1]
CA = {"certificates": {"mode": "secret", "secret": {"caBundle": "Q0E="}}}

if len(sys.argv) > 2 and sys.argv[2] == "--render":
    # The manifests for the defaults, as one YAML stream: deploy/sigil.yaml
    # (scripts/gen-deploy.sh) and what tests/cluster.rs applies.
    # Without Kyverno's CRDs: applied by hand over a Kyverno that owns
    # them, they would replace its schema (crds/kyverno/ holds them).
    rendered = helm.Chart.load(CHART).render({"kyverno": {"installCRDs": False}}, name="sigil", namespace="sigil-system")
    print("\n---\n".join(t.strip("\n") for p, t in sorted(rendered.items()) if p.endswith(".yaml") and t.strip()))
    sys.exit(0)


if len(sys.argv) > 2 and sys.argv[2] == "--rules":
    # The alert rule groups the chart renders for the values given as JSON
    # (argv[3], default {}) in namespace argv[4] (default sigil-system): a
    # plain Prometheus rule file (deploy/sigil-alerts.yaml, tests/alerts.rs).
    import json
    values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    values.setdefault("metrics", {}).setdefault("prometheusRule", {})["enabled"] = True
    ns = sys.argv[4] if len(sys.argv) > 4 else "sigil-system"
    rendered = helm.Chart.load(CHART).render(values, name="sigil", namespace=ns)
    for path, text in rendered.items():
        if path.endswith("prometheusrule.yaml"):
            print(yaml.safe_dump(yaml.safe_load(text)["spec"], sort_keys=False, width=1000), end="")
    sys.exit(0)


def merged(*parts):
    out = {}
    for p in parts:
        for k, v in p.items():
            out[k] = merged(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def objects(values, namespace="sigil-system"):
    chart = helm.Chart.load(CHART)
    chart.validate_schema(values)
    rendered = chart.render(values, name="sigil", namespace=namespace)
    docs = []
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def kinds(docs):
    return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, kinds(docs))
    return found[0]


def lint_clean(values):
    report = helm.lint(CHART, values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


# Defaults: certificates.mode self.
docs = objects({})
lint_clean({})
assert kinds(docs) == sorted([
    "ClusterRole/sigil", "ClusterRoleBinding/sigil", "Deployment/sigil",
    "CustomResourceDefinition/imagevalidatingpolicies.policies.kyverno.io",
    "CustomResourceDefinition/namespacedimagevalidatingpolicies.policies.kyverno.io",
    "MutatingWebhookConfiguration/sigil", "PodDisruptionBudget/sigil",
    "Role/sigil", "RoleBinding/sigil", "Service/sigil", "Service/sigil-metrics",
    "ServiceAccount/sigil", "ValidatingWebhookConfiguration/sigil",
    "ValidatingWebhookConfiguration/sigil-policies",
]), kinds(docs)
deploy = one(docs, "Deployment", "sigil")
assert deploy["spec"]["replicas"] == 2
pod = deploy["spec"]["template"]["spec"]
container = pod["containers"][0]
assert pod["securityContext"]["runAsNonRoot"] is True
assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
assert container["securityContext"] == {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]}}, container["securityContext"]
assert "--metrics-listen=0.0.0.0:9090" in container["args"], container["args"]
for flag in ["--tls-secret=sigil-webhook-tls", "--inject-ca-bundle=validating/sigil",
             "--inject-ca-bundle=validating/sigil-policies", "--inject-ca-bundle=mutating/sigil",
             "--ca-lifetime=8760h", "--cert-lifetime=3600h", "--renew-before=360h"]:
    assert flag in container["args"], (flag, container["args"])
assert not any(a.startswith("--tls-cert") for a in container["args"]), container["args"]
# The image is the chart's appVersion, never a moving tag; a digest wins.
app_version = yaml.safe_load(open(f"{CHART}/Chart.yaml"))["appVersion"]
assert container["image"] == f"sigil:{app_version}", container["image"]
digest = "sha256:" + "ab" * 32
assert one(objects({"image": {"digest": digest}}), "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["image"] == f"sigil@{digest}"
# Termination: not ready at SIGTERM, answering for the delay, then the
# in-flight reviews get the webhook's timeout; the grace period covers it
# all plus the audit log's flush.
assert "--shutdown-delay=5s" in container["args"] and "--shutdown-drain=10s" in container["args"], container["args"]
assert pod["terminationGracePeriodSeconds"] == 5 + 10 + 5, pod["terminationGracePeriodSeconds"]
# The memory limit holds every budget sigil is given, with room for the
# process itself (about 35 MiB idle; 64 MiB is the least room allowed).
def mib(value):
    return int(value[:-2]) * (1024 if value.endswith("Gi") else 1) if value[-2:] in ("Mi", "Gi") else int(value[:-3])
budgets = {f: mib(a.split("=", 1)[1]) for a in container["args"] for f in
           ["--cache-memory", "--registry-read-memory", "--max-body-memory",
            "--pull-secret-cache-memory", "--audit-queue-memory"] if a.startswith(f + "=")}
assert len(budgets) == 5, container["args"]
limit = mib(container["resources"]["limits"]["memory"])
assert sum(budgets.values()) + 64 <= limit, (budgets, limit)
assert limit == 256, limit
# A limit given below the budgets fails the render, naming both; a larger one stands.
try:
    objects({"resources": {"limits": {"memory": "128Mi"}}})
    raise AssertionError("rendered a memory limit below the budgets")
except helm.HelmError as e:
    assert "resources.limits.memory 128Mi" in str(e) and "256Mi" in str(e), e
big = one(objects({"resources": {"limits": {"memory": "1Gi"}}, "memory": {"cachesMiB": 512}}), "Deployment", "sigil")
assert big["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
assert "--cache-memory=512MiB" in big["spec"]["template"]["spec"]["containers"][0]["args"]
assert mib(one(objects({"memory": {"cachesMiB": 200}}), "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]) == 392
# A tag added by a later mutating webhook (a sidecar injector) is pinned
# on the second pass.
assert one(docs, "MutatingWebhookConfiguration", "sigil")["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"
# GitHub Enterprise Server: its API host allowed, GitHub's kept.
ghes = one(objects({"sigil": {"githubApiHosts": ["ghe.acme.example"]}}), "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--github-api-host=ghe.acme.example" in ghes and "--github-api-host=api.github.com" in ghes, ghes
assert not any(a.startswith("--github-api-host") for a in container["args"]), container["args"]
# noMatchPolicy warn through the chart.
assert "--no-match-policy=warn" in one(objects({"sigil": {"noMatchPolicy": "warn"}}), "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["args"]
assert "volumes" not in pod or not pod["volumes"], pod.get("volumes")
validate = one(docs, "ValidatingWebhookConfiguration", "sigil")["webhooks"][0]
assert validate["failurePolicy"] == "Fail" and validate["sideEffects"] == "NoneOnDryRun"
assert "caBundle" not in validate["clientConfig"], "sigil injects it"
excluded = validate["namespaceSelector"]["matchExpressions"][-1]
assert excluded == {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["sigil-system", "kube-system"]}, excluded
# The leader may patch its own webhook configurations and write its own
# Secret, and nothing else of the kind.
rules = one(docs, "ClusterRole", "sigil")["rules"]
hooks = [r for r in rules if r["apiGroups"] == ["admissionregistration.k8s.io"]]
assert hooks == [
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
     "resourceNames": ["sigil", "sigil-policies"], "verbs": ["get", "patch"]},
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
     "resourceNames": ["sigil"], "verbs": ["get", "patch"]}], hooks
role = one(docs, "Role", "sigil")["rules"]
assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sigil-webhook-tls"],
        "verbs": ["update"]} in role, role
# The chart's CRDs are the project's.
crds = {c["name"] for c in helm.Chart.load(CHART).crds}
assert any("clusterimagepolicies" in n for n in crds) and any("policyreports" in n for n in crds), crds

# secret mode: the user's Secret mounted, the caBundle rendered, no
# certificate writes in the RBAC.
docs = objects(CA)
lint_clean(CA)
pod = one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]
assert pod["volumes"][0]["secret"]["secretName"] == "sigil-tls"
assert "--tls-cert=/etc/sigil/tls/tls.crt" in pod["containers"][0]["args"]
assert one(docs, "ValidatingWebhookConfiguration", "sigil")["webhooks"][0]["clientConfig"]["caBundle"] == "Q0E="
assert not any(r["apiGroups"] == ["admissionregistration.k8s.io"] for r in one(docs, "ClusterRole", "sigil")["rules"])
assert not any("resourceNames" in r for r in one(docs, "Role", "sigil")["rules"])

# The NetworkPolicy, when enabled, needs the control plane's addresses.
values = {"networkPolicy": {"enabled": True, "apiserverCIDR": "10.0.0.0/24",
                            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}}
docs = objects(values)
lint_clean(values)
ingress = one(docs, "NetworkPolicy", "sigil-webhook-ingress")["spec"]["ingress"]
assert ingress[0] == {"from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 8443}]}, ingress
assert ingress[1]["ports"] == [{"protocol": "TCP", "port": 9090}], ingress
try:
    objects({"networkPolicy": {"enabled": True}})
    raise AssertionError("rendered without networkPolicy.apiserverCIDR")
except helm.HelmError as e:
    assert "networkPolicy.apiserverCIDR" in str(e), e

# One replica: no PodDisruptionBudget. Mutating off. Custom selectors.
values = merged(CA, {"replicas": 1, "webhook": {
    "mutating": False,
    "objectSelector": {"matchLabels": {"team": "shop"}},
    "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}}})
docs = objects(values)
lint_clean(values)
names = kinds(docs)
assert "PodDisruptionBudget/sigil" not in names and "MutatingWebhookConfiguration/sigil" not in names, names
assert not any("mutatingwebhookconfigurations" in r["resources"] for r in one(docs, "ClusterRole", "sigil")["rules"])
validate = one(docs, "ValidatingWebhookConfiguration", "sigil")["webhooks"][0]
assert validate["objectSelector"] == {"matchLabels": {"team": "shop"}}
assert validate["namespaceSelector"]["matchExpressions"][0] == {"key": "env", "operator": "In", "values": ["prod"]}

# cert-manager: a Certificate (and an Issuer), cainjector annotations, no caBundle.
values = {"certificates": {"mode": "certManager"}}
docs = objects(values)
lint_clean(values)
one(docs, "Certificate", "sigil-serving")
one(docs, "Issuer", "sigil-selfsigned")
for name in ["sigil", "sigil-policies"]:
    hook = one(docs, "ValidatingWebhookConfiguration", name)
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "sigil-system/sigil-serving"
    assert "caBundle" not in hook["webhooks"][0]["clientConfig"]
assert one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "sigil-serving-tls"

# Secret mode without a caBundle fails to render, naming the value.
try:
    objects({"certificates": {"mode": "secret"}})
    raise AssertionError("rendered without certificates.secret.caBundle")
except helm.HelmError as e:
    assert "certificates.secret.caBundle" in str(e), e

# Policies from values; flags from values.
values = merged(CA, {"sigil": {"mode": "audit", "extraArgs": ["--registry-concurrency=4"]},
                     "policies": {"signed": {"images": [{"glob": "**"}], "authorities": [{"static": {"action": "pass"}}]}}})
docs = objects(values)
assert one(docs, "ClusterImagePolicy", "signed")["spec"]["images"] == [{"glob": "**"}]
args = one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--mode=audit" in args and "--registry-concurrency=4" in args, args

# The audit key: a Secret mounted and named by --audit-key-file.
values = {"sigil": {"auditKeySecret": "sigil-audit-key"}}
docs = objects(values)
lint_clean(values)
pod = one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]
assert "--audit-key-file=/etc/sigil/audit-key/key" in pod["containers"][0]["args"], pod["containers"][0]["args"]
assert {"name": "audit-key", "mountPath": "/etc/sigil/audit-key", "readOnly": True} in pod["containers"][0]["volumeMounts"]
assert {"name": "audit-key", "secret": {"secretName": "sigil-audit-key", "items": [{"key": "key", "path": "key"}]}} in pod["volumes"]

# AWS KMS through IRSA: the ServiceAccount's annotation and the region.
values = {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/sigil"}},
          "sigil": {"extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}]}}
docs = objects(values)
lint_clean(values)
assert one(docs, "ServiceAccount", "sigil")["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
env = one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["env"]
assert env[-1] == {"name": "AWS_REGION", "value": "eu-west-1"}, env

# The dashboard and the alerts, when asked for: the ConfigMap the Grafana
# sidecar picks up (valid JSON, the dashboard file as it is) and the
# PrometheusRule holding alerts/rules.yaml's groups unchanged.
import json, os
values = {"metrics": {"dashboard": {"enabled": True, "namespace": "monitoring"},
                      "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}}}}
docs = objects(values)
lint_clean(values)
dash = one(docs, "ConfigMap", "sigil-dashboard")
assert dash["metadata"]["labels"]["grafana_dashboard"] == "1", dash["metadata"]
assert dash["metadata"]["namespace"] == "monitoring"
with open(os.path.join(CHART, "dashboards", "sigil.json")) as f:
    assert json.loads(dash["data"]["sigil.json"]) == json.load(f)
rule = one(docs, "PrometheusRule", "sigil")
assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
alerts = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
assert "> 7200" in alerts["SigilBackgroundAuditStale"], alerts
assert 'namespace="sigil-system"' in alerts["SigilReplicaNotReady"], alerts
# Derived from the values: the audit interval, the namespace; no
# staleness alert when the background audit is off.
def alerts_of(values, namespace="sigil-system"):
    values = merged({"metrics": {"prometheusRule": {"enabled": True}}}, values)
    return {r["alert"]: r["expr"] for r in one(objects(values, namespace), "PrometheusRule", "sigil")["spec"]["groups"][0]["rules"]}
assert "> 5400" in alerts_of({"sigil": {"auditInterval": "45m"}})["SigilBackgroundAuditStale"]
assert "> 7800" in alerts_of({"sigil": {"auditInterval": "1h5m"}})["SigilBackgroundAuditStale"]
assert "SigilBackgroundAuditStale" not in alerts_of({"sigil": {"auditInterval": "0s"}})
other = alerts_of({}, "security")
assert all('namespace="security"' in e and "sigil-system" not in e for e in other.values()), other
assert not any(d["kind"] in ("PrometheusRule",) or d["metadata"]["name"] == "sigil-dashboard" for d in objects({}))

# Kyverno's kinds: their CRDs rendered (kept on uninstall) unless turned
# off; RBAC and the flag follow kyverno.enabled. (`lookup` sees no cluster
# here: where Kyverno's CRDs exist, the template renders none.)
docs = objects(CA)
ivp_crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
assert sorted(d["metadata"]["name"] for d in ivp_crds) == [
    "imagevalidatingpolicies.policies.kyverno.io", "namespacedimagevalidatingpolicies.policies.kyverno.io"], kinds(docs)
assert all(d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for d in ivp_crds)
assert sorted(v["name"] for v in ivp_crds[0]["spec"]["versions"]) == ["v1", "v1alpha1", "v1beta1"]
rules = one(docs, "ClusterRole", "sigil")["rules"]
assert any("imagevalidatingpolicies" in r["resources"] and r["verbs"] == ["list", "watch"] for r in rules), rules
args = one(docs, "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--kyverno-policies=true" in args, args
off = objects(merged(CA, {"kyverno": {"installCRDs": False}}))
assert not any(d["kind"] == "CustomResourceDefinition" for d in off)
off = objects(merged(CA, {"kyverno": {"enabled": False}}))
assert not any(d["kind"] == "CustomResourceDefinition" for d in off)
assert not any("imagevalidatingpolicies" in r["resources"] for r in one(off, "ClusterRole", "sigil")["rules"])
assert "--kyverno-policies=false" in one(off, "Deployment", "sigil")["spec"]["template"]["spec"]["containers"][0]["args"]

# A typo is refused by values.schema.json, naming the key.
for typo in ({"replica": 3}, {"webhook": {"failurePolicy": "fail"}}, {"sigil": {"noMatch": "allow"}},
             {"sigil": {"auditInterval": "an hour"}}, {"memory": {"caches": 64}},
             {"certificates": {"mode": "selfSigned"}}, {"certificates": {"self": {"renewBefore": "soon"}}}):
    try:
        helm.Chart.load(CHART).validate_schema(merged(CA, typo))
        raise AssertionError(f"accepted {typo}")
    except helm.HelmValuesError as e:
        key = next(iter(typo))
        assert key in str(e) or next(iter(typo[key])) in str(e), (typo, str(e))

print("chart: ok")
