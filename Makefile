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

.PHONY: install sandbox-deps system-deps clis slurm-up slurm-down demo demo-lightning test lint bench mlflow-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(wildcard tests/plugins/*/pyproject.toml) | $(BIN)/python
	$(PIP) install -q "$(TORCH_SPEC)" $(QUIET)
	$(PIP) install -q -e ".[all,dev,examples]" $(QUIET)
	# the tests' own plugin packages (entry points nightlab.workers / executors / notifiers)
	$(foreach p,$(wildcard tests/plugins/*/pyproject.toml),$(PIP) install -q -e $(dir $(p)) $(QUIET);)
	touch $@

install: $(VENV)/.installed

demo: install sandbox-deps
	rm -rf .demo && mkdir -p .demo && cp -r examples/digits .demo/digits
	# 12 trials (max_trials; a trial past the screen is re-run on 2 new seeds before it is
	# kept), then finish-up: one more seed for the top 2, the final pick's held-out test_acc,
	# and the report in .demo/digits/.nightlab/reports/
	$(BIN)/nightlab run .demo/digits --run-hours 1 --finishup-minutes 20 --final-rounds 1 --confirm-top 2
	@echo "The report: open .demo/digits/.nightlab/reports/*/report.html in a browser"
	@echo "Browse the runs in MLflow's UI: make mlflow-ui  (http://127.0.0.1:5000)"

# The same night on the user's own stack: Lightning + hydra-zen, hydra overrides, and
# Lightning's MLFlowLogger writing into each trial's own MLflow run.
demo-lightning: install sandbox-deps
	rm -rf .demo/lightning-hydra && mkdir -p .demo && cp -r examples/lightning-hydra .demo/
	$(BIN)/nightlab run .demo/lightning-hydra --max-trials 6 --run-hours 1 \
	  --finishup-minutes 20 --final-rounds 1 --confirm-top 2

# System packages nightlab and its tests drive for real, installed when running as root:
# bubblewrap sandboxes trials and agents; chromium renders report.html headless in tests.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  else echo "not root: cannot install$$missing (sudo apt-get install$$missing); tests that need them are skipped, CI=true fails them"; fi; \
	fi
endef

sandbox-deps:
	$(call apt_install,bubblewrap)

# Slurm + munge + slurmdbd/MariaDB: tests/slurm run a real one-machine cluster
# (scripts/slurm-local.sh, started and stopped by the tests).
SLURM_DEBS := slurmctld slurmd slurm-client munge slurmdbd mariadb-server

system-deps:
	$(call apt_install,bubblewrap chromium $(SLURM_DEBS))

# The coding-agent CLIs the tests run real nights with (tests/agents/clis), pinned, in .tools/
# (git-ignored): codex and Claude Code from npm, aider in its own venv (~690 MB); links to
# the three in .tools/bin. Each is skipped when its pinned version is there already; npm's
# own cache makes a fresh install quick. Override: make clis CODEX_VERSION=... etc.
TOOLS ?= .tools
CODEX_VERSION ?= 0.171.0
CLAUDE_CODE_VERSION ?= 2.1.332
AIDER_VERSION ?= 0.86.2
NPM_CLIS := @openai/codex@$(CODEX_VERSION) @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)

clis:
	@mkdir -p $(TOOLS)/bin; missing=""; \
	for spec in $(NPM_CLIS); do \
	  pkg=$(TOOLS)/npm/node_modules/$${spec%@*}/package.json; \
	  grep -qs "\"version\": *\"$${spec##*@}\"" $$pkg || missing="$$missing $$spec"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif ! command -v npm >/dev/null; then echo "npm not found: cannot install$$missing (the tests that run them are skipped; CI=true fails them)"; \
	else echo "npm install:$$missing"; \
	  npm install --prefix $(TOOLS)/npm --no-audit --no-fund --save-exact --loglevel=error $$missing \
	    || echo "npm install failed: the tests that run$$missing are skipped (CI=true fails them)"; \
	fi; \
	if ! ls -d $(TOOLS)/aider/lib/python*/site-packages/aider_chat-$(AIDER_VERSION).dist-info >/dev/null 2>&1; then \
	  echo "pip install aider-chat==$(AIDER_VERSION) into $(TOOLS)/aider"; \
	  { [ -x $(TOOLS)/aider/bin/python ] || $(PYTHON) -m venv $(TOOLS)/aider; } && \
	  $(TOOLS)/aider/bin/python -m pip --disable-pip-version-check install -q "aider-chat==$(AIDER_VERSION)" $(QUIET) \
	    || echo "aider's install failed: the tests that run it are skipped (CI=true fails them)"; \
	fi; \
	ln -sfn ../npm/node_modules/.bin/codex $(TOOLS)/bin/codex; \
	ln -sfn ../npm/node_modules/.bin/claude $(TOOLS)/bin/claude; \
	ln -sfn ../aider/bin/aider $(TOOLS)/bin/aider

# A local Slurm to try [executor] kind = "slurm" on: then export SLURM_CONF as printed.
slurm-up:
	scripts/slurm-local.sh up

slurm-down:
	scripts/slurm-local.sh down

test: install system-deps clis
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q --durations=15

bench: install
	$(BIN)/python bench/bench.py

# The MLflow UI needs the full mlflow package (nightlab itself logs with mlflow-skinny).
mlflow-ui: install
	$(PIP) install -q -e ".[ui]" $(QUIET)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.demo/digits/.nightlab/mlflow.db \
		--host 127.0.0.1 --port 5000 --workers 1

clean:
	rm -rf $(VENV) .demo .pytest_cache  # .tools (the coding-agent CLIs) stays: rm -rf .tools
