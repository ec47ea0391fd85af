# Portcullis container image.
#   docker build -t portcullis .
# Multi-stage: a full Rust toolchain builds the release binary; the runtime image is
# debian:bookworm-slim with only ca-certificates and curl (for the health check).

# ---- build stage ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The build context is filtered by .dockerignore (no target/, data/, keys, .git).
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/portcullis /usr/local/bin/portcullis

# ---- runtime stage -------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user; its home is the working directory, so the embedded default's relative
# paths (data/ for SQLite, keys/) are writable. The directories exist in the image owned by
# this user, so named volumes mounted on them start with the right ownership.
RUN groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid portcullis --home-dir /var/lib/portcullis \
        --shell /usr/sbin/nologin portcullis \
    && mkdir -p /var/lib/portcullis/data /var/lib/portcullis/keys \
    && chown -R portcullis:portcullis /var/lib/portcullis \
    && chmod 0700 /var/lib/portcullis/keys

COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis

WORKDIR /var/lib/portcullis
USER portcullis:portcullis
ENV PORTCULLIS_LISTEN=0.0.0.0:8080 \
    PORTCULLIS_KEYS_DIR=/var/lib/portcullis/keys
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]

ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
