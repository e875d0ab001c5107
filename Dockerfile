# syntax=docker/dockerfile:1
# cacerts-sync container image: a fully static binary on distroless, running as a numeric non-root user.
#
#   docker build -t cacerts-sync:dev .
#
# The binary is built exactly as CI builds it (same command, see "Container image and static build" in README.md):
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --bin cacerts-sync \
#     --target "$(uname -m)-unknown-linux-gnu"
# Static glibc needs no musl toolchain, and the whole TLS stack (rustls + aws-lc-rs) is linked in.

ARG RUST_VERSION=1.95

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
    ldd /out/cacerts-sync 2>&1 | grep -Eq 'not a dynamic executable|statically linked'; \
    /out/cacerts-sync --version

# distroless/static: CA certificates, tzdata and /etc/passwd with nonroot=65532; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="cacerts-sync" \
      org.opencontainers.image.description="Keeps Istio's plug-in CA (cacerts) in step with Azure Key Vault" \
      org.opencontainers.image.source="https://github.com/cacerts-sync/cacerts-sync" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/cacerts-sync /usr/local/bin/cacerts-sync
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# The admin server (/healthz, /readyz, /metrics) in watch mode.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cacerts-sync"]
CMD ["--help"]
