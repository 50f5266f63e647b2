# Plat's images, one target per component:
#   docker build --target api -t plat-api .
#   docker build --target worker-compiler -t plat-worker-compiler .
#   docker build --target worker-executor -t plat-worker-executor .
# docker-compose.yaml builds all three.

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin api --bin worker-compiler --bin worker-executor --bin plat \
 && mkdir -p /out \
 && cp target/release/api target/release/worker-compiler target/release/worker-executor target/release/plat /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 plat
USER plat

FROM runtime AS api
COPY --from=build /out/api /usr/local/bin/api
ENV PLAT_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["api"]

FROM runtime AS worker-executor
COPY --from=build /out/worker-executor /usr/local/bin/worker-executor
ENTRYPOINT ["worker-executor"]

# The compiler needs a Rust toolchain with the wasm32-wasip1 target at run time,
# bubblewrap for the compile sandbox and prlimit (util-linux) for its rlimits.
# bubblewrap needs user namespaces: see security_opt in docker-compose.yaml.
# At its first start the worker fetches serde/serde_json from crates.io and
# builds them once into PLAT_CACHE_DIR (keep it on a volume).
FROM rust:1.95-bookworm AS worker-compiler
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip1 \
 && useradd --system --create-home --uid 10001 plat \
 && mkdir -p /var/cache/plat \
 && chown plat /var/cache/plat \
 && chmod -R a+rX /usr/local/rustup /usr/local/cargo
COPY --from=build /out/worker-compiler /usr/local/bin/worker-compiler
USER plat
ENV PLAT_CACHE_DIR=/var/cache/plat \
    CARGO_HOME=/home/plat/.cargo
ENTRYPOINT ["worker-compiler"]
