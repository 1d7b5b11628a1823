#!/usr/bin/env bash
# Provides a real kube-apiserver (v1.20.2, built from Debian bookworm's
# `kubernetes` source package) and etcd for the cluster tests, and prints the
# apiserver binary's path. The build takes about 10 minutes on 2 cores and is
# cached under ~/.cache/sigil; it is redone only when the binary is missing.
#
# The vendored github.com/modern-go/reflect2 v1.0.1 crashes (SIGSEGV in map
# iteration) when built with Go >= 1.18; Debian's golang-github-modern-go-
# reflect2-dev (1.0.2, the upstream fix) is copied over it before building.
# Built with Go 1.19, a custom resource holding an empty string
# (`apiGroups: [""]`) is refused as null: the schema validator's zero-value
# test compares reflect.Values with DeepEqual, and newer Go stores every
# empty string converted to an interface at the runtime's shared zero value,
# where reflect.Zero points too. The test (kube-openapi's copy of
# go-openapi/validate, and go-openapi's own) is patched to test for nil only.
set -euo pipefail
cache="${SIGIL_CACHE:-$HOME/.cache/sigil}"
bin="$cache/kube-apiserver-v1.20.2-go119-empty-strings/kube-apiserver"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if [ ! -x "$bin" ]; then
  [ -x /usr/lib/go-1.19/bin/go ] || need+=(golang-1.19-go)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need+=(golang-github-modern-go-reflect2-dev)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
  command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$bin" ]; then
  if ! apt-get source --print-uris -qq kubernetes >/dev/null 2>&1; then
    # Add a deb-src entry mirroring the machine's own bookworm main entry.
    legacy=$(grep -rhs '^deb [^ ]* bookworm main' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -1 || true)
    if [ -n "$legacy" ]; then
      echo "${legacy/#deb /deb-src }" | $SUDO tee /etc/apt/sources.list.d/sigil-src.list >/dev/null
    else
      # Copy the bookworm/main stanza of the deb822 sources as deb-src.
      stanza=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && /Components:[^\n]*main/ {print; exit}' /etc/apt/sources.list.d/*.sources)
      [ -n "$stanza" ] || { echo "no Debian bookworm source entry to derive deb-src from" >&2; exit 1; }
      printf '%s\n' "$stanza" | sed -e 's/^Types:.*/Types: deb-src/' -e 's/^Suites:.*/Suites: bookworm/' -e 's/^Components:.*/Components: main/' \
        | $SUDO tee /etc/apt/sources.list.d/sigil-src.sources >/dev/null
    fi
    $SUDO apt-get update -qq
  fi
  work="$cache/k8s-build"
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get source -qq kubernetes >/dev/null 2>&1)
  tree=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
  for typecheck in "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" \
                   "$tree/vendor/github.com/go-openapi/validate/type.go"; do
    grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$typecheck"
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil || reflect.ValueOf(data).Kind() == reflect.Invalid {/' "$typecheck"
  done
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  (cd "$tree/.go/src/k8s.io/kubernetes" && GOPATH="$tree/.go" PATH="/usr/lib/go-1.19/bin:$PATH" CGO_ENABLED=0 GOFLAGS=-mod=vendor make WHAT=cmd/kube-apiserver >&2)
  mkdir -p "$(dirname "$bin")"
  cp "$tree/_output/local/bin/linux/amd64/kube-apiserver" "$bin"
  rm -rf "$work"
fi
echo "$bin"
