# syntax=docker/dockerfile:1
# pipgate's container image: a release build on Debian 12, run on distroless (glibc, CA
# certificates, no shell, no package manager) as the numeric non-root user 65532.
#
#   docker build -t pipgate .
#   docker run --read-only -p 8080:8080 -v pipgate-cache:/var/cache/pipgate pipgate
#
# The image serves the embedded default (a caching proxy of PyPI) on 0.0.0.0:8080; give it a
# config with PIPGATE_CONFIG=/etc/pipgate/pipgate.toml or PIPGATE_* variables. The cache
# directory is the only path it writes, so it runs with a read-only root filesystem.
#
# No HEALTHCHECK: the image has no shell or HTTP client to run one. Kubernetes probes
# /healthz (liveness) and /readyz (readiness) itself (see helm/pipgate); with plain Docker,
# watch `docker logs` or probe the port from outside.
#
# scripts/test.sh runs this file's `cargo build` line verbatim and starts the binary it makes
# with this file's ENV, USER and command line, so the image's binary is the tested one.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The cache volume's mount point, given to the runtime user below so a named volume inherits it.
RUN mkdir -p /rootfs/var/cache/pipgate
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin pipgate

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pipgate" \
      org.opencontainers.image.description="An authenticating, caching PyPI simple-index proxy with a private-first, fail-closed owner rule" \
      org.opencontainers.image.source="https://github.com/pipgate/pipgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/pipgate /usr/local/bin/pipgate
COPY --from=build --chown=65532:65532 /rootfs/var/cache/pipgate /var/cache/pipgate
ENV PIPGATE_SERVER__LISTEN=0.0.0.0:8080 \
    PIPGATE_CACHE__DIR=/var/cache/pipgate \
    PIPGATE_LOG_FORMAT=json
USER 65532:65532
VOLUME ["/var/cache/pipgate"]
# 8080: the index; 9090: the admin listener (/metrics, /admin), when server.admin_listen sets it.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/pipgate"]
CMD ["serve"]
