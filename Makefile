# Two commands matter: `make run` (whole pipeline on demo data) and `make test` (whole test suite).
# Both build .venv from requirements/lock.txt when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SIZE   ?= 100000

export PYTHONPATH := $(CURDIR)/plugins
# Offline machines: no telemetry.
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: run up test lint bench bench-api lock warehouse-start warehouse-stop warehouse-url docs clean help

help:
	@echo "make run    - run the whole pipeline on demo data with the real Airflow scheduler, print a summary"
	@echo "make up     - keep Airflow (scheduler, DAG processor, triggerer, UI) running on your own sources"
	@echo "make test   - run the whole pytest suite against a real embedded Postgres"
	@echo "make lint   - ruff (incl. AIR rules) and sqlfluff"
	@echo "make bench SIZE=100000 - benchmark the whole pipeline at SIZE customers (bench/results/)"
	@echo "make bench-api API_SIZE=1000000 - load-test the read service (ckp serve), 50 clients, p50/p99/errors"
	@echo "make warehouse-start | warehouse-stop | warehouse-url"

# --compile-bytecode: every Airflow task, dbt call and test process imports Airflow, GX and pandas; where
# PYTHONDONTWRITEBYTECODE is set (CI images often do), each would otherwise recompile them (~5 s a time).
$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements/lock.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ckp run

up: $(STAMP)
	$(BIN)/ckp up

# Two pytest-xdist workers: each test module stays on one worker; the modules that start Airflow's stack run one
# after another on one of them while the other works through the rest, slowest first (tests/xdist_scheduling.py,
# SLOWEST_FIRST in tests/xdist_scheduling.py, README "Tests"). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check plugins dags tests
	$(BIN)/sqlfluff lint dbt_project/models

# A benchmark, never part of `make test`: full pipeline + two incremental days at SIZE customers, with
# plain-COPY and pandas baselines; writes bench/results/<date>-<size>.json and .md (see README "Benchmarks").
bench: $(STAMP)
	$(BIN)/ckp bench --size $(SIZE) $(BENCH_ARGS)

# Load benchmark of the read service (`ckp serve`): serving tables at API_SIZE customers (synthetic, SQL
# generate_series), 50 concurrent clients doing lookup + profile; bench/results/api-<date>-<size>.json/.md.
API_SIZE ?= 1000000
bench-api: $(STAMP)
	$(BIN)/python -m crm_knowledge.serve.bench --size $(API_SIZE) $(BENCH_API_ARGS)

lock:
	$(BIN)/uv pip compile requirements/requirements.in --python-version 3.11 -o requirements/lock.txt

warehouse-start: $(STAMP)
	$(BIN)/ckp warehouse start

warehouse-stop: $(STAMP)
	$(BIN)/ckp warehouse stop

warehouse-url: $(STAMP)
	@$(BIN)/ckp warehouse url

clean:
	-$(BIN)/ckp warehouse stop
	rm -rf var dbt_project/target dbt_project/logs
