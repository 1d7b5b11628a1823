#!/usr/bin/env bash
# Build the Dockerfile without a Docker daemon and check the image as an
# admin would. Not in CI (a release build inside a chroot takes about as
# long as the whole test run; docs/install.md gives the figures).
#
#   scripts/image.sh            # build, push to a local registry, check
#
# What it does, in order:
#   1. makes the two bases the Dockerfile names, locally, because the
#      public images cannot be pulled here:
#        - the build base: Debian bookworm (mmdebstrap, minbase) with
#          build-essential and a Rust toolchain from rustup, laid out as the
#          official `rust:1-bookworm` image lays it out; it also trusts
#          the host's own CAs (/usr/local/share/ca-certificates), because
#          this machine reaches the package registries through a proxy
#          that presents them, and cargo fetches crates inside the build;
#        - the runtime base: what distroless's `cc-debian12:nonroot` holds,
#          made the way distroless makes it (packages extracted, never
#          installed): libc6, libgcc-s1, the CA bundle, a `nonroot` user
#          65532, /tmp; no shell, no package manager;
#   2. builds the Dockerfile with buildah (vfs storage, chroot isolation),
#      choosing those bases with the Dockerfile's build arguments;
#   3. pushes the image to a local docker-registry;
#   4. checks it: runs as 65532 by default, `sigil --version` runs inside
#      its root filesystem (chroot as 65532), `sigil serve` with the
#      Dockerfile's default arguments starts, answers /readyz and decides
#      two reviews (the policy library's exemptions: one admitted, one
#      denied), the
#      filesystem holds only the base and the sigil binary, the binary
#      holds no test kit; prints the image's size.
#
# Environment: SIGIL_IMAGE_CACHE (default ~/.cache/sigil/image) keeps the
# bases between runs (delete it to remake them); RUST_VERSION (1.95.0);
# SIGIL_IMAGE_CHECK_ONLY=1 checks the image built last time, without
# building. A build needs about 20 GiB free (vfs copies every layer whole);
# the build stage's layers are removed afterwards.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${SIGIL_IMAGE_CACHE:-$HOME/.cache/sigil/image}
RUST_VERSION=${RUST_VERSION:-1.95.0}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STORAGE=(--storage-driver vfs --root "$CACHE/storage" --runroot "$CACHE/run")
mkdir -p "$CACHE"
WORK=$(mktemp -d)
REGISTRY_PID=
SERVE_PID=
MOUNTED=
cleanup() {
  [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null || true
  [[ -n $REGISTRY_PID ]] && kill "$REGISTRY_PID" 2>/dev/null || true
  [[ -n $MOUNTED ]] && buildah "${STORAGE[@]}" rm "$MOUNTED" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
need buildah mmdebstrap docker-registry curl openssl binutils
bah() { buildah "${STORAGE[@]}" "$@"; }
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)" >&2; }
START=$(date +%s)

# --- 1. the bases ----------------------------------------------------------
import_base() { # import_base NAME ROOTFS_TAR [buildah config args…]
  local name=$1 tar=$2
  shift 2
  local ctr
  ctr=$(bah from scratch)
  bah add "$ctr" "$tar" / >/dev/null
  bah config "$@" "$ctr"
  bah commit --quiet --rm "$ctr" "localhost/$name" >/dev/null
}

if ! bah inspect --type image localhost/sigil-build-base:bookworm >/dev/null 2>&1; then
  step "build base: mmdebstrap bookworm + rust $RUST_VERSION"
  mmdebstrap --quiet --variant=minbase \
    --include=build-essential,ca-certificates,curl,pkg-config \
    --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ 2>/dev/null || true' \
    --customize-hook='chroot "$1" sh -euc "
      update-ca-certificates >/dev/null
      curl -sSf https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init -o /tmp/rustup-init
      chmod +x /tmp/rustup-init
      RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain '"$RUST_VERSION"'
      rm /tmp/rustup-init"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$WORK/build-base.tar" "$MIRROR"
  import_base sigil-build-base:bookworm "$WORK/build-base.tar" \
    --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  rm -f "$WORK/build-base.tar"
fi

if ! bah inspect --type image localhost/sigil-runtime-base:bookworm >/dev/null 2>&1; then
  step "runtime base: libc6, libgcc-s1, CA bundle, nonroot (extracted, as distroless does)"
  rootfs=$WORK/runtime
  mkdir -p "$rootfs" "$WORK/debs"
  (cd "$WORK/debs" && apt-get download libc6 libgcc-s1 ca-certificates >/dev/null)
  for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  # ca-certificates' maintainer script would build the bundle; nothing runs
  # here, so build it the way update-ca-certificates does.
  mkdir -p "$rootfs/etc/ssl/certs"
  cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/usr/share/{doc,lintian,man,locale,ca-certificates} "$rootfs"/usr/sbin "$rootfs"/etc/ca-certificates* \
    "$rootfs"/usr/lib/x86_64-linux-gnu/gconv "$rootfs"/usr/bin "$rootfs"/usr/libexec
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  mkdir -p "$rootfs/tmp" "$rootfs/home/nonroot" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  chown 65532:65532 "$rootfs/home/nonroot"
  tar -C "$rootfs" --numeric-owner -cf "$WORK/runtime-base.tar" .
  import_base sigil-runtime-base:bookworm "$WORK/runtime-base.tar" \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532:65532 --workingdir /home/nonroot
  rm -rf "$rootfs" "$WORK/runtime-base.tar"
fi

# --- 2. the image ----------------------------------------------------------
BUILD_START=$(date +%s)
if [[ -n ${SIGIL_IMAGE_CHECK_ONLY:-} ]]; then
  # Check the image built last time again, without building.
  bah inspect --type image localhost/sigil:dev >/dev/null || { echo "no image built yet" >&2; exit 1; }
  commit= # whichever it was built from; --version must still name one
else
  step "buildah bud"
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
  bah bud --quiet --isolation chroot --layers \
    --build-arg BUILD_BASE=localhost/sigil-build-base:bookworm \
    --build-arg RUNTIME_BASE=localhost/sigil-runtime-base:bookworm \
    --build-arg SIGIL_COMMIT="$commit" \
    -t localhost/sigil:dev "$ROOT" >"$WORK/bud.log" 2>&1 || {
    tail -40 "$WORK/bud.log" >&2
    exit 1
  }
  # vfs copies every layer whole: the build stage's layers (toolchain,
  # crates, target) take well over 10 GiB. Keep the bases and the image.
  bah rmi --prune >/dev/null 2>&1 || true
fi
BUILD_SECONDS=$(($(date +%s) - BUILD_START))

# --- 3. push to a real registry -------------------------------------------
step "push to a local docker-registry"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/registry.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: 127.0.0.1:$port}
log: {level: error}
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
bah push --quiet --tls-verify=false --format oci localhost/sigil:dev "docker://127.0.0.1:$port/sigil:dev" >/dev/null
manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$port/v2/sigil/manifests/dev")
config_digest=$(jq -r .config.digest <<<"$manifest")
config=$(curl -sf "http://127.0.0.1:$port/v2/sigil/blobs/$config_digest")
compressed=$(jq '[.layers[].size] | add' <<<"$manifest")

# --- 4. check it as an admin would -----------------------------------------
step "checks"
fail() { echo "FAIL: $*" >&2; exit 1; }
user=$(jq -r .config.User <<<"$config")
[[ $user == 65532:65532 ]] || fail "the image runs as '$user', not 65532:65532"
entrypoint=$(jq -c .config.Entrypoint <<<"$config")
[[ $entrypoint == '["/usr/local/bin/sigil"]' ]] || fail "entrypoint is $entrypoint"

# The registry's copy, not buildah's: pull it back and mount its root.
bah pull --quiet --tls-verify=false "docker://127.0.0.1:$port/sigil:dev" >/dev/null
MOUNTED=$(bah from --quiet --pull=never "127.0.0.1:$port/sigil:dev")
rootfs=$(bah mount "$MOUNTED")
uncompressed=$(du -sb "$rootfs" | cut -f1)

version=$(chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/sigil --version) ||
  fail "sigil --version did not run inside the image"
grep -q "(commit $commit" <<<"$version" || fail "--version ($version) does not name commit $commit"

# Only the base and the binary: no shell, no package manager, no sources.
for absent in bin/sh usr/bin/sh usr/bin/apt usr/bin/dpkg usr/local/cargo src target; do
  [[ ! -e $rootfs/$absent ]] || fail "the image holds /$absent"
done
extra=$(cd "$rootfs" && find usr/local -type f | grep -vx usr/local/bin/sigil || true)
[[ -z $extra ]] || fail "the image holds more than the binary under /usr/local: $extra"
if strings "$rootfs/usr/local/bin/sigil" | grep -q 'sigil_testkit\|sigil-testkit'; then
  fail "the binary holds the test kit"
fi

# Start it with the Dockerfile's default arguments (TLS files and a policy
# directory where the chart mounts them) as its user, and probe it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=sigil -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
mkdir -p "$rootfs/etc/sigil/tls" "$rootfs/etc/sigil/policies"
cp "$WORK/tls.crt" "$WORK/tls.key" "$rootfs/etc/sigil/tls/"
chmod 0644 "$rootfs/etc/sigil/tls/"*
cp "$ROOT/policies/exemptions.yaml" "$rootfs/etc/sigil/policies/" 2>/dev/null || true
serve_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cmd=$(jq -r '.config.Cmd | join(" ")' <<<"$config")
# shellcheck disable=SC2086 # the image's CMD, split as the runtime splits it
chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/sigil $cmd \
  --listen "127.0.0.1:$serve_port" --metrics-listen off --log-format json >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
ready=
for _ in $(seq 100); do
  if curl -sf --cacert "$WORK/tls.crt" "https://localhost:$serve_port/readyz" >/dev/null; then ready=1; break; fi
  kill -0 "$SERVE_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n $ready ]] || { cat "$WORK/serve.log" >&2; fail "sigil serve did not become ready inside the image"; }
# And it decides: the exemption admits pause, nothing else matches a policy.
. "$ROOT/scripts/review-load.sh"
digest=sha256:$(printf '%064d' 0)
review() { # review IMAGE: the answer to a Pod running IMAGE
  pod_review "$1@$digest" >"$WORK/review.json"
  curl -sf --cacert "$WORK/tls.crt" -X POST -H 'Content-Type: application/json' \
    --data @"$WORK/review.json" "https://localhost:$serve_port/validate"
}
review registry.k8s.io/pause:3.9 | grep -q '"allowed":true' || fail "an exempt image was not admitted"
review registry.example.com/app/web | grep -q '"allowed":false' || fail "an image no policy matches was not denied"

TOTAL_SECONDS=$(($(date +%s) - START))
cat <<EOF

image        127.0.0.1:$port/sigil:dev (pushed, pulled back, checked)
version      $version
user         $user   entrypoint $entrypoint
serve        ready on /readyz with the image's CMD ($cmd); admitted an exempt image, denied an unmatched one
size         $((compressed / 1024 / 1024)) MiB compressed, $((uncompressed / 1024 / 1024)) MiB on disk
binary       $(($(stat -c %s "$rootfs/usr/local/bin/sigil") / 1024 / 1024)) MiB
build        ${BUILD_SECONDS} s (buildah bud), ${TOTAL_SECONDS} s in all
EOF
