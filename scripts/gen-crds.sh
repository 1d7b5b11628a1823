#!/usr/bin/env bash
# Regenerates crds/ from the Rust types (one file per CRD, named after it),
# and the Helm chart's copy of crds/.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cargo run -q -- crd >"$tmp"
python3 - "$tmp" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("---\n")[1:]
for d in docs:
    name = next(l.split(":", 1)[1].strip() for l in d.splitlines() if l.startswith("  name:"))
    open(f"crds/{name}.yaml", "w").write("---\n" + d)
    print(f"crds/{name}.yaml")
PY
# The Helm chart ships the same CRDs (tests/chart.rs checks they match).
rm -f charts/sigil/crds/*.yaml
cp crds/*.yaml charts/sigil/crds/
