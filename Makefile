# Relearn — the front door for developers and CI.
#   make run     the whole platform on the embedded default (broker, six services, front door)
#   make demo    one patient's course against a running `make run`, printed as a timeline
#   make test    every test, against real PostgreSQL and a real Kafka-protocol broker
#   make test-isolated  each workspace member alone (uv sync --package X): imports its modules, collects its tests
#   make bench   the benchmarks, figures printed
#   make reliability  faults injected while a clinic writes and streams (minutes), the table printed
#   make fuzz    schemathesis against every service and the front door (FUZZ_EXAMPLES per operation), totals printed
#   make lint    ruff and mypy
#   make token   a development bearer token (SCOPE='patient/*.read' PATIENT=<id> for a narrower one)

SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv
SCOPE ?= system/*.read system/*.write
PATIENT ?=

.PHONY: run demo test test-isolated bench reliability fuzz lint format token sync uv

uv:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv

sync: uv
	@$(UV) sync --all-packages --frozen --quiet

run: sync
	$(UV) run --frozen relearn-dev run

demo: sync
	$(UV) run --frozen python -m relearn.devtools.journey

test: sync
	$(UV) run --frozen pytest

test-isolated: uv
	UV=$(UV) .ci/isolated

bench: sync
	$(UV) run --frozen python -m relearn.devtools.bench

reliability: sync
	$(UV) run --frozen python -m relearn.devtools.reliability $(CASES)

fuzz: sync
	$(UV) run --frozen python -m relearn.devtools.fuzz

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy shared/src tools/devtools/src tools/dev-issuer/src services/*/src

format: sync
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

token: sync
	@$(UV) run --frozen relearn-dev token --scope "$(SCOPE)" $(if $(PATIENT),--patient "$(PATIENT)")
