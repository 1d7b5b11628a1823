#!/usr/bin/env bash
# Soak: DURATION (default 60s) at about RATE (default 1000) reviews/s against
# `sigil serve` (as the demo example (`--keep-running`) runs it: a real
# docker-registry, a key policy, HTTPS), mixed warm and cold: 90% of reviews
# are a pinned, signed, cached image; 10% name a random digest in the same
# repository, which costs a registry round trip each (a cold verdict, "no
# signatures found") and keeps filling the caches until entries start to
# expire (--resolve-ttl, 30 s). The server's RSS is sampled every second.
# Fails if any request errs, or if RSS grows by more than 5% from the third
# to the last quarter of the run (after the caches' first lifetime the
# process must be flat).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-60}"
rate="${RATE:-1000}"
connections="${CONNECTIONS:-20}"
. scripts/demo-server.sh
# Per connection: one request every (1000 * connections / rate) ms, less
# about 1 ms for the request itself.
delay_ms=$(( 1000 * connections / rate - 1 ))
cat > "$work/soak.lua" <<LUA
local counter = 0
local function review(img)
  return '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"soak","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"name":"p","namespace":"default","operation":"CREATE","userInfo":{"username":"soak"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"' .. img .. '"}]}}}}'
end
local warm = review("$image")
local hex = "0123456789abcdef"
function setup(thread) thread:set("id", tostring(math.random(1, 1e9))) end
function init(args) math.randomseed(tonumber(id) or os.time()) end
function delay() return $delay_ms end
function request()
  counter = counter + 1
  local body = warm
  if counter % 10 == 0 then
    local d = {}
    for i = 1, 64 do local k = math.random(1, 16); d[i] = hex:sub(k, k) end
    body = review("$unsigned_repo@sha256:" .. table.concat(d))
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("requests: %d in %.1fs = %.0f reviews/s\n", summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("p50: %.2f ms  p99: %.2f ms  max: %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
( while kill -0 "$pid" 2>/dev/null; do awk '/VmRSS/ {print $2}' "/proc/$pid/status"; sleep 1; done > "$work/rss" & echo $! > "$work/sampler.pid" )
wrk -t2 -c"$connections" -d"${duration}s" --timeout 5s -s "$work/soak.lua" "$url" | tee "$work/wrk.out"
kill "$(cat "$work/sampler.pid")" 2>/dev/null || true
python3 - "$work/rss" "$work/wrk.out" <<'PY'
import sys
rss = [int(l) for l in open(sys.argv[1]) if l.strip()]
out = open(sys.argv[2]).read()
errors = int(out.split("errors: ")[1].split()[0])
q = max(1, len(rss) // 4)
first, third, last = sum(rss[:q]) / q, sum(rss[2*q:3*q]) / q, sum(rss[-q:]) / q
print(f"RSS samples: {len(rss)}; min {min(rss)//1024} MiB, max {max(rss)//1024} MiB; quarters: first {first/1024:.1f}, third {third/1024:.1f}, last {last/1024:.1f} MiB (third to last {(last/third-1)*100:+.1f}%)")
print("RSS per 5 s (MiB):", " ".join(str(r // 1024) for r in rss[::5]))
ok = errors == 0 and last <= third * 1.05
print("soak:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
