#!/usr/bin/env bash
# Regenerates crds/ from the Rust types (one file per CRD, named after it):
# sigil's own in crds/, Kyverno's two ImageValidatingPolicy kinds (as sigil
# reads them) in crds/kyverno/; and the Helm chart's copies: sigil's in
# charts/sigil/crds/ (always installed), Kyverno's in
# charts/sigil/files/kyverno-crds/ (installed by a template only where
# Kyverno's own CRDs are absent).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cargo run -q -- crd >"$tmp"
mkdir -p crds/kyverno charts/sigil/files/kyverno-crds
python3 - "$tmp" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("---\n")[1:]
for d in docs:
    name = next(l.split(":", 1)[1].strip() for l in d.splitlines() if l.startswith("  name:"))
    where = "crds/kyverno" if name.endswith(".policies.kyverno.io") else "crds"
    open(f"{where}/{name}.yaml", "w").write("---\n" + d)
    print(f"{where}/{name}.yaml")
PY
# The Helm chart ships the same CRDs (tests/chart.rs checks they match).
rm -f charts/sigil/crds/*.yaml charts/sigil/files/kyverno-crds/*.yaml
cp crds/*.yaml charts/sigil/crds/
cp crds/kyverno/*.yaml charts/sigil/files/kyverno-crds/
