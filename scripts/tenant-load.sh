#!/usr/bin/env bash
# What one tenant can make sigil spend, against the real `sigil serve`
# (release build) and the real docker-registry, each figure beside its
# yardstick in the same run (tests/tenants.rs):
# - every hostile AdmissionReview shape of ~3 MiB, one at a time (what one
#   review adds to the resident set) and 16 at once (peak RSS);
# - a tenant whose images sit on 16 registries that never answer, at 4
#   reviews/s for 30 s, beside another namespace's cold reviews at 2/s,
#   against that namespace's own unloaded run.
# About two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release --test tenants -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(peak RSS|env|volumes|containers|nested|imagePullSecrets|labels|image reference|costliest|16 ×|shop|tenant|test )'
