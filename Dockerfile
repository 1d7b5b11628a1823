# Builds the sigil binary and ships it on a slim Debian base.
# aws-lc-sys builds with the C compiler in the Rust image; no cmake or Go needed.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sigil /usr/local/bin/sigil
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sigil"]
CMD ["serve", "--policy-dir", "/etc/sigil/policies", "--tls-cert", "/etc/sigil/tls/tls.crt", "--tls-key", "/etc/sigil/tls/tls.key"]
