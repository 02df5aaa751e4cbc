# happystreams: every command (`run`, `lake-sink`, `registry serve`, `generate`, ...) in one image.
#
#   docker build -t happystreams:0.1.0 .          (or `docker compose build`, see docker-compose.yml)
#   docker run --rm happystreams:0.1.0 --help
#
# Build: the Rust image of the toolchain Cargo.toml asks for (rust-version = 1.95), on Debian 12
# like the machines CI builds on; scripts/install-build-deps.sh adds what CI adds (libclang for
# RocksDB's bindings, OpenSSL headers for librdkafka). The first build compiles the bundled
# RocksDB and librdkafka (~30 min on 2 cores); the cargo registry and target directory are
# BuildKit cache mounts, so later builds recompile only happystreams.
#
# Runtime: Debian 12 slim (the binary links glibc 2.36, libstdc++, OpenSSL 3 and zlib — the
# `ldd` of a release build), a non-root user `happystreams` (uid 10001), state under the volume
# /var/lib/happystreams, and the topologies and schemas in the working directory, so
# `run --topology topologies/happytimes.yaml` finds `../schemas/*.avsc` beside it.
#
# No HEALTHCHECK here: the same image serves the registry (:8081), `run` (metrics on :9464) and
# `lake-sink` (no HTTP endpoint), so each compose service declares its own, with `http-ok`
# (deploy/docker/http-ok: bash's /dev/tcp, no curl needed).

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY scripts/install-build-deps.sh scripts/install-build-deps.sh
RUN scripts/install-build-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
ENV CARGO_TARGET_DIR=/cache/target
RUN --mount=type=cache,id=happystreams-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=happystreams-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=happystreams-target,target=/cache/target \
    cargo build --release --locked --bin happystreams \
    && install -D -m 0755 /cache/target/release/happystreams /out/happystreams

FROM debian:12.15-slim
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates libssl3 libstdc++6 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 happystreams \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/happystreams \
        --no-create-home --shell /usr/sbin/nologin happystreams \
    && install -d -o happystreams -g happystreams -m 0750 /var/lib/happystreams
COPY --from=build /out/happystreams /usr/local/bin/happystreams
COPY deploy/docker/http-ok /usr/local/bin/http-ok
WORKDIR /opt/happystreams
COPY topologies/ topologies/
COPY schemas/ schemas/
# `run` keeps task state here (one RocksDB per task). Environment variables override a --config
# file (flags override both): set runtime.state_dir with --state-dir to move it.
ENV HAPPYSTREAMS_RUNTIME__STATE_DIR=/var/lib/happystreams
# Compose gives each container its own anonymous volume here unless a service mounts one.
VOLUME /var/lib/happystreams
USER 10001:10001
# 9464: Prometheus /metrics of `run` (when runtime.metrics_address is 0.0.0.0:9464);
# 8081: `registry serve --listen 0.0.0.0:8081`.
EXPOSE 9464 8081
ENTRYPOINT ["happystreams"]
CMD ["--help"]
