# Multi-stage build of menshen. The build stage matches .ci/run: cmake for libz-ng-sys.
#   docker build -t menshen .
#   docker run --read-only --tmpfs /tmp -v menshen-logs:/var/log/menshen \
#     -v $PWD/menshen.toml:/etc/menshen/menshen.toml:ro -v $PWD/live:/etc/menshen/certs/live:ro \
#     -p 443:8443 -p 80:8080 menshen
# The image runs as uid 10001 with a read-only root filesystem: it writes only the access log
# (/var/log/menshen, a volume) and pingora's upgrade socket (/tmp, a tmpfs).
# Base images pinned to versions (not floating tags such as 1-bookworm or bookworm-slim), so a
# rebuild is the same build; tests/kubernetes.rs checks it.
FROM rust:1.95.0-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY tests ./tests
COPY benches ./benches
RUN cargo build --release --locked --bin menshen \
 && objcopy --only-keep-debug target/release/menshen target/release/menshen.debug \
 && objcopy --strip-all --add-gnu-debuglink=target/release/menshen.debug target/release/menshen

FROM debian:12.12-slim
RUN apt-get update -qq && apt-get install -y -qq ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin menshen \
 && mkdir -p /etc/menshen/certs /var/log/menshen && chown menshen /var/log/menshen
# The stripped binary (make dist's); its debug info stays in the build stage, as
# target/release/menshen.debug, for `docker build --target build` and profiling.
COPY --from=build /src/target/release/menshen /usr/local/bin/menshen
COPY certs/approved /etc/menshen/certs/approved
USER 10001
EXPOSE 8443 8080 9901
VOLUME ["/var/log/menshen"]
# Needs [admin] in the config; asks the running proxy's /healthz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/menshen", "healthz", "--config", "/etc/menshen/menshen.toml"]
ENTRYPOINT ["/usr/local/bin/menshen"]
CMD ["--config", "/etc/menshen/menshen.toml"]
