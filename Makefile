# The README's two commands: `make run` and `make test`.
# Everything they fetch goes under .cache/ (git-ignored); both are idempotent.

SHELL := /bin/bash
CACHE := $(CURDIR)/.cache
PYTHON ?= python3
C2PA_PYTHON_VERSION := 0.38.1
OPENAI_PYTHON_VERSION := 3.51.0
PLAYWRIGHT_VERSION := 1.64.1
REFERENCE_VENV := $(CACHE)/c2pa-python
ORT_VERSION := 1.31.1
ORT_DIR := $(CACHE)/onnxruntime
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.$(ORT_VERSION)
# likeness also looks in ./.cache/onnxruntime/ when this is unset.
export ORT_DYLIB_PATH := $(ORT_LIB)

ARGS ?=

.PHONY: setup setup-test postgres chromium run test bench load build clippy clean

## What the gateway needs to run: ONNX Runtime, taken from the onnxruntime
## wheel on the Python registry (ort's own download cannot work here).
setup: $(ORT_LIB)

$(ORT_LIB):
	@mkdir -p $(ORT_DIR)/wheel
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		onnxruntime==$(ORT_VERSION) -d $(ORT_DIR)/wheel
	$(PYTHON) -c 'import glob, shutil, sys, zipfile; \
		wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/onnxruntime-*.whl")[0]); \
		src = wheel.open("onnxruntime/capi/libonnxruntime.so." + sys.argv[2]); \
		shutil.copyfileobj(src, open(sys.argv[3] + ".part", "wb"))' $(ORT_DIR)/wheel $(ORT_VERSION) $@
	@mv $@.part $@
	@rm -rf $(ORT_DIR)/wheel

## What the tests need on top: the C2PA reference reader (c2pa-python) that
## the end-to-end tests compare against, the official openai SDK that the
## OpenAI-compatible front door is tested with, and a real browser for the
## verify page (Debian's Chromium, driven by Playwright).
setup-test: setup $(REFERENCE_VENV)/.installed postgres chromium

## Debian's Chromium (Playwright's own browser download cannot work here).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## The PostgreSQL suite needs a server: 127.0.0.1:5432 (database `test`,
## trust auth), started here if it is installed but stopped. Point the tests
## at another with LIKENESS_TEST_POSTGRES=postgres://USER@HOST:PORT/DB.
postgres:
	@if [ -z "$$LIKENESS_TEST_POSTGRES" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
		&& command -v pg_lsclusters >/dev/null; then \
		set -- $$(pg_lsclusters --no-header | head -1); \
		pg_ctlcluster --skip-systemctl-redirect "$$1" "$$2" start; fi

$(REFERENCE_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: \
		c2pa-python==$(C2PA_PYTHON_VERSION) openai==$(OPENAI_PYTHON_VERSION) playwright==$(PLAYWRIGHT_VERSION)
	@touch $@

build: setup
	cargo build --release -p likeness-cli

## Start the gateway with its embedded defaults (127.0.0.1:8080, ./data,
## a development signing key (--dev), tenant `dev`). Extra flags: make run ARGS="--listen 0.0.0.0:8080"
run: build
	cargo run --release -q -p likeness-cli -- serve --dev $(ARGS)

## The whole test suite.
test: setup-test
	LIKENESS_C2PA_PYTHON=$(REFERENCE_VENV)/bin/python cargo test --workspace --no-fail-fast

## Benchmarks: C2PA sign/verify, generation latency (p50/p99).
bench: setup
	cargo bench -p likeness-cli --bench gateway

## A minute of steady load on the release binary with the built-in generator:
## p50/p95/p99, throughput, errors, peak memory. LIKENESS_LOAD_SECS, LIKENESS_LOAD_RATE.
load: setup
	cargo bench -p likeness-cli --bench load

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(CACHE)
