# Sourced by loadtest.sh and soak.sh: builds the demo example (the sigil
# library's server, as `sigil serve` runs it) and starts
# `demo --keep-running` (a real docker-registry, a signed and an
# unsigned image, a key policy, HTTPS) in the background and sets:
#   work           a temporary directory, removed on exit
#   pid            the server's process id
#   url            https://localhost:PORT/validate
#   image          the signed image, pinned: REGISTRY/demo/signed:v1@sha256:…
#   unsigned_repo  REGISTRY/demo/unsigned
#   registry_log   the demo registry's log (one line per request it served)
# The demo's SIGIL_DEMO_* settings pass through the environment; its extra
# signed digests (SIGIL_DEMO_SIGNED_DIGESTS) are listed in $work/digests.
# START_POLLS (default 150) times 0.2 s is how long it may take to start.
SIGIL_WITH_WRK=1 scripts/setup.sh
cargo build --release --quiet --example demo
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
( SIGIL_DEMO_DIGESTS_FILE="$work/digests" SIGIL_LOG=warn "${CARGO_TARGET_DIR:-target}/release/examples/demo" --keep-running > "$work/demo.log" 2>&1 & echo $! > "$work/server.pid" )
for _ in $(seq 1 "${START_POLLS:-150}"); do grep -q "until Ctrl-C" "$work/demo.log" && break; sleep 0.2; done
url=$(sed -n 's/^serving on \(.*\) until Ctrl-C$/\1/p' "$work/demo.log")
image=$(sed -n 's/^   pushed \(.*\) (signed, \(sha256:[0-9a-f]*\))$/\1@\2/p' "$work/demo.log")
unsigned_repo=$(sed -n 's/^   pushed \(.*\):v1 (not signed)$/\1/p' "$work/demo.log")
registry_log=$(sed -n 's/^   registry log: \(.*\)$/\1/p' "$work/demo.log")
[ -n "$url" ] && [ -n "$image" ] && [ -n "$unsigned_repo" ] || { cat "$work/demo.log"; exit 1; }
pid=$(cat "$work/server.pid")
