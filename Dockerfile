# syntax=docker/dockerfile:1
# cacerts-sync container image: a fully static binary FROM scratch with a CA bundle, running as the numeric
# non-root user 65532. Two ways to get the binary into it; the image itself is the same final stage either way:
#
#   docker build -t cacerts-sync:dev .                     # compiles in the `builder` stage (pulls rust:bookworm)
#
#   # offline (what CI does with buildah, see tests/image.sh): build the static binary on the host first,
#   # put it and a CA bundle in target/image/, then package only
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --bin cacerts-sync \
#     --target "$(uname -m)-unknown-linux-gnu"
#   mkdir -p target/image && cp target/*-unknown-linux-gnu/release/cacerts-sync target/image/ \
#     && cp /etc/ssl/certs/ca-certificates.crt target/image/
#   buildah build --build-arg BINARY_FROM=prebuilt -t cacerts-sync:dev .
#
# Static glibc needs no musl toolchain, and the whole TLS stack (rustls + aws-lc-rs) is linked in.

ARG RUST_VERSION=1.95
# Which stage provides /out/cacerts-sync and /out/ca-certificates.crt: `builder` or `prebuilt`.
ARG BINARY_FROM=builder

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# --target is required with crt-static: it keeps build scripts and proc-macros dynamically linked on the host.
# Cache mounts keep the registry and target dir across builds without baking them into a layer.
# The ldd check fails the build if anything dynamic slipped in: the final image has no libc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    target="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS="-C target-feature=+crt-static" AWS_LC_SYS_NO_JITTER_ENTROPY=1 \
      cargo build --release --locked --bin cacerts-sync --target "$target"; \
    install -D -m 0755 "target/$target/release/cacerts-sync" /out/cacerts-sync; \
    install -m 0644 /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt; \
    ldd /out/cacerts-sync 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; \
    /out/cacerts-sync --version

# The binary and CA bundle the host already has (no registry, no network): see the header.
FROM scratch AS prebuilt
COPY target/image/cacerts-sync target/image/ca-certificates.crt /out/

FROM ${BINARY_FROM} AS binary

# The image users get, whichever stage made the binary: nothing but the binary, the CA bundle for Key Vault and
# Entra TLS, and passwd/group entries for the non-root user. No shell, no package manager.
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="cacerts-sync" \
      org.opencontainers.image.description="Keeps Istio's plug-in CA (cacerts) in step with Azure Key Vault" \
      org.opencontainers.image.source="https://github.com/cacerts-sync/cacerts-sync" \
      org.opencontainers.image.url="https://github.com/cacerts-sync/cacerts-sync" \
      org.opencontainers.image.documentation="https://github.com/cacerts-sync/cacerts-sync/blob/main/README.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY image/passwd image/group /etc/
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/cacerts-sync /usr/local/bin/cacerts-sync
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# The admin server (/healthz, /readyz, /metrics) in watch mode.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cacerts-sync"]
CMD ["--help"]
