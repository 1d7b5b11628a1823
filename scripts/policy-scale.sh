#!/usr/bin/env bash
# Policies at scale, in one run: two demo servers (the sigil server, verdict
# cached), one with the demo's single policy and one with EXTRA (default
# 999) more ClusterImagePolicies matching none of its images. Each is pinned
# to CPU 0 while wrk (CPU 1, 8 connections) posts the same 3-container Pod
# review; alternates 1, many, 1, many for DURATION each (default 10s), then
# prints the throughput ratio and each server's resident set.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/review-load.sh
SIGIL_WITH_WRK=1 scripts/setup.sh
cargo build --release --quiet --example demo
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
demo="${CARGO_TARGET_DIR:-target}/release/examples/demo"
start() { # name extra-policies
  ( SIGIL_LOG=warn SIGIL_DEMO_EXTRA_POLICIES="$2" "$demo" --keep-running > "$work/$1.log" 2>&1 & echo $! > "$work/$1.pid" )
  for _ in $(seq 1 300); do grep -q "until Ctrl-C" "$work/$1.log" && break; sleep 0.2; done
  grep -q "until Ctrl-C" "$work/$1.log" || { cat "$work/$1.log"; exit 1; }
  taskset -a -p -c 0 "$(cat "$work/$1.pid")" >/dev/null
}
start one 0
start many "${EXTRA:-999}"
url_of() { sed -n 's/^serving on \(.*\) until Ctrl-C$/\1/p' "$work/$1.log"; }
image_of() { sed -n 's/^   pushed \(.*\) (signed, \(sha256:[0-9a-f]*\))$/\1@\2/p' "$work/$1.log"; }
for s in one many; do
  pod_review "$(image_of $s)" > "$work/$s.json"
  curl -sk -X POST -H 'Content-Type: application/json' --data @"$work/$s.json" "$(url_of $s)" | grep -q '"allowed":true' || { echo "$s: review was not admitted"; exit 1; }
  wrk_post_lua "$work/$s.json" > "$work/$s.lua"
done
run() { taskset -c 1 wrk -t1 -c8 -d"${DURATION:-10s}" --latency -s "$work/$1.lua" "$(url_of $1)" | sed -n 's/^RESULT //p'; }
rss() { awk '/^(VmRSS|VmHWM):/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$(cat "$work/$1.pid")/status"; }
for round in 1 2; do
  a=$(run one); b=$(run many)
  echo "round $round: 1 policy $a | $((${EXTRA:-999} + 1)) policies $b   (reviews/s, p50 ms, errors)"
  python3 -c "import sys; a=float(sys.argv[1]); b=float(sys.argv[2]); print(f'  {sys.argv[3]} policies at {b/a:.0%} of 1 policy')" "${a%% *}" "${b%% *}" "$((${EXTRA:-999} + 1))"
done
echo "resident set: 1 policy: $(rss one)"
echo "resident set: $((${EXTRA:-999} + 1)) policies: $(rss many)"
