#!/usr/bin/env bash
# Memory at scale: the sigil server (the demo example, `--keep-running`:
# HTTPS, a real docker-registry) with EXTRA (default 999) more
# ClusterImagePolicies and DIGESTS (default 10,000) distinct signed digests.
#   1. fill: one review per digest, each a cold verdict (signature manifest
#      and layer read from the registry, signature verified), until every
#      digest has been reviewed once: DIGESTS distinct verdicts in the cache;
#   2. soak: SOAK seconds (default 60) of reviews of random digests among
#      them, all cached: the registry must see no request.
# The server's RSS is sampled every second. Prints the peak (VmHWM), RSS
# after the fill and the soak's quarters; fails if a review is denied or
# errs, if the soak reaches the registry, if RSS grows by more than 5% from
# the soak's third to its last quarter, or if the peak is over LIMIT_MIB
# (default 96).
set -euo pipefail
cd "$(dirname "$0")/.."
digests_n="${DIGESTS:-10000}"
export SIGIL_DEMO_EXTRA_POLICIES="${EXTRA:-999}" SIGIL_DEMO_SIGNED_DIGESTS="$digests_n"
START_POLLS=3000
. scripts/demo-server.sh
repo="${image%%:v1@*}"
[ "$(wc -l < "$work/digests")" -eq "$digests_n" ] || { echo "demo listed $(wc -l < "$work/digests") digests, not $digests_n"; exit 1; }
# Reviews cycle through the digests in order (fill) or pick them at random
# (soak); each is checked for "allowed":true.
lua() { # ORDER
  cat <<LUA
local digests = {}
for line in io.lines("$work/digests") do digests[#digests + 1] = line end
local next_one = 0
function init(args) next_one = tonumber(args[1] or "0") end
function request()
  local d
  if "$1" == "ordered" then next_one = next_one + 1; d = digests[(next_one - 1) % #digests + 1]
  else d = digests[math.random(1, #digests)] end
  local body = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"mem","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"p","namespace":"default","operation":"CREATE","userInfo":{"username":"mem"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"$repo@' .. d .. '"}]}}}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if not string.find(body, '"allowed":true', 1, true) then
    local f = io.open("$work/denied", "a"); f:write(body:sub(1, 300), "\\n"); f:close()
  end
end
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %.0f %.3f %d\n", summary.requests, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, errors))
end
LUA
}
touch "$work/denied"
lua ordered > "$work/fill.lua"
lua random > "$work/soak.lua"
( while kill -0 "$pid" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$pid/status"; sleep 1; done > "$work/rss" & echo $! > "$work/sampler.pid" )
# In 10 s rounds, each starting where the last stopped, until every digest
# has been reviewed once.
fill_n=0 fill_err=0 rounds=0
while [ "$fill_n" -lt "$digests_n" ]; do
  taskset -c 1 wrk -t1 -c8 -d10s --timeout 10s -s "$work/fill.lua" "$url" -- "$fill_n" | sed -n 's/^RESULT //p' > "$work/fill.out"
  read -r n rps p50 err < "$work/fill.out"
  fill_n=$((fill_n + n)) fill_err=$((fill_err + err)) rounds=$((rounds + 1))
  echo "fill round $rounds: $n reviews ($rps/s, p50 $p50 ms, $err errors); $fill_n of $digests_n"
done
rss_after_fill=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status")
before=$(grep -c 'response completed' "$registry_log")
sample=$(sed -n "$(( (RANDOM % digests_n) + 1 ))p" "$work/digests")
taskset -c 1 wrk -t1 -c8 -d"${SOAK:-60}s" --timeout 10s -s "$work/soak.lua" "$url" | sed -n 's/^RESULT //p' > "$work/soak.out"
after=$(grep -c 'response completed' "$registry_log")
read -r soak_n soak_rps soak_p50 soak_err < "$work/soak.out"
echo "soak: $soak_n reviews ($soak_rps/s, p50 $soak_p50 ms, $soak_err errors); registry requests during the soak: $((after - before))"
hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
verdict=$(python3 - "$url" "$repo@$sample" <<'PY'
import json, ssl, sys, urllib.request
body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "check", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"}, "name": "p", "namespace": "default", "operation": "CREATE", "userInfo": {"username": "mem"}, "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": sys.argv[2]}]}}}}
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
req = urllib.request.Request(sys.argv[1], json.dumps(body).encode(), {"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req, context=ctx))["response"]["allowed"])
PY
)
kill "$(cat "$work/sampler.pid")" 2>/dev/null || true
python3 - "$work/rss" "$hwm" "$rss_after_fill" "$((after - before))" "$soak_err" "$fill_err" "$verdict" "${LIMIT_MIB:-96}" "${SOAK:-60}" "$work/denied" <<'PY'
import sys
rss = [int(l) for l in open(sys.argv[1]) if l.strip()]
hwm, after_fill, reg, soak_err, fill_err, verdict, limit, soak = sys.argv[2:10]
hwm, after_fill, reg, limit, soak = int(hwm), int(after_fill), int(reg), int(limit), int(soak)
s = rss[-soak:] if len(rss) >= soak else rss
q = max(1, len(s) // 4)
third, last = sum(s[2*q:3*q]) / q, sum(s[-q:]) / q
print(f"peak RSS (VmHWM) {hwm} MiB (goal <= {limit}); after the fill {after_fill} MiB; soak quarters third {third/1024:.1f}, last {last/1024:.1f} MiB ({(last/third-1)*100:+.1f}%)")
print("RSS per 5 s over the whole run (MiB):", " ".join(str(r // 1024) for r in rss[::5]))
checks = {
    "no errors": soak_err == "0" and fill_err == "0",
    "no review denied": open(sys.argv[10]).read() == "",
    "a sampled digest is admitted": verdict == "True",
    "the soak never reached the registry": reg == 0,
    "flat soak (<= +5%)": last <= third * 1.05,
    f"peak <= {limit} MiB": hwm <= limit,
}
for name, ok in checks.items():
    print(f"  {'ok  ' if ok else 'FAIL'} {name}")
sys.exit(0 if all(checks.values()) else 1)
PY
