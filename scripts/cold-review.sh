#!/usr/bin/env bash
# Cold reviews at the network's limit, measured: a TCP proxy adds DELAY_MS
# (default 10) each way between sigil and the real registry (the demo's
# docker-registry, signed image and key). For ROUNDS rounds (default 3) a
# fresh `sigil serve` (release, cold caches) reviews a Pod with one
# key-signed image pinned by digest, then another fresh one a Pod with 10
# distinct signed digests; beside them, curl makes the same two registry
# requests one image needs (the `.sig` manifest, its layer) through the same
# proxy. Prints each round and the medians: the 1-image review against
# curl's two requests, and the 10-image review against the 1-image one.
# SIGIL_SERVE_ARGS adds flags to `sigil serve` (e.g. request limits).
# ROLLOUT=1 measures a rollout instead: ROLLOUT_PODS (200) Pods over
# ROLLOUT_IMAGES (50) cold signed images, reviewed by two fresh replicas
# (each replica sees every image, as a Service spreading Pods at random
# nearly does; 20 at once), through
# the same proxy; prints the time and the registry requests, counted from
# the registry's own log.
set -euo pipefail
cd "$(dirname "$0")/.."
certdir=$(mktemp -d)
export SIGIL_DEMO_CERT_DIR="$certdir" SIGIL_DEMO_SIGNED_DIGESTS=${ROLLOUT_IMAGES:-50}
. scripts/demo-server.sh
. scripts/review-load.sh
cargo build --release --quiet --bin sigil
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work" "$certdir"' EXIT
registry=${image%%/*}
digest=${image##*@}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proxy_port=$(free_port)
python3 - "$proxy_port" "${registry##*:}" "${DELAY_MS:-10}" > "$work/proxy.log" 2>&1 <<'PY' &
import asyncio, sys
listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            await asyncio.sleep(delay)
            w.write(data); await w.drain()
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
  "${CARGO_TARGET_DIR:-target}/release/sigil" --log-level warn serve --policy-dir "$policy_dir" \
    --insecure-registry "$proxied" --tls-cert "$certdir/tls.crt" --tls-key "$certdir/tls.key" \
    --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 ${SIGIL_SERVE_ARGS:-} > /dev/null 2>> "$work/serve.log" &
  local pid=$!
  for _ in $(seq 1 100); do curl -sk "https://localhost:$port/readyz" | grep -qx ready && break; sleep 0.05; done
  local out; out=$(curl -sk -o "$work/answer.json" -w '%{time_total}' -X POST -H 'Content-Type: application/json' --data @"$2" "https://localhost:$port/validate")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -q '"allowed":true' "$work/answer.json" || { echo "not admitted: $(cat "$work/answer.json")" >&2; exit 1; }
  echo "$out"
}
sig_tag="sha256-${digest#sha256:}.sig"
curl_two() { # the .sig manifest and its layer, through the proxy
  local accept='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
  local m t1 t2 layer
  m=$(curl -s -H "Accept: $accept" "http://$proxied/v2/demo/signed/manifests/$sig_tag" -w '\n%{time_total}')
  t1=$(echo "$m" | tail -1)
  layer=$(echo "$m" | head -n -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
  t2=$(curl -s -o /dev/null -w '%{time_total}' "http://$proxied/v2/demo/signed/blobs/$layer")
  python3 -c "print($t1 + $t2)"
}
if [ -n "${ROLLOUT:-}" ]; then
  start_replica() { # start_replica NAME: a fresh sigil serve; prints its port
    local port; port=$(free_port)
    "${CARGO_TARGET_DIR:-target}/release/sigil" --log-level warn serve --policy-dir "$policy_dir" \
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
  c=$(curl_two); o=$(review one "$work/one.json"); t=$(review ten "$work/ten.json")
  echo "round $round: curl's 2 requests ${c}s | 1 image ${o}s | 10 images ${t}s"
  rows+=("$c $o $t")
done
python3 - "${rows[@]}" <<'PY'
import statistics, sys
c, o, t = (statistics.median(float(r.split()[i]) for r in sys.argv[1:]) for i in range(3))
print(f"medians: curl {c*1000:.0f} ms, 1 image {o*1000:.0f} ms ({o/c:.2f}x curl), 10 images {t*1000:.0f} ms ({t/o:.2f}x 1 image)")
PY
