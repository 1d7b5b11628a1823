#!/usr/bin/env bash
# Coverage-guided fuzzing of what sigil reads from the outside (cargo-fuzz,
# libFuzzer): AdmissionReviews and image extraction, image references and
# globs, policy YAML, simple-signing payloads, DSSE envelopes, Sigstore
# bundles, Notation envelopes. Builds the targets once, runs each for SECONDS (default 60) and
# prints executions and crashes per target; exits 1 if any target crashed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them. Corpora grow under fuzz/corpus (not committed); the
# seeds in fuzz/seeds are. A crash leaves its input in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(admission_review image_reference policy_yaml simple_signing dsse_envelope sigstore_bundle strict_bundle notation_envelope)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
# Always fuzz/target, whatever the caller's CARGO_TARGET_DIR says: the
# binaries are run from there below.
export CARGO_TARGET_DIR="$PWD/target"
cargo fuzz build --release
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
summary=$(mktemp)
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="$(mktemp)"
  status=0
  "$bin/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1 || status=$?
  crashes=$(find "artifacts/$t" -type f | wc -l)
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    [ "$crashes" -gt 0 ] || crashes="exit $status, see $log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  printf '%-18s %14s %10s\n' "$t" "${runs:-?}" "$crashes" >>"$summary"
done
printf '%-18s %14s %10s\n' target executions crashes
cat "$summary"
exit "$failed"
