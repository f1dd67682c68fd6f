# VisionOps: `make demo` runs the pipelines on the bundled sample, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install init demo test lint format bench status mlflow-ui serve serve-stop dashboard clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# pip's download cache stays in the checkout's state folder too, not in ~/.cache.
PIP := PIP_CACHE_DIR=$(CURDIR)/.visionops/cache/pip $(PY) -m pip

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# One pip command for everything: installing zenml separately leaves
	# conflicting fastapi/opentelemetry versions behind.
	$(PIP) install -q -e '.[dev]'
	$(PY) -m pip check
	@touch $@

install: $(STAMP) ## Create .venv (if missing) and install the project; a no-op when up to date

# `zenml init` through visionops, so that its global config goes to .visionops/ too
# (the bare CLI would write ~/.config/zenml, a store the local stack is not in).
ZENML_INIT := import visionops; from zenml.cli.cli import cli; cli(["init"])

init: install ## Initialise ZenML here and apply the local stack (state stays in .visionops/)
	@test -d .zen || $(PY) -c '$(ZENML_INIT)'
	$(PY) run.py --stack local

demo: init ## Run every pipeline on the bundled sample data, offline
	$(PY) run.py --pipeline all
	$(PY) run.py --status

demo-classify: init ## Classify the bundled chest X-rays: ingestion, training (3 epochs), deployment
	$(PY) run.py --pipeline ingestion --source data/sample/chest-xray --set 'split.group_by=person\d+'
	$(PY) run.py --pipeline training --set train.epochs=3
	$(PY) run.py --pipeline deployment
	$(PY) run.py --status

demo-segment: init ## Segment the bundled shoe soles: ingestion, training (3 epochs), deployment
	$(PY) run.py --pipeline ingestion --source data/sample/shoe-soles --set task=segment
	$(PY) run.py --pipeline training --set train.epochs=3
	$(PY) run.py --pipeline deployment
	$(PY) run.py --status

test: install ## Run the test suite (installs the Debian packages it uses, as root)
	@bash tests/system_packages.sh
	@# As root the Airflow test runs (it needs the Docker engine): Airflow's venv first.
	@if [ "$$(id -u)" = 0 ]; then $(PY) run.py --airflow install; fi
	$(PY) -m pytest -q

lint: install ## Lint and check formatting (ruff)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## Format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install ## Run the benchmarks in bench/ (a few minutes each)
	$(PY) bench/ingestion.py
	$(PY) bench/anonymize_quality.py
	$(PY) bench/training_overhead.py
	$(PY) bench/int8_accuracy.py
	$(PY) bench/bootstrap.py
	$(PY) bench/serving.py

.PHONY: airflow airflow-stop
airflow: install ## Start the local Airflow (installed into .visionops/airflow/venv once)
	$(PY) run.py --airflow

airflow-stop: install ## Stop the local Airflow
	$(PY) run.py --airflow stop

status: install ## Show the active stack, latest dataset and champion
	$(PY) run.py --status

# The Bento built last (by any task's deployment), unless BENTO=<name>[:version] is given.
LATEST_BENTO = import json, sys; text = sys.stdin.read().strip(); \
	b = json.loads(text) if text.startswith("[") else []; \
	print(max(b, key=lambda x: x["creation_time"])["tag"] if b else "board-detector:latest")
BENTO ?= $(shell BENTOML_HOME=$(CURDIR)/.visionops/bentoml BENTOML_DO_NOT_TRACK=true \
	$(VENV)/bin/bentoml list -o json 2>/dev/null | $(PY) -c '$(LATEST_BENTO)')
serve: install ## Serve the Bento built last offline on http://127.0.0.1:3000 (web page at /ui/)
	BENTOML_HOME=$(CURDIR)/.visionops/bentoml BENTOML_DO_NOT_TRACK=true YOLO_OFFLINE=1 \
		ORT_DISABLE_TELEMETRY=1 XDG_CACHE_HOME=$(CURDIR)/.visionops/cache \
		$(VENV)/bin/bentoml serve $(BENTO) --host 127.0.0.1 --port 3000

serve-stop: ## Stop a server started by `run.py --pipeline deployment --serve`
	@for pid in .visionops/bentoml/serve-*.pid; do [ -f "$$pid" ] && kill -- -"$$(cat $$pid)" 2>/dev/null; rm -f "$$pid"; done; true

mlflow-ui: install ## Serve the MLflow UI of the active stack on http://127.0.0.1:5000
	$(PY) run.py --mlflow-ui

dashboard: install ## Start the ZenML dashboard and MLflow UI in the background (stop: run.py --dashboard stop)
	$(PY) run.py --dashboard

clean: ## Remove local state (ZenML store, datasets, runs, the Docker tests' wheelhouse); keeps .venv and Docker images
	rm -rf .visionops .zen runs mlruns
