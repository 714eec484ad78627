"""Settings for the test suite: the product's settings, pointed at test-only places.

Set through the environment (not by overriding names after import) so that a Celery worker
process started by a test inherits exactly the same configuration.
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RLHF_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("RLHF_MODELS_DIR", str(ROOT / "var" / "models"))
if not os.environ.get("REDIS_URL"):
    # The machine's Redis (a database of the tests' own), or, on a machine without one, a
    # private redis-server for this session; worker processes inherit its URL.
    from webapp import localredis

    if localredis.answers(localredis.DEFAULT_URL) is None:
        os.environ["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    else:
        import atexit

        _private = localredis.start_private(Path(os.environ["RLHF_VAR_DIR"]) / "redis")
        atexit.register(_private.stop)
        os.environ["REDIS_URL"] = _private.url
# The Hugging Face cache the registry lists: the tests' own (empty unless a test fills it).
os.environ["HF_HUB_CACHE"] = str(Path(os.environ["RLHF_VAR_DIR"]) / "hf-hub")
os.environ["HF_DATASETS_CACHE"] = str(Path(os.environ["RLHF_VAR_DIR"]) / "hf-datasets")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite reaches the real hub
os.environ.setdefault("RLHF_TRAINING_QUEUE", f"test-training-{os.getpid()}")
os.environ.setdefault("RLHF_EVENTS_PREFIX", f"rlhf-test-{os.getpid()}:run-events:")
os.environ.setdefault("RLHF_WORKERS_PREFIX", f"rlhf-test-{os.getpid()}:workers:")
os.environ.setdefault("RLHF_WORKER_PRESENCE_INTERVAL_S", "2")
# Production settings refuse to start without a key; the tests (and their worker) use this one.
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "k7Qw2xZp9R" * 5)

from webapp.settings import *  # noqa: E402,F403

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # One file per test session, so concurrent sessions (and their workers) never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}  # noqa: F405

# Tests create many users; the production hasher is deliberately slow.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The live test server answers each request on a thread of its own; a persistent connection
# would outlive the thread and keep PostgreSQL from dropping the test database at the end.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
