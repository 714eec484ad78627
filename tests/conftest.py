"""Shared fixtures. Tests run against the real Redis (a database of their own) and keep every
file they write under var/test, apart from the prepared models in var/models (tests/settings.py
points the product there)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def collected_static():
    """The static files as make run serves them: collected under hashed names, gzipped,
    with the manifest pages need to name them (the settings refuse to guess)."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


def _app_serves_static(app):
    return app  # whitenoise, inside the app, serves /static/ as it does for make run


@pytest.fixture(scope="session")
def live_server(request, collected_static):
    """pytest-django's live server, except that static files come from whitenoise (hashed
    names, compression, cache headers) rather than from Django's finders."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost",
                        start=False)
    server.thread.static_handler = _app_serves_static
    server.start()
    yield server
    server.stop()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-pass-1")


@pytest.fixture
def datasets_dir(settings, tmp_path) -> Path:
    """Uploads of this test land in its own temporary directory."""
    settings.DATASETS_DIR = tmp_path / "datasets"
    return settings.DATASETS_DIR


def _token_client(username: str):
    from django.test import Client

    from webapp.accounts.services import api_token_create

    _, raw = api_token_create(username=username)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def api(user):
    """A Django test client that authenticates as ``user`` with an API token."""
    return _token_client(user.username)


@pytest.fixture
def other_api(other_user):
    return _token_client(other_user.username)


def _database_url_for_worker() -> str:
    """The URL of the test database this session created, for a worker in another process."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class WorkerProcess:
    """A real Celery worker (prefork, one task per child, as `make run` starts it) in a process
    of its own, sharing the test database and Redis; its log is kept for assertions."""

    def __init__(self, queue: str, log_path: Path, *, name: str, env: dict | None = None):
        import subprocess
        import sys

        self.queue, self.log_path = queue, log_path
        self.hostname = f"{name}-{os.getpid()}@test"
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "--queues", queue,
             "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", self.hostname],
            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 90) -> WorkerProcess:
        import time

        deadline = time.monotonic() + timeout
        while "ready." not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not start:\n" + self.log())
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def worker_env() -> dict[str, str]:
    """What a worker (or reaper) process needs to share this test session's database."""
    return {"DATABASE_URL": _database_url_for_worker()}


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """The session's worker on the session's training queue."""
    with django_db_blocker.unblock():
        env = worker_env()
    proc = WorkerProcess(os.environ["RLHF_TRAINING_QUEUE"],
                         tmp_path_factory.mktemp("worker") / "worker.log", name="test", env=env)
    proc.wait_ready()
    yield proc.proc
    proc.stop()


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """Tests that need a worker also need committed rows it can read."""
    return celery_worker_process


def wait_for(predicate, *, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def upload_prompts(client, rows, *, name="prompts"):
    """Upload rows as a prompts JSONL through the API; returns the dataset JSON."""
    import io
    import json

    body = "\n".join(json.dumps(r) for r in rows).encode()
    f = io.BytesIO(body)
    f.name = "prompts.jsonl"
    response = client.post("/api/datasets", {"file": f, "name": name, "kind": "prompts"})
    assert response.status_code == 201, response.content
    return response.json()


PROMPTS = [{"prompt": f"Summarize: item {i} is a small story about a cat and a dog."}
           for i in range(12)]
