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
cargo test --benches --no-run --quiet
exec cargo test "$@"
