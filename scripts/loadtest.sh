#!/usr/bin/env bash
# Warm-path load test: the demo example (`--keep-running`) serves the webhook with a
# signed image cached after its first review; wrk then posts a 3-container Pod
# review over TLS for DURATION (default 15s) with CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/demo-server.sh
python3 - "$image" > "$work/review.json" <<'PY'
import json, sys
img = sys.argv[1]
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
  "uid": "load", "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": "p", "namespace": "default",
  "operation": "CREATE", "userInfo": {"username": "load"},
  "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "initContainers": [{"name": "i", "image": img}],
    "containers": [{"name": "a", "image": img}, {"name": "b", "image": img}]}}}}))
PY
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/review.json", "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("reviews/s: %.0f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("p50: %.2f ms  p99: %.2f ms  max: %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("non-2xx or socket errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
# Check the warm answer is an allow before measuring.
curl -sk -X POST -H 'Content-Type: application/json' --data @"$work/review.json" "$url" | grep -q '"allowed":true' || { echo "review was not admitted"; exit 1; }
wrk -t2 -c"${CONNECTIONS:-32}" -d"${DURATION:-15s}" --latency -s "$work/post.lua" "$url"
