# Grad-CAM video service. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPO ?= model_repository
MODEL ?= efficientnet-lite0
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
DASHBOARD_PORT ?= 8501
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements/constraints.txt requirements/dev.txt client/pyproject.toml server/pyproject.toml dashboard/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt \
		-e client -e "server[cpu,triton]" -e dashboard -r requirements/dev.txt
	touch $@

setup: $(BIN)/.installed ## create .venv with the server, client, dashboard and test tools

export: setup ## export the offline default model (EfficientNet-Lite0, real weights) into model_repository/
	$(BIN)/gradcam-server export --model $(MODEL) --repository $(REPO) --methods all --if-outdated

serve: export ## run Triton on model_repository/ in the foreground (Ctrl-C stops it)
	$(BIN)/gradcam-server serve --repository $(REPO) --grpc-port $(GRPC_PORT) \
		--http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

demo: export ## set up, serve the offline default and turn the sample cat clip into a heat-map video in out/
	$(BIN)/python scripts/demo.py --repository $(REPO) --model $(MODEL) --out out \
		--grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) \
		--dashboard-port $(DASHBOARD_PORT)

dashboard: setup ## run the Streamlit dashboard against GRADCAM_URL (default localhost:8001)
	$(BIN)/gradcam-dashboard --port $(DASHBOARD_PORT)

test: setup ## run every test tier but the cross-check (unit + real Triton integration)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

crosscheck: setup ## compare every CAM method with pytorch-grad-cam (installs PyTorch's CPU build; never skips)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -r requirements/crosscheck.txt
	$(BIN)/python -m pip install --quiet --no-deps grad-cam==1.5.7
	$(BIN)/python -m pytest tests/crosscheck $(PYTEST_ARGS)

compose-check: ## validate the CPU stack (docker-compose.yml) and the GPU one (+ docker-compose.gpu.yml)
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml -f docker-compose.gpu.yml config -q

wheelhouse: ## download every wheel (and Debian package) the images need into wheelhouse/, for offline builds
	bash scripts/wheelhouse.sh

base-image: ## build debian:bookworm-slim from Debian's packages (machines without a registry)
	bash scripts/docker-base-image.sh

images: ## build the Triton and dashboard images of this host's stack (fills wheelhouse/ first)
	bash scripts/compose.sh build

compose-up: ## build what changed, start Triton and the dashboard in containers (GPU stack if an NVIDIA GPU is here)
	bash scripts/compose.sh up

compose-down: ## stop the container stack (the exported models stay in model_repository/)
	bash scripts/compose.sh down

check-quickstart: ## fresh clone + fresh venv: make demo, make test (smoke), check the outputs
	bash scripts/check_quickstart.sh

lint: setup ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: help setup export serve demo dashboard test crosscheck compose-check wheelhouse \
	base-image images compose-up compose-down check-quickstart lint format
