#!/usr/bin/env bash
# The whole test suite: unit tests, real-registry integration tests, the
# HTTPS server and CLI tests, and the real cosign fixture tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo test --benches --no-run --quiet
exec cargo test "$@"
