# ragd container image.
#   docker build -t ragd .
#   docker run --rm ragd --help
# Multi-stage: a full Rust toolchain builds a release binary; the runtime image
# is Debian slim with CA certificates and a non-root user, nothing else.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a code change does not rebuild them: build a dummy
# crate with the real manifest and lock file, then the real sources.
COPY Cargo.toml Cargo.lock ./
# The workspace's other crate (the local embedder's forward pass) is a real dependency.
COPY crates ./crates
RUN mkdir -p src tests examples \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > examples/local_embed_bench.rs \
    && touch tests/tests.rs \
    && cargo build --release --locked --bin ragd || true
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin ragd \
    && strip target/release/ragd

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ragd \
    && useradd --system --uid 10001 --gid ragd --home-dir /var/lib/ragd --shell /usr/sbin/nologin ragd \
    && mkdir -p /var/lib/ragd /etc/ragd/config /etc/ragd/pipelines /documents \
    && chown -R ragd:ragd /var/lib/ragd
COPY --from=build /src/target/release/ragd /usr/local/bin/ragd
USER ragd
WORKDIR /var/lib/ragd
ENV RAGD_CONFIG=/etc/ragd/config/ragd.toml \
    RUST_LOG=warn,ragd=info
VOLUME ["/var/lib/ragd"]
EXPOSE 9321
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9321/healthz || exit 1
# tini forwards SIGTERM so ragd drains in-flight files before exiting.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/ragd"]
CMD ["run", "--log-format", "json"]
