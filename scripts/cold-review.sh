#!/usr/bin/env bash
# Cold reviews at the network's limit, measured: a TCP proxy adds DELAY_MS
# (default 10) each way between sigil and the real registry (the demo's
# docker-registry, signed image and key), as a delay line (chunks are
# pipelined, as on a real link). For ROUNDS rounds (default 3) a fresh
# `sigil serve` (release, cold caches) reviews a Pod with one key-signed
# image pinned by digest, then another fresh one a Pod with 10 distinct
# signed digests. Their yardsticks, in the same round: curl making the two
# registry requests one image needs (the `.sig` manifest, then its layer,
# on one connection) through the same proxy, and ten such curls at once for
# the 10 images (the slowest one counts). Prints each round and the
# medians: the 1-image review against curl's two requests, the 10-image
# review against the 1-image one and against curl's ten at once.
# SIGIL_SERVE_ARGS adds flags to `sigil serve` (e.g. request limits);
# SIGIL_BIN=path serves another build (a copy of an earlier one).
# ROLLOUT=1 measures a rollout instead: ROLLOUT_PODS (200) Pods over
# ROLLOUT_IMAGES (50) cold signed images, reviewed by two fresh replicas
# (each replica sees every image, as a Service spreading Pods at random
# nearly does; 20 at once), through the same proxy; prints the time and
# the registry requests, counted from the registry's own log.
set -euo pipefail
cd "$(dirname "$0")/.."
certdir=$(mktemp -d)
export SIGIL_DEMO_CERT_DIR="$certdir" SIGIL_DEMO_SIGNED_DIGESTS=${ROLLOUT_IMAGES:-50}
. scripts/demo-server.sh
. scripts/review-load.sh
cargo build --release --quiet --bin sigil
sigil_bin=${SIGIL_BIN:-${CARGO_TARGET_DIR:-target}/release/sigil}
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work" "$certdir"' EXIT
registry=${image%%/*}
digest=${image##*@}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proxy_port=$(free_port)
python3 - "$proxy_port" "${registry##*:}" "${DELAY_MS:-10}" > "$work/proxy.log" 2>&1 <<'PY' &
# A delay line, not a sleep per read: each chunk is due DELAY after it was
# read and chunks behind it wait only for their own due time, as on a real
# link (a sleep per read would add the delay once per TCP segment, e.g.
# twice to a response whose headers and body come in two).
import asyncio, sys
listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000
async def pipe(r, w):
    loop, line = asyncio.get_running_loop(), asyncio.Queue()
    async def deliver():
        while True:
            due, data = await line.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            w.write(data); await w.drain()
    sender = asyncio.create_task(deliver())
    try:
        while data := await r.read(65536):
            line.put_nowait((loop.time() + delay, data))
    finally:
        line.put_nowait((loop.time() + delay, b""))
        try:
            await sender
        finally:
            w.close()
async def serve(cr, cw):
    ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw), return_exceptions=True)
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", listen)
    async with s: await s.serve_forever()
asyncio.run(main())
PY
echo $! > "$work/proxy.pid"
sleep 0.5
proxied="127.0.0.1:$proxy_port"
policy_dir="$work/policies"; mkdir -p "$policy_dir"
sed "s|$registry|$proxied|g" "$(sed -n 's/^== policy written to \(.*\)$/\1/p' "$work/demo.log")" > "$policy_dir/demo.yaml"
mapfile -t extra < "$work/digests"
pod() { # a Pod review with the given images
  python3 - "$@" <<'PY'
import json, sys
containers = [{"name": f"c{i}", "image": im} for i, im in enumerate(sys.argv[1:])]
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
  "uid": "cold", "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "default",
  "operation": "CREATE", "userInfo": {"username": "bench"},
  "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
             "spec": {"containers": containers}}}}))
PY
}
one="$proxied/demo/signed@$digest"
ten=()
for d in "${extra[@]:0:10}"; do ten+=("$proxied/demo/signed@$d"); done
pod "$one" > "$work/one.json"; pod "${ten[@]}" > "$work/ten.json"
review() { # fresh sigil serve, one review of $1, seconds
  local port; port=$(free_port)
  "$sigil_bin" --log-level warn serve --policy-dir "$policy_dir" \
    --insecure-registry "$proxied" --tls-cert "$certdir/tls.crt" --tls-key "$certdir/tls.key" \
    --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 ${SIGIL_SERVE_ARGS:-} > /dev/null 2>> "$work/serve.log" &
  local pid=$!
  for _ in $(seq 1 100); do curl -sk "https://localhost:$port/readyz" | grep -qx ready && break; sleep 0.05; done
  local out; out=$(curl -sk -o "$work/answer.json" -w '%{time_total}' -X POST -H 'Content-Type: application/json' --data @"$2" "https://localhost:$port/validate")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -q '"allowed":true' "$work/answer.json" || { echo "not admitted: $(cat "$work/answer.json")" >&2; exit 1; }
  echo "$out"
}
accept='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
# The two registry requests an image needs (its `.sig` manifest, then that
# manifest's layer), on one connection as sigil makes them; the layer's
# digest is read beforehand so that no parsing sits between them.
chain_urls() { # chain_urls DIGEST: the manifest's and the layer's URL
  local d=$1 layer
  layer=$(curl -s -H "Accept: $accept" "http://$registry/v2/demo/signed/manifests/sha256-${d#sha256:}.sig" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
  echo "http://$proxied/v2/demo/signed/manifests/sha256-${d#sha256:}.sig http://$proxied/v2/demo/signed/blobs/$layer"
}
chain() { # chain URLS: seconds curl takes for both requests
  # shellcheck disable=SC2086
  curl -s -o /dev/null -o /dev/null -H "Accept: $accept" -w '%{time_total}\n' $1 | awk '{s += $1} END {print s}'
}
one_chain=$(chain_urls "$digest")
ten_chains=(); for d in "${extra[@]:0:10}"; do ten_chains+=("$(chain_urls "$d")"); done
curl_two() { chain "$one_chain"; }
curl_twenty() { # the 10 images' chains at once, as a 10-image review runs them: the slowest
  local i
  for i in "${!ten_chains[@]}"; do chain "${ten_chains[$i]}" > "$work/chain$i" & echo $! > "$work/chain$i.pid"; done
  for i in "${!ten_chains[@]}"; do wait "$(cat "$work/chain$i.pid")"; rm "$work/chain$i.pid"; done
  sort -g "$work"/chain[0-9]* | tail -1
}
if [ -n "${ROLLOUT:-}" ]; then
  start_replica() { # start_replica NAME: a fresh sigil serve; prints its port
    local port; port=$(free_port)
    "$sigil_bin" --log-level warn serve --policy-dir "$policy_dir" \
      --insecure-registry "$proxied" --tls-cert "$certdir/tls.crt" --tls-key "$certdir/tls.key" \
      --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 ${SIGIL_SERVE_ARGS:-} > /dev/null 2>> "$work/serve.log" &
    echo $! > "$work/$1.pid"
    for _ in $(seq 1 100); do curl -sk "https://localhost:$port/readyz" | grep -qx ready && break; sleep 0.05; done
    echo "$port"
  }
  ports=("$(start_replica replica-a)" "$(start_replica replica-b)")
  pods=${ROLLOUT_PODS:-200}; n=${#extra[@]}
  for i in $(seq 0 $((pods - 1))); do pod "$proxied/demo/signed@${extra[$((i % n))]}" > "$work/pod$i.json"; done
  before=$(wc -l < "$registry_log")
  t0=$(date +%s.%N)
  # Each replica gets every image (Pods in blocks of one per image, the
  # blocks alternating), as a Service spreading Pods at random nearly does:
  # neither replica's cache helps the other.
  seq 0 $((pods - 1)) | xargs -P 20 -I{} sh -c 'p=$3; [ $(($2 / $5 % 2)) = 1 ] && p=$4
    curl -sk -X POST -H "Content-Type: application/json" --data @"$1/pod$2.json" "https://localhost:$p/validate" > "$1/answer$2.json"' \
    _ "$work" {} "${ports[0]}" "${ports[1]}" "$n"
  t1=$(date +%s.%N)
  admitted=$(grep -l '"allowed":true' "$work"/answer*.json | wc -l)
  requests=$(( $(wc -l < "$registry_log") - before ))
  python3 -c "print(f'rollout: $pods Pods over $n cold images, 2 replicas: {($t1 - $t0):.2f} s, $admitted admitted, $requests registry requests (registry log)')"
  exit 0
fi
declare -a rows
for round in $(seq "${ROUNDS:-3}"); do
  c=$(curl_two); c10=$(curl_twenty); o=$(review one "$work/one.json"); t=$(review ten "$work/ten.json")
  echo "round $round: curl 1 image's 2 requests ${c}s, 10 images' 20 (10 at once) ${c10}s | sigil 1 image ${o}s, 10 images ${t}s"
  rows+=("$c $c10 $o $t")
done
python3 - "${rows[@]}" <<'PY'
import statistics, sys
c, c10, o, t = (statistics.median(float(r.split()[i]) for r in sys.argv[1:]) for i in range(4))
print(f"medians: curl 1 image {c*1000:.0f} ms, 10 images {c10*1000:.0f} ms ({c10/c:.2f}x) | "
      f"sigil 1 image {o*1000:.0f} ms ({o/c:.2f}x curl), 10 images {t*1000:.0f} ms "
      f"({t/o:.2f}x sigil's 1 image, {t/c10:.2f}x curl's 10)")
PY
