# Multi-stage build: a full Rust toolchain to build, a small non-root runtime image to run.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY deploy ./deploy
RUN cargo build --release --locked && strip target/release/confluence-audit-forwarder

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/confluence-audit-forwarder /usr/local/bin/confluence-audit-forwarder
USER 65532:65532
EXPOSE 9464
VOLUME ["/var/lib/confluence-audit-forwarder"]
ENTRYPOINT ["/usr/local/bin/confluence-audit-forwarder"]
CMD ["run", "--config", "/etc/confluence-audit-forwarder/config.toml"]
