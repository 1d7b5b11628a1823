# Sourced by the load scripts: what they post and how wrk reports it.
#   pod_review IMAGE [A [B]]  prints a CREATE AdmissionReview of a Pod with
#                           IMAGE in one init container and A and B (IMAGE
#                           unless given) in two app containers
#   wrk_post_lua JSON_FILE  prints a wrk script posting that file; at the end
#                           it prints reviews/s, p50/p99/max and errors, and
#                           machine-readable lines `RESULT <rps> <p50 ms> <errors>`
#                           and `REQUESTS <completed requests>`
pod_review() {
  python3 - "$@" <<'PY'
import json, sys
init = sys.argv[1]
a = sys.argv[2] if len(sys.argv) > 2 else init
b = sys.argv[3] if len(sys.argv) > 3 else init
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
  "uid": "load", "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": "p", "namespace": "default",
  "operation": "CREATE", "userInfo": {"username": "load"},
  "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "initContainers": [{"name": "i", "image": init}],
    "containers": [{"name": "a", "image": a}, {"name": "b", "image": b}]}}}}))
PY
}

wrk_post_lua() {
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$1", "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local rps = summary.requests / (summary.duration / 1e6)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("reviews/s: %.0f\n", rps))
  io.write(string.format("p50: %.2f ms  p99: %.2f ms  max: %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("non-2xx or socket errors: %d\n", errors))
  io.write(string.format("RESULT %.0f %.3f %d\n", rps, latency:percentile(50) / 1000, errors))
  io.write(string.format("REQUESTS %d\n", summary.requests))
end
LUA
}
