"""Shared fixtures. Tests run against the real Redis (a database of their own) and keep every
file they write under var/test, apart from the prepared models in var/models."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RLHF_VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("RLHF_MODELS_DIR", str(ROOT / "var" / "models"))
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("RLHF_TRAINING_QUEUE", f"test-training-{os.getpid()}")
os.environ.setdefault("RLHF_EVENTS_PREFIX", f"rlhf-test-{os.getpid()}:run-events:")

import pytest  # noqa: E402


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice-pass-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="mallory", password="mallory-pass-1")


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
