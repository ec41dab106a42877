# nightlab — the two commands of the README:
#   make demo   creates .venv, installs, runs examples/digits offline, prints the leaderboard
#   make test   creates .venv, installs everything the tests need, runs them all
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build by default; GPU users: make TORCH_SPEC="torch==2.13.0 --index-url ..." ...
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }

.PHONY: install demo test lint bench mlflow-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q "$(TORCH_SPEC)" $(QUIET)
	$(PIP) install -q -e ".[dev,examples]" $(QUIET)
	touch $@

install: $(VENV)/.installed

demo: install
	rm -rf .demo && mkdir -p .demo && cp -r examples/digits .demo/digits
	$(BIN)/nightlab run .demo/digits
	@echo "Browse the runs in MLflow's UI: make mlflow-ui  (http://127.0.0.1:5000)"

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench.py

# The MLflow UI needs the full mlflow package (nightlab itself logs with mlflow-skinny).
mlflow-ui: install
	$(PIP) install -q -e ".[ui]" $(QUIET)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.demo/digits/.nightlab/mlflow.db \
		--host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf $(VENV) .demo .pytest_cache
