# syntax=docker/dockerfile:1
#
# sessiond container image: `docker build -t sessiond .` (see docs/DEPLOYMENT.md).
#
# Build on an x86_64 host, or pass `--platform linux/amd64`: the builder runs
# `cargo build --release --locked` for its own platform, and CI builds the same
# x86_64-unknown-linux-gnu binary with the same command.

# The toolchain the image is built with; change it here or with --build-arg.
ARG RUST_IMAGE=rust:1.95-bookworm
# glibc, not musl, on purpose: musl's allocator is slow for a multi-threaded proxy. The
# distroless cc image is glibc, libgcc_s, CA certificates and a nonroot user, with no
# shell or package manager.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src

# Dependencies first, with placeholder sources, so that a change to src/ rebuilds only
# sessiond itself and this layer stays cached until Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked

COPY src ./src
# Cargo decides by timestamps whether a crate is stale, and the copied sources may be
# older than the placeholder build: forget the placeholder so that sessiond is rebuilt.
RUN rm -rf target/release/.fingerprint/sessiond-* \
    && cargo build --release --locked

# Directories the final stage needs, made here because it has no shell to make them.
# The state directory holds the CA key and the session store: 0700.
RUN install -d -m 0700 -o 65532 -g 65532 /out/state \
    && install -d -m 0755 -o 65532 -g 65532 /out/ca

# ---------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

COPY --from=builder /src/target/release/sessiond /usr/bin/sessiond
COPY --from=builder --chown=65532:65532 /out/state /var/lib/sessiond
# Where `sessiond ca --out /ca/ca.pem` exports the CA certificate, for a volume shared
# with the containers that must trust it.
COPY --from=builder --chown=65532:65532 /out/ca /ca

# The daemon keeps its state in $STATE_DIRECTORY unless the configuration sets
# proxy.state_dir. A named volume here starts as a copy of the directory above (owner
# and mode included); without a volume the CA and the cookies die with the container.
ENV STATE_DIRECTORY=/var/lib/sessiond
VOLUME /var/lib/sessiond

# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532

# Proxy and admin API. With the built-in defaults both listen on 127.0.0.1 only, which is
# what a sidecar sharing the app's network namespace needs (a Kubernetes pod, or compose
# `network_mode: service:sessiond`). Publishing them to other hosts takes a configuration
# that listens on 0.0.0.0 with require_auth or [[clients]]: config/container.toml.
EXPOSE 8080 8081

# `sessiond health` asks GET /healthz of the admin API that -c FILE names; without -c,
# like the default CMD, of 127.0.0.1:8081 without a token. So this check fits the
# defaults, and any mounted configuration whose admin API is on port 8081 without a
# token. One that moves the port or sets admin.token/token_file needs the check replaced
# by one with the same -c as `run`: compose `healthcheck.test` in exec form (see
# config/docker-compose.yml), or a derived image. `docker run --health-cmd` cannot do
# it: it runs through /bin/sh, which this image does not have. Kubernetes ignores
# HEALTHCHECK and uses the probes in config/kubernetes.yaml.
# It runs every second while the daemon starts, so that compose's `service_healthy`
# follows readiness closely (--start-interval needs Docker 25; older engines wait 30s
# for the first check), then every 30 seconds.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --start-interval=1s --retries=3 \
    CMD ["/usr/bin/sessiond", "health"]

ENTRYPOINT ["/usr/bin/sessiond"]
# The built-in defaults. For a configuration file, mount it and pass its path:
#   docker run -v ./sessiond.toml:/etc/sessiond/sessiond.toml:ro sessiond \
#       run -c /etc/sessiond/sessiond.toml
CMD ["run"]
