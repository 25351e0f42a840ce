# menshen: `make run` starts the proxy on the demo config, `make test` runs every check.
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?= conf/menshen.toml

.PHONY: run test build release dist check certs deps demo-certs bench bench-idle bench-compress bench-scale fmt clippy fuzz \
	ci-local ci-missing-tools k8s-validate moto observe-py promtool-rules

# pingora-core pulls libz-ng-sys, which needs cmake to build.
deps:
	@command -v cmake >/dev/null 2>&1 || { \
	  echo "installing cmake (needed by libz-ng-sys)"; \
	  apt-get update -qq && apt-get install -y -qq cmake >/dev/null; }

# The demo PKI (tests/support/demo_pki.rs): made once, but for its OCSP response, renewed daily.
demo-certs: deps
	@test -f certs/demo/ca.crt -a -f certs/demo/access-log.key -a -f certs/demo/clients-ca.crt \
	  -a -n "$$(find certs/demo/live/localhost.ocsp -mtime -1 2>/dev/null)" \
	  || $(CARGO) run --quiet --example demo_certs -- certs/demo

release: deps
	$(CARGO) build --release

# The demo origin (127.0.0.1:8081, the demo config's upstream "origin") serves conf/demo-origin/
# for as long as the proxy runs, so /origin/ answers instead of 502.

# What ships: target/dist/menshen without debug info or symbols, and beside it menshen.debug (the
# line tables and symbols, kept as a build artefact for profiling; perf, gdb and addr2line find it
# through the binary's .gnu_debuglink). target/release/menshen, which make run and the benches
# use, keeps its line tables.
dist: release
	@mkdir -p target/dist
	objcopy --only-keep-debug target/release/menshen target/dist/menshen.debug
	objcopy --strip-all --add-gnu-debuglink=target/dist/menshen.debug target/release/menshen target/dist/menshen
	@ls -l target/dist/menshen target/dist/menshen.debug

run: demo-certs release
	@python3 -m http.server 8081 --bind 127.0.0.1 --directory conf/demo-origin >/dev/null 2>&1 & \
	  origin=$$!; trap "kill $$origin 2>/dev/null" EXIT; \
	  echo "demo origin on 127.0.0.1:8081 (pid $$origin)"; \
	  ./target/release/menshen --config $(CONFIG)

check: demo-certs release
	./target/release/menshen check --config $(CONFIG)

certs: demo-certs release
	./target/release/menshen certs --config $(CONFIG)

fmt:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --all-targets -- -D warnings

# Every Kubernetes manifest against the API's schemas, strictly (an unknown or misplaced field is
# an error). The validator comes from PyPI into a venv under target/; when it cannot be
# installed, this fails (it is never skipped).
K8S_VERSION ?= 1.30.0
K8S_VALIDATE := target/k8s-validate/bin/kubernetes-validate
k8s-validate:
	@test -x $(K8S_VALIDATE) || { python3 -m venv target/k8s-validate && \
	  target/k8s-validate/bin/pip install -q kubernetes-validate==1.37.0; }
	$(K8S_VALIDATE) --strict --quiet -k $(K8S_VERSION) deploy/kubernetes/*.yaml

# The S3-compatible server tests/log_shipping.rs ships logs to (moto, from PyPI, in a venv under
# target/). The test fails, never skips, when it is missing.
moto:
	@test -x target/moto/bin/moto_server || { python3 -m venv target/moto && \
	  target/moto/bin/pip install -q 'moto[server]==5.2.5'; }

# The Prometheus text parser and the JSON Schema validator tests/observability.rs checks
# /metrics and the access log with (prometheus_client and jsonschema, from PyPI, in a venv under
# target/). The tests fail, never skip, when it is missing.
observe-py:
	@test -x target/observe-py/bin/python -a -f target/observe-py/.installed || { \
	  python3 -m venv target/observe-py && \
	  target/observe-py/bin/pip install -q prometheus-client==0.21.1 jsonschema==4.23.0 && \
	  touch target/observe-py/.installed; }

# The alert rules in deploy/prometheus, checked and unit-tested (each alert fires on the series
# that should raise it and stays quiet on healthy ones).
promtool-rules:
	promtool check rules deploy/prometheus/menshen-alerts.yaml
	promtool test rules deploy/prometheus/menshen-alerts.test.yaml

# Ends with one total line ("N passed, N failed") over every test binary.
test: deps fmt clippy k8s-validate moto observe-py promtool-rules
	@mkdir -p target
	set -o pipefail; $(CARGO) test --all-targets 2>&1 | tee target/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "cargo test: %d passed, %d failed\n", p, f}' target/test.log

# Programs the tests run besides cargo: cmake builds libz-ng-sys, openssl is the client of the
# refusal tests, chromium renders the status page, promtool (Debian package prometheus, listed
# by ci-missing-tools) tests the alert rules, curl (built with brotli and zstd) decodes compressed
# responses. Missing ones fail their tests, never skip.
# chromium renders the status page; python3 (with venv) installs kubernetes-validate and moto, the
# manifest validator and the S3-compatible server of the tests, under target/.
CI_TOOLS := cmake openssl chromium python3 curl

# The CI packages this machine lacks, one a line (.ci/run installs them as root).
ci-missing-tools:
	@for t in $(CI_TOOLS); do command -v $$t >/dev/null 2>&1 || echo $$t; done
	@python3 -c 'import ensurepip' >/dev/null 2>&1 || echo python3-venv
	@command -v promtool >/dev/null 2>&1 || echo prometheus

# What CI runs, and all of it after installing programs: .ci/run installs the missing tools as
# root, then runs this target (tests/structure.rs checks that it does nothing else). Here it
# checks that the tools are there, adds the toolchain's components and runs make test.
ci-local:
	@missing="$$($(MAKE) -s ci-missing-tools | tr '\n' ' ')"; \
	  if [ -n "$$missing" ]; then \
	    echo "ci-local: missing $$missing: apt-get install $$missing (or run .ci/run as root)"; exit 1; \
	  fi
	@command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy >/dev/null 2>&1 || true
	CARGO_TERM_COLOR=never $(MAKE) test

PEERS ?= ../shared/bench/peers.py
ROUNDS ?= 3

# Criterion benches of the hot path, the side-by-side load bench against nginx and HAProxy, full
# TLS handshakes against nginx, and reloads under load
# (needs root: it installs nginx, haproxy and wrk when missing, and pins processes with taskset).
bench: deps release
	$(CARGO) bench --bench policy --bench tls --bench takedown --bench log_chain --bench post_quantum
	@# The bench's access log grows by gigabytes a run (every request is logged and rotated
	@# files are kept for six months): start each run without the last one's.
	rm -f /tmp/menshen-bench/access.log*
	@mkdir -p /tmp/menshen-bench
	@test -f /tmp/menshen-bench/access-log.key || ./target/release/menshen logs key /tmp/menshen-bench/access-log.key
	MENSHEN_CMD="$(CURDIR)/target/release/menshen --config $(CURDIR)/benches/peers.toml" \
	  python3 $(PEERS) --targets nginx,haproxy,caddy,menshen --rounds $(ROUNDS)
	PEERS_DIR=$(dir $(abspath $(PEERS))) python3 benches/full_handshake.py --binary $(CURDIR)/target/release/menshen --rounds $(ROUNDS)
	python3 benches/reload_bench.py --binary $(CURDIR)/target/release/menshen

# Memory per idle keep-alive connection (TLS HTTP/1.1 and HTTP/2), menshen beside nginx (needs
# root: it installs nginx when missing and raises the file limit). IDLE_CONNECTIONS per kind.
IDLE_CONNECTIONS ?= 5000
bench-idle: deps release
	@command -v nginx >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
	PEERS_DIR=$(dir $(abspath $(PEERS))) python3 benches/idle_conns.py --binary $(CURDIR)/target/release/menshen --connections $(IDLE_CONNECTIONS)

# Compressed responses, menshen's gzip beside nginx's at the same level (benches/compress.toml
# sets it): req/s, p99, proxy CPU per request and bytes per response (needs root: it installs
# nginx and wrk when missing, and pins processes with taskset).
bench-compress: deps release
	@command -v nginx >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || { \
	  apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null; }
	PEERS_DIR=$(dir $(abspath $(PEERS))) python3 benches/compress_peers.py --binary $(CURDIR)/target/release/menshen --rounds $(ROUNDS)

# Start time, memory and one-certificate swap latency at 10, 1,000 and 10,000 sites.
bench-scale: deps release
	$(CARGO) build --release --example fleet
	python3 benches/scale_bench.py --binary $(CURDIR)/target/release/menshen --fleet $(CURDIR)/target/release/examples/fleet

# Fuzzing (nightly; cargo-fuzz installed when missing): each target for FUZZ_SECONDS. Inputs
# that crash are left in fuzz/artifacts/TARGET/; copy them to fuzz/regressions/TARGET/ so that
# `make test` (tests/fuzz_corpus.rs) keeps them fixed.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := request_head target chunked h2_request config
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && \
	  $(CARGO) +nightly fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
