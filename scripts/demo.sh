#!/usr/bin/env bash
# Runs sigil end to end with no cluster: starts a local registry, pushes a
# signed and an unsigned image, serves the webhook over HTTPS with a
# self-signed certificate and an example policy, and posts two AdmissionReviews.
# Pass --keep-running to leave the webhook up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --quiet --example demo -- "$@"
