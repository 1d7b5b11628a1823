#!/usr/bin/env bash
# The warm path against the machine's TLS + HTTP limit, in one run: the
# real `sigil serve` (release build, default log level, /metrics on, audit
# log to a file, the demo's registry, signed image and policy; verdict
# cached) and nginx (1 worker answering
# `return 200` with sigil's own answer as the literal body: the cheapest
# TLS + HTTP answer this machine gives) serve the same certificate, each
# pinned to CPU 0; wrk runs on CPU 1 with 8 connections. Alternates nginx,
# sigil for ROUNDS rounds (default 3, at least 2) of DURATION each (default
# 10s) and prints each round, then sigil's share of nginx's throughput and
# its p50 against nginx's, from the median rounds.
#   PROFILE=FILE    one perf-profiled round of sigil instead (top frames to FILE)
#   SIGIL_BIN=PATH  serve this sigil binary (e.g. a copy of an earlier build)
#   CALLGRIND=FILE  instructions per request of nginx and sigil under
#                   callgrind instead (steady on a busy machine; top
#                   functions to FILE, the raw profile to FILE.out)
#   DISTINCT=1      the review's three containers run three different
#                   signed images (by default one image, written three
#                   times, as one Pod with an init container often does)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq nginx-light >/dev/null; }
certdir=$(mktemp -d)
export SIGIL_DEMO_CERT_DIR="$certdir"
[ -n "${DISTINCT:-}" ] && export SIGIL_DEMO_SIGNED_DIGESTS=2
. scripts/demo-server.sh
. scripts/review-load.sh
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; [ -f "$certdir/nginx.pid" ] && kill "$(cat "$certdir/nginx.pid")" 2>/dev/null; rm -rf "$work" "$certdir"' EXIT
# The demo holds the registry, the signed image and the policy; sigil
# serve is started on CPU 0 from the start, as a pod limited to one CPU
# would run it.
cargo build --release --quiet --bin sigil
sigil_bin=${SIGIL_BIN:-${CARGO_TARGET_DIR:-target}/release/sigil}
policy_dir=$(sed -n 's/^== policy written to \(.*\)\/demo.yaml$/\1/p' "$work/demo.log")
registry=${image%%/*}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sigil_port=$(free_port); metrics_port=$(free_port)
( taskset -c 0 "$sigil_bin" serve --policy-dir "$policy_dir" \
    --insecure-registry "$registry" --tls-cert "$certdir/tls.crt" --tls-key "$certdir/tls.key" \
    --listen "127.0.0.1:$sigil_port" --metrics-listen "127.0.0.1:$metrics_port" \
    > "$work/audit.log" 2> "$work/serve.log" & echo $! > "$work/serve.pid" )
url="https://localhost:$sigil_port/validate"
for _ in $(seq 1 100); do curl -sk "https://localhost:$sigil_port/readyz" | grep -qx ready && break; sleep 0.1; done
if [ -n "${DISTINCT:-}" ]; then
  mapfile -t others < "$work/digests"
  pod_review "$image" "${image%@*}@${others[0]}" "${image%@*}@${others[1]}" > "$work/review.json"
else
  pod_review "$image" > "$work/review.json"
fi
answer=$(curl -sk -X POST -H 'Content-Type: application/json' --data @"$work/review.json" "$url")
echo "$answer" | grep -q '"allowed":true' || { echo "review was not admitted: $answer"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# nginx answers sigil's own answer, byte for byte, as a literal.
literal=$(printf '%s' "$answer" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")
# nginx workers may run as another user.
chmod 755 "$certdir"; chmod 644 "$certdir"/*
cat > "$certdir/nginx.conf" <<NGINX
worker_processes 1;
pid $certdir/nginx.pid;
error_log $certdir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $certdir/body;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $certdir/tls.crt;
    ssl_certificate_key $certdir/tls.key;
    location = /validate {
      default_type application/json;
      client_body_buffer_size 64k;
      return 200 '$literal';
    }
  }
}
NGINX
taskset -c 0 nginx -c "$certdir/nginx.conf" -p "$certdir"
sleep 0.5
curl -sk -X POST --data @"$work/review.json" "https://127.0.0.1:$port/validate" | grep -q '"allowed":true' || { echo "nginx does not answer"; cat "$certdir/error.log"; exit 1; }
wrk_post_lua "$work/review.json" > "$work/post.lua"
run() { taskset -c 1 wrk -t1 -c8 -d"${DURATION:-10s}" --latency -s "$work/post.lua" "$1" | sed -n 's/^RESULT //p'; }
if [ -n "${PROFILE:-}" ]; then
  # One profiled round of sigil instead of the comparison: the top frames
  # by self time (perf), to $PROFILE.
  command -v perf >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq linux-perf >/dev/null; }
  seconds=${DURATION:-10s}; seconds=${seconds%s}
  perf record -F 499 --call-graph dwarf,16384 -o "$work/perf.data" -p "$(cat "$work/serve.pid")" -- sleep "$seconds" >/dev/null 2>&1 &
  sleep 0.2; run "$url"; wait
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | cut -c1-120 | sed 's/ *$//' | head -40 > "$PROFILE" || true
  cp "$work/perf.data" "$PROFILE.data"; cat "$PROFILE"; exit 0
fi
if [ -n "${CALLGRIND:-}" ]; then
  # Instruction counts instead of the comparison (steady on a busy
  # machine): nginx and a second sigil, each under callgrind, warmed with
  # one request, then counted over wrk's requests on one connection; prints
  # instructions per request for both and their ratio, and sigil's top
  # functions (inclusive) to $CALLGRIND.
  command -v valgrind >/dev/null 2>&1 || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get install -y -qq valgrind >/dev/null; }
  cg_port=$(free_port)
  sed -e "s/^worker_processes 1;/worker_processes 1; daemon off; master_process off;/" -e "s/127.0.0.1:$port/127.0.0.1:$cg_port/" \
    "$certdir/nginx.conf" > "$certdir/nginx-cg.conf"
  cg_sigil_port=$(free_port)
  counted() { # counted NAME URL PID OUT: instructions per request from PID while wrk posts to URL
    for _ in $(seq 1 300); do curl -sk -X POST --data @"$work/review.json" "$2" | grep -q '"allowed":true' && break; sleep 0.2; done
    callgrind_control -z "$3" >/dev/null
    requests=$(taskset -c 1 wrk -t1 -c1 -d"${DURATION:-10s}" -s "$work/post.lua" "$2" | sed -n 's/^REQUESTS //p')
    callgrind_control -d "$3" >/dev/null; sleep 1
    ir=$(cat "$4".* 2>/dev/null | sed -n 's/^summary: //p' | awk '{s+=$1} END {print s}')
    echo "$1 $requests $ir"
  }
  ( valgrind --tool=callgrind --callgrind-out-file="$work/cg.nginx" nginx -c "$certdir/nginx-cg.conf" -p "$certdir" \
      >/dev/null 2>&1 & echo $! > "$work/cgnginx.pid" )
  n=$(counted nginx "https://127.0.0.1:$cg_port/validate" "$(cat "$work/cgnginx.pid")" "$work/cg.nginx")
  kill "$(cat "$work/cgnginx.pid")"
  ( valgrind --tool=callgrind --callgrind-out-file="$work/cg.sigil" "$sigil_bin" serve \
      --policy-dir "$policy_dir" --insecure-registry "$registry" --tls-cert "$certdir/tls.crt" --tls-key "$certdir/tls.key" \
      --listen "127.0.0.1:$cg_sigil_port" --metrics-listen "127.0.0.1:$(free_port)" \
      > "$work/audit-cg.log" 2> "$work/serve-cg.log" & echo $! > "$work/cgsigil.pid" )
  s=$(counted sigil "https://localhost:$cg_sigil_port/validate" "$(cat "$work/cgsigil.pid")" "$work/cg.sigil")
  kill "$(cat "$work/cgsigil.pid")"; sleep 1
  python3 - "$n" "$s" <<'PY'
import sys
(_, nr, ni), (_, sr, si) = (a.split() for a in sys.argv[1:])
n, s = int(ni) / int(nr), int(si) / int(sr)
print(f"instructions per request: nginx {n:,.0f} ({nr} requests) | sigil {s:,.0f} ({sr} requests) | sigil/nginx {s/n:.1f}x")
PY
  callgrind_annotate --inclusive=yes "$(ls "$work"/cg.sigil.* | tail -1)" 2>/dev/null | grep -E '^ *[0-9,]+ ' | head -60 | cut -c1-160 > "$CALLGRIND" || true
  cp "$(ls "$work"/cg.sigil.* | tail -1)" "$CALLGRIND.out"
  exit 0
fi
rounds=${ROUNDS:-3}; [ "$rounds" -ge 2 ] || rounds=2
declare -a results
for round in $(seq "$rounds"); do
  n=$(run "https://127.0.0.1:$port/validate"); s=$(run "$url")
  echo "round $round: nginx $n | sigil $s   (requests/s, p50 ms, errors)"
  results+=("$n|$s")
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
rows = [r.split("|") for r in sys.argv[1:]]
n = [tuple(map(float, a.split())) for a, _ in rows]
s = [tuple(map(float, b.split())) for _, b in rows]
med = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"median rounds: nginx {med(n,0):.0f} req/s p50 {med(n,1):.2f} ms | sigil {med(s,0):.0f} req/s p50 {med(s,1):.2f} ms")
print(f"sigil/nginx throughput {med(s,0)/med(n,0):.2f}, p50 {med(s,1)/med(n,1):.1f}x nginx's (errors: nginx {sum(x[2] for x in n):.0f}, sigil {sum(x[2] for x in s):.0f})")
PY
curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -q '^sigil_admission_reviews' || { echo "/metrics did not answer"; exit 1; }
