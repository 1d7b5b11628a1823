#!/usr/bin/env bash
# Installs what sigil's demo and tests need on a fresh Debian machine that
# has only Rust: Debian's docker-registry (distribution v2) and, for the load
# test, wrk. Safe to run repeatedly.
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
if [ "${SIGIL_WITH_WRK:-0}" = 1 ]; then command -v wrk >/dev/null 2>&1 || need+=(wrk); fi
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The server and fault tests stop `sigil serve` with /bin/kill -TERM.
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || need+=(procps)
# tests/install.rs writes Endpoints with this host's address (`ip -4 addr`).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# promtool (Debian's prometheus package): the chart's alert rules and dashboard are checked with it.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Helm v4's Go SDK as a Python library, for tests/chart.rs (render and lint
# the chart without a helm binary), and moto (a real AWS API server with
# KMS, on loopback) for tests/kms.rs, in a venv under ~/.cache/sigil.
venv="$HOME/.cache/sigil/helm-venv"
if ! "$venv/bin/python" -c "import helm_python, yaml, moto" >/dev/null 2>&1; then
  if ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q helm-python-sdk==0.2.2 pyyaml==6.0.3 "moto[server]==5.2.5"
fi
# The Debian package starts nothing here (no systemd); sigil's harness runs
# its own instances on 127.0.0.1 with temporary storage.
