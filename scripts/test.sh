#!/usr/bin/env bash
# The whole test suite: unit tests, real-registry integration tests, the
# HTTPS server and CLI tests, the real cosign fixture tests, and the cluster
# tests against a real kube-apiserver (built from Debian's source package on
# first use, ~10 minutes, then cached under ~/.cache/sigil).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A real kube-apiserver and etcd for tests/cluster.rs (built once, cached).
SIGIL_KUBE_APISERVER="$(scripts/kube-apiserver.sh)"
export SIGIL_KUBE_APISERVER
cargo fmt --all -- --check
# No unused dependency (cargo-machete, ~1 min to install once), and no test
# crate in what the release binary links.
command -v cargo-machete >/dev/null 2>&1 || cargo install --quiet --locked cargo-machete
cargo machete
if cargo tree -e normal -p sigil --prefix none | grep -E '^(sigil-testkit|criterion|libfuzzer-sys) '; then
  echo "a test-only crate is a normal dependency of sigil" >&2
  exit 1
fi
cargo test --benches --no-run --quiet
# Every test binary runs, even after one fails (--no-fail-fast), and the
# run ends on one summary line: a failure in the unit tests must not hide
# the integration tests' results.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
awk -v rc="$rc" '
  /^test result:/ { passed += $4; failed += $6; ignored += $8; binaries++ }
  /^test .* \.\.\. FAILED$/ { names = names " " $2 }
  END {
    printf "summary: %d passed, %d failed, %d ignored in %d test binaries (exit %d)%s\n",
      passed, failed, ignored, binaries, rc, (names != "" ? "; failed:" names : "")
  }' "$log"
exit "$rc"
