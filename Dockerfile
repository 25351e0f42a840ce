# Multi-stage build of menshen. The build stage matches .ci/run: cmake for libz-ng-sys.
#   docker build -t menshen .
#   docker run -p 443:8443 -v $PWD/conf:/etc/menshen:ro -v $PWD/certs:/etc/menshen/certs:ro menshen
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY tests ./tests
COPY benches ./benches
RUN cargo build --release --locked --bin menshen

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /nonexistent --shell /usr/sbin/nologin menshen \
 && mkdir -p /etc/menshen/certs /var/log/menshen && chown menshen /var/log/menshen
COPY --from=build /src/target/release/menshen /usr/local/bin/menshen
COPY certs/approved /etc/menshen/certs/approved
USER 10001
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/menshen"]
CMD ["--config", "/etc/menshen/menshen.toml"]
