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
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian package starts nothing here (no systemd); sigil's harness runs
# its own instances on 127.0.0.1 with temporary storage.
