# The `commerce` binary in a slim runtime image. One image serves every component of the
# engine: docker-compose.yml runs it as `commerce migrate | serve | relay | project | workflows`.
#
#   docker build -t fusioncommerce .                      # PostgreSQL event store only
#   docker build --build-arg FEATURES=kurrentdb -t fusioncommerce .   # + the KurrentDB backend

# ---- build stage: the whole workspace, release profile ----------------------------------------
FROM rust:1.95-slim-bookworm AS build
# rdkafka builds its bundled librdkafka statically (configure + make, default features: no SSL,
# no SASL): it needs a C toolchain, perl and the zlib headers. sqlx and kurrentdb use rustls
# (aws-lc builds with the C toolchain alone).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config perl \
        python3 zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG FEATURES=""
# The cache mounts keep the registry and the target folder between builds of this stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p commerce-api --bin commerce ${FEATURES:+--features $FEATURES} \
    && install -D target/release/commerce /out/commerce

# ---- runtime stage: the binary, zlib (librdkafka links it) and curl for the health check ----
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home commerce
COPY --from=build /out/commerce /usr/local/bin/commerce
USER commerce
ENV COMMERCE_HTTP_ADDR=0.0.0.0:8080 RUST_LOG=info
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/commerce"]
CMD ["serve"]
