#!/usr/bin/env bash
# Warm-path load test: the demo example (`--keep-running`) serves the webhook with a
# signed image cached after its first review; wrk then posts a 3-container Pod
# review over TLS for DURATION (default 15s) with CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/demo-server.sh
. scripts/review-load.sh
pod_review "$image" > "$work/review.json"
wrk_post_lua "$work/review.json" > "$work/post.lua"
# Check the warm answer is an allow before measuring.
curl -sk -X POST -H 'Content-Type: application/json' --data @"$work/review.json" "$url" | grep -q '"allowed":true' || { echo "review was not admitted"; exit 1; }
wrk -t2 -c"${CONNECTIONS:-32}" -d"${DURATION:-15s}" --latency -s "$work/post.lua" "$url"
