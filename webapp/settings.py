"""One settings module, read from the environment. A bad value stops start-up with
ImproperlyConfigured instead of surfacing later as a puzzling failure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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
    if not DEBUG and env_bool("RLHF_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")
    SECRET_KEY = "insecure-local-development-key-change-me"
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

# Upload limits, in bytes: the file as sent, and its content after gzip decompression.
UPLOAD_MAX_BYTES = env_int("RLHF_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
UPLOAD_MAX_DECOMPRESSED_BYTES = env_int("RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES", 200 * 1024 * 1024)
UPLOAD_MAX_ROWS = env_int("RLHF_UPLOAD_MAX_ROWS", 1_000_000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "webapp.accounts",
    "webapp.datasets",
    "webapp.runs",
    "webapp.labeling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.middleware.UploadLimitMiddleware",
    "webapp.middleware.ApiGZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing directory

def _plotly_js_dir() -> str:
    """plotly.js ships inside the plotly Python package; serve it from there (no CDN)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured("the plotly package is missing: run 'make install'")
    return str(Path(list(spec.submodule_search_locations)[0]) / "package_data")


STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/plotly", _plotly_js_dir())]
WHITENOISE_USE_FINDERS = True

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
EVENTS_STREAM_MAXLEN = env_int("RLHF_EVENTS_MAXLEN", 100_000)
EVENTS_STREAM_TTL_S = env_int("RLHF_EVENTS_TTL_S", 24 * 3600)
SSE_KEEPALIVE_S = env_int("RLHF_SSE_KEEPALIVE_S", 15)

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
