"""One settings module, read from the environment. A bad value stops start-up with
ImproperlyConfigured instead of surfacing later as a puzzling failure."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from training.devices import check_spec

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_json(name: str, default: object) -> object:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} must be JSON: {exc}") from None


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A public key lets anyone forge sessions, so only a debug (local) server may use one.
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))' (make run keeps one "
            "in var/secret-key), or set DJANGO_DEBUG=true on a development machine.")
    SECRET_KEY = "insecure-development-key-used-only-with-DJANGO_DEBUG"
ALLOWED_HOSTS = env_str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env_str("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Everything the product writes (database, uploads, models, checkpoints) lives under VAR_DIR.
VAR_DIR = Path(env_str("RLHF_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite cannot create its directory
MEDIA_ROOT = VAR_DIR / "media"
DATASETS_DIR = VAR_DIR / "datasets"
CHECKPOINTS_DIR = VAR_DIR / "checkpoints"
MODELS_DIR = Path(env_str("RLHF_MODELS_DIR", str(VAR_DIR / "models"))).resolve()
# Extra local Hugging Face model directories an admin offers in the registry:
# {"my-model-id": "/abs/path/to/dir", ...}
LOCAL_MODELS = env_json("RLHF_LOCAL_MODELS", {})
if not isinstance(LOCAL_MODELS, dict):
    raise ImproperlyConfigured("RLHF_LOCAL_MODELS must be a JSON object of id: directory")

# The Hugging Face hub cache the registry lists (hf:<org>/<name>) and downloads into; as
# huggingface_hub finds it: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.
# Workers read the same directory (shared storage, as VAR_DIR is).
HF_HUB_CACHE = Path(env_str("HF_HUB_CACHE", "") or Path(
    env_str("HF_HOME", "") or Path.home() / ".cache" / "huggingface") / "hub").expanduser()

# Data sets by hub id (POST /api/datasets {"hub_id"}) are read from this cache first.
HF_DATASETS_CACHE = Path(env_str("HF_DATASETS_CACHE", "") or Path(
    env_str("HF_HOME", "") or Path.home() / ".cache" / "huggingface") / "datasets").expanduser()

# Hub downloads (POST /api/models {"hub_id"}): the largest model a worker fetches, and how
# many downloads one user may have waiting or running at once. HF_TOKEN (gated models) is read
# from the workers' environment only.
MAX_DOWNLOAD_BYTES = env_int("RLHF_MAX_DOWNLOAD_GB", 100) * 2**30
MAX_DOWNLOADS_PER_USER = env_int("RLHF_MAX_DOWNLOADS_PER_USER", 2)

# Upload limits, in bytes: the file as sent, and its content after gzip decompression.
UPLOAD_MAX_BYTES = env_int("RLHF_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
UPLOAD_MAX_DECOMPRESSED_BYTES = env_int("RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES", 200 * 1024 * 1024)
UPLOAD_MAX_ROWS = env_int("RLHF_UPLOAD_MAX_ROWS", 1_000_000)
# One line of a JSONL or CSV file, checked before any parser sees it.
UPLOAD_MAX_LINE_BYTES = env_int("RLHF_UPLOAD_MAX_LINE_BYTES", 1024 * 1024)
# Nesting of JSON values, in uploads and API bodies: deep nesting crashes parsers (recursion).
JSON_MAX_DEPTH = env_int("RLHF_JSON_MAX_DEPTH", 32)

# What one run (or labeling batch) may ask of a worker, whoever asks; a request over a cap is
# a 422 that names the setting. The engine's own bounds (training/config.py) still apply.
MAX_STEPS = env_int("RLHF_MAX_STEPS", 10_000)
MAX_PROMPTS_PER_STEP = env_int("RLHF_MAX_PROMPTS_PER_STEP", 256)
MAX_GROUP_SIZE = env_int("RLHF_MAX_GROUP_SIZE", 64)
MAX_NEW_TOKENS = env_int("RLHF_MAX_NEW_TOKENS", 4096)
MAX_COMPLETIONS_PER_STEP = env_int("RLHF_MAX_COMPLETIONS_PER_STEP", 1024)
MAX_SEQUENCE_LENGTH = env_int("RLHF_MAX_SEQUENCE_LENGTH", 8192)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# A request body that is not a file (a JSON body, form fields) and how many parts it may have;
# past them the API answers 413 or 400 in JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("RLHF_REQUEST_MAX_BYTES", 2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
DATA_UPLOAD_MAX_NUMBER_FILES = 5

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "ninja",  # its Swagger UI templates and static files: /api/docs without a CDN
    "axes",
    "webapp.accounts",
    "webapp.datasets",
    "webapp.runs",
    "webapp.labeling",
]

MIDDLEWARE = [
    # First, so it sees every answer under /api/ (and turns any non-JSON error into JSON).
    "webapp.middleware.ApiErrorsAsJsonMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.middleware.CanonicalIdMiddleware",
    "webapp.middleware.UploadLimitMiddleware",
    "webapp.middleware.StrictJsonBodyMiddleware",
    "webapp.middleware.ApiGZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web process read while a worker writes metrics; IMMEDIATE takes the write
    # lock up front so concurrent writers wait (timeout) instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests share the database with a real Celery worker process, so it must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# django-axes first: it refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend",
                           "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes; the Docker image keeps it out of the data volume.
STATIC_ROOT = Path(env_str("RLHF_STATIC_ROOT", str(VAR_DIR / "static"))).resolve()
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing directory
# Everything the browser loads comes from here (air-gapped users): our CSS and JS, vendored
# htmx and plotly.js (static/vendor/README.md), Swagger UI from django-ninja's app.
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic (make run, the Dockerfile, the test session) writes each file under a name
# with its content's hash, gzipped beside it; whitenoise serves those compressed with a
# cache lifetime of ten years (a changed file gets a new name). Without DEBUG a page that
# names a file collectstatic has not seen is an error, not a silent 404.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Redis and Celery ---
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Training tasks run for hours: acknowledge on receipt (Redis would redeliver an unacked task
# after its visibility timeout and the run would train twice); crashes are the heartbeat's job.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("RLHF_DEFAULT_QUEUE", "default")
TRAINING_QUEUE = env_str("RLHF_TRAINING_QUEUE", "training")
CELERY_TASK_ROUTES = {"workers.tasks.train_run_task": {"queue": TRAINING_QUEUE},
                      "workers.tasks.generate_batch_task": {"queue": TRAINING_QUEUE}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Live metric streams: one Redis Stream per run, trimmed and expired after the run ends.
EVENTS_STREAM_PREFIX = env_str("RLHF_EVENTS_PREFIX", "rlhf:run-events:")
# Each worker says it is up (name, queues, devices) every RLHF_WORKER_PRESENCE_INTERVAL_S;
# RLHF_WORKER_DEVICES says which devices it offers (training/devices.py).
WORKER_PRESENCE_PREFIX = env_str("RLHF_WORKERS_PREFIX", "rlhf:workers:")
WORKER_PRESENCE_INTERVAL_S = env_int("RLHF_WORKER_PRESENCE_INTERVAL_S", 15)
try:
    WORKER_DEVICES = check_spec(env_str("RLHF_WORKER_DEVICES", "auto"))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
EVENTS_STREAM_MAXLEN = env_int("RLHF_EVENTS_MAXLEN", 100_000)
EVENTS_STREAM_TTL_S = env_int("RLHF_EVENTS_TTL_S", 24 * 3600)
SSE_KEEPALIVE_S = env_int("RLHF_SSE_KEEPALIVE_S", 15)
# Each open live page holds one Redis connection while it waits for the next step (a blocking
# XREAD); the pool of the web process is bounded so viewers cannot exhaust Redis.
SSE_MAX_REDIS_CONNECTIONS = env_int("RLHF_SSE_MAX_REDIS_CONNECTIONS", 2000)

# --- crash recovery (webapp/jobs.py) ---
# A running job writes a heartbeat every RLHF_HEARTBEAT_INTERVAL_S; the reaper (manage.py
# reap, every RLHF_REAPER_INTERVAL_S) calls one whose heartbeat is older than
# RLHF_HEARTBEAT_TIMEOUT_S crashed and starts a new attempt, up to RLHF_MAX_ATTEMPTS in all.
RLHF_HEARTBEAT_INTERVAL_S = env_int("RLHF_HEARTBEAT_INTERVAL_S", 5)
RLHF_HEARTBEAT_TIMEOUT_S = env_int("RLHF_HEARTBEAT_TIMEOUT_S", 120)
RLHF_REAPER_INTERVAL_S = env_int("RLHF_REAPER_INTERVAL_S", 30)
RLHF_MAX_ATTEMPTS = env_int("RLHF_MAX_ATTEMPTS", 3)
if not 1 <= RLHF_HEARTBEAT_INTERVAL_S < RLHF_HEARTBEAT_TIMEOUT_S:
    raise ImproperlyConfigured("RLHF_HEARTBEAT_INTERVAL_S must be at least 1 and below "
                               "RLHF_HEARTBEAT_TIMEOUT_S, or live runs would be reaped")
if RLHF_REAPER_INTERVAL_S < 1 or RLHF_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("RLHF_REAPER_INTERVAL_S and RLHF_MAX_ATTEMPTS must be >= 1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# Open sign-up on the login page; turn off where an admin creates the accounts.
ALLOW_SIGNUP = env_bool("RLHF_ALLOW_SIGNUP", True)

# --- logins: throttled by django-axes ---
# RLHF_LOGIN_FAILURE_LIMIT failed logins from one address, or for one account, lock that
# address or account out for RLHF_LOGIN_COOLOFF_S seconds (429 with Retry-After).
AXES_FAILURE_LIMIT = env_int("RLHF_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("RLHF_LOGIN_COOLOFF_S", 60))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.accounts.views.login_locked_out"
AXES_VERBOSE = False

# --- HTTPS and proxies ---
# RLHF_BEHIND_PROXY: one reverse proxy in front sets X-Forwarded-For/-Proto (and strips what
# clients send). Only then are those headers believed, for the client's address (login
# throttling) and for whether the request came over HTTPS.
BEHIND_PROXY = env_bool("RLHF_BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    AXES_IPWARE_PROXY_COUNT = 1
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
# RLHF_HTTPS: the site is served over HTTPS. Cookies go over HTTPS only, plain HTTP is
# redirected, and browsers are told (HSTS) to use HTTPS for RLHF_HSTS_SECONDS. The preload
# flag only consents to browser preload lists; a site is listed only when someone submits it.
HTTPS = env_bool("RLHF_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("RLHF_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("RLHF_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("RLHF_HSTS_PRELOAD", True)
