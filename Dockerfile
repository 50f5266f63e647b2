# syntax=docker/dockerfile:1
# Plat's images, one target per component:
#   docker build --target api             -t plat-api .
#   docker build --target worker-compiler -t plat-worker-compiler .
#   docker build --target worker-executor -t plat-worker-executor .
# docker-compose.yaml builds all three.

# ---- build: every binary of the workspace, once ----------------------------
# rust-toolchain.toml (channel "stable") is left out of the build context by
# .dockerignore, so the build uses this image's own toolchain instead of
# downloading whatever "stable" is today.
# The C toolchain builds the JavaScript engine (js-engine/, QuickJS for
# wasm32-wasip1) that worker-compiler embeds: see scripts/setup.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang-16 lld-16 llvm-16 wasi-libc libclang-rt-16-dev-wasm32 libclang1-16 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip1
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/src/js-engine/target \
    cargo build --release --locked --bin api --bin worker-compiler --bin worker-executor --bin plat \
 && mkdir -p /out \
 && cp target/release/api target/release/worker-compiler target/release/worker-executor target/release/plat /out/

# ---- runtime base for the api and the executor: glibc, nothing else --------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 plat
USER plat
WORKDIR /home/plat

# The API. Applies pending migrations at start; `api migrate` only migrates.
FROM runtime AS api
COPY --from=build /out/api /usr/local/bin/api
ENV PLAT_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["api"]

# The executor: wasmtime is linked in, so it needs no toolchain.
FROM runtime AS worker-executor
COPY --from=build /out/worker-executor /usr/local/bin/worker-executor
# Compiled native code of modules (PLAT_MODULE_CACHE_DIR, relative to the
# workdir). Made here, as plat with mode 0700, so a volume mounted on it
# starts out ours: the executor refuses a cache folder it does not own.
RUN mkdir -m 700 -p /home/plat/.plat/module-cache
ENTRYPOINT ["worker-executor"]

# ---- the compiler: needs a Rust toolchain at run time ----------------------
# It runs rustc with the wasm32-wasip1 target, inside bubblewrap (the compile
# sandbox), under rlimits set by prlimit (util-linux).
# - bubblewrap needs user namespaces: run the container with
#   `security_opt: [seccomp=unconfined, apparmor=unconfined]` (see
#   docker-compose.yaml) or an equivalent seccomp profile that allows
#   unshare/clone of new namespaces. Without them the worker exits at start
#   ("the compile sandbox does not work on this machine"); it never compiles
#   unsandboxed.
# - At its first start the worker fetches serde/serde_json from crates.io and
#   builds them once into PLAT_CACHE_DIR: keep that folder on a volume so later
#   starts reuse it.
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
WORKDIR /home/plat
# CARGO_HOME: where the one-time dependency build downloads crates (writable
# by the plat user; the toolchain itself stays in the image's RUSTUP_HOME).
ENV PLAT_CACHE_DIR=/var/cache/plat \
    CARGO_HOME=/home/plat/.cargo
ENTRYPOINT ["worker-compiler"]
