# The sigil webhook image: the release binary only (no test kit, tests,
# benches or examples), on a minimal non-root runtime with CA certificates.
#
#   docker build -t sigil .
#   scripts/image.sh     # without a daemon (buildah), then checks the image
#
# Not built in CI (a build takes about as long as the test run; see
# docs/install.md). Kept simple enough to review by eye.

# The bases, replaceable where the public images cannot be pulled (a
# mirror, or bases made locally): --build-arg BUILD_BASE=… RUNTIME_BASE=….
ARG BUILD_BASE=rust:1-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_BASE} AS build
WORKDIR /src
# `sigil --version` names this commit (there is no .git in the context).
ARG SIGIL_COMMIT=unknown
ENV SIGIL_COMMIT=${SIGIL_COMMIT}

# 1. Dependencies, in their own layer: only the manifests and the lock
#    file, with stub sources (every target the manifests declare must
#    exist), so that this layer is rebuilt only when dependencies change.
#    aws-lc-sys builds with the C compiler of this image; no cmake or Go.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/sigil-testkit/Cargo.toml crates/sigil-testkit/Cargo.toml
RUN mkdir -p src benches crates/sigil-testkit/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/sigil-testkit/src/lib.rs \
 && for b in warm_path keyless matching programs notation; do echo 'fn main() {}' > "benches/$b.rs"; done \
 && cargo build --release --locked --bin sigil \
 && rm -rf src benches crates/sigil-testkit/src

# 2. sigil itself. The stubs' build outputs are older than these sources,
#    so cargo rebuilds the sigil crate (and only it).
COPY src src
COPY benches benches
COPY crates/sigil-testkit/src crates/sigil-testkit/src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin sigil \
 && cp target/release/sigil /sigil

# The runtime: glibc, CA certificates and a non-root user (65532), no
# shell or package manager.
FROM ${RUNTIME_BASE}
COPY --from=build /sigil /usr/local/bin/sigil
USER 65532:65532
# HTTPS webhook; plain-HTTP metrics (docs/metrics.md).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/sigil"]
CMD ["serve", "--policy-dir", "/etc/sigil/policies", "--tls-cert", "/etc/sigil/tls/tls.crt", "--tls-key", "/etc/sigil/tls/tls.key"]
