# syntax=docker/dockerfile:1
# Builds both binaries; the runtime image runs either one as a non-root user.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first, in their own layer: only a change to a manifest or the
# lock file rebuilds them.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY gateway/Cargo.toml gateway/
COPY persister/Cargo.toml persister/build.rs persister/
COPY loadgen/Cargo.toml loadgen/
COPY e2e/Cargo.toml e2e/
COPY migrations migrations
# Every workspace member needs a placeholder source for the dependency build.
RUN for c in shared e2e; do mkdir -p $c/src && echo "" > $c/src/lib.rs; done \
 && for c in gateway persister loadgen; do mkdir -p $c/src && echo "fn main() {}" > $c/src/main.rs; done \
 && cargo build --release --locked -p gateway -p persister \
 && rm -rf shared/src gateway/src persister/src loadgen/src e2e/src
COPY . .
# Make cargo see the real sources as newer than the placeholder builds.
RUN touch shared/src/lib.rs gateway/src/main.rs persister/src/main.rs \
 && cargo build --release --locked -p gateway -p persister

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home chat \
 && mkdir -p /var/lib/chat/uploads && chown chat /var/lib/chat/uploads
COPY --from=builder /src/target/release/gateway /src/target/release/persister /usr/local/bin/
USER chat
ENV GATEWAY_ADDR=0.0.0.0:8080 PERSISTER_ADDR=0.0.0.0:9090 LOG_FORMAT=json \
    CHAT_UPLOAD_DIR=/var/lib/chat/uploads
EXPOSE 8080 9090
CMD ["gateway"]
