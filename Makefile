# Personalization warehouse: the commands README.md starts with.
#   make run    whole pipeline (generates sample data when $PZ_DATA_DIR/raw is empty)
#   make test   the whole test suite
#   make ui     the Dagster web UI on 127.0.0.1:3000
SHELL := /bin/bash
export PZ_DATA_DIR ?= data
export DAGSTER_HOME ?= $(abspath $(PZ_DATA_DIR))/dagster_home
# uv from PATH, else the one pip installs as a module (`python3 -m uv`).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run full-refresh test ui lint manifest sample clean bench

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --quiet
	touch $@

setup: $(VENV)/.synced

manifest: setup  ## dbt manifest for the Dagster code location (dbt parse)
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m dagster_project.cli prepare

run: setup  ## the whole pipeline; sample data first if $(PZ_DATA_DIR)/raw is empty
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m dagster_project.cli run

full-refresh: setup  ## the whole pipeline, rebuilding the incremental event models from scratch
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m dagster_project.cli run --full-refresh

test: setup
	@mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/ruff check dagster_project models_ml tests
	$(PY) -m dagster_project.cli prepare
	$(VENV)/bin/pytest -q

ui: manifest
	$(VENV)/bin/dagster dev -m dagster_project.definitions -h 127.0.0.1 -p 3000

lint: setup
	$(VENV)/bin/ruff check dagster_project models_ml tests
	$(VENV)/bin/ruff format --check dagster_project models_ml tests

sample: setup  ## only generate sample data into $(PZ_DATA_DIR)
	$(PY) -m dagster_project.sample_data --out $(PZ_DATA_DIR)

clean:
	rm -rf $(PZ_DATA_DIR)/warehouse $(PZ_DATA_DIR)/published dbt_project/target

bench: setup  ## size tiers S and M (TIERS=S for a smoke run; BENCH_ARGS=--large adds L)
	$(PY) -m dagster_project.cli prepare
	$(PY) bench/run.py --tiers $(or $(TIERS),S,M) $(BENCH_ARGS)
