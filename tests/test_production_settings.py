"""Production settings: Django's deployment checks pass, no public key in production, HTTPS
behind a switch, a loopback bind by default, throttled logins, sign-up that can be closed."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a process of its own with the product's settings (not the tests')."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "RLHF_")) and k != "DATABASE_URL"}
    base |= {"DJANGO_SETTINGS_MODULE": "webapp.settings", "RLHF_VAR_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base | env,
                          capture_output=True, text=True, timeout=120)


PRODUCTION = {"DJANGO_DEBUG": "false", "RLHF_HTTPS": "true",
              "DJANGO_ALLOWED_HOSTS": "rlhf.example.org"}


def test_the_deployment_checks_pass_with_the_production_environment(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
                  DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_without_https_the_deployment_checks_name_what_is_missing(tmp_path):
    done = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path,
                  DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                  **(PRODUCTION | {"RLHF_HTTPS": "false"}))
    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    done = manage("check", tmp_path=tmp_path, **PRODUCTION)
    assert done.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in done.stderr


def test_a_debug_server_starts_without_a_key(tmp_path):
    done = manage("check", tmp_path=tmp_path, DJANGO_DEBUG="true")
    assert done.returncode == 0, done.stderr


def test_the_web_server_binds_the_loopback_unless_told_otherwise():
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines()
               if line.startswith("web:"))
    command = web.removeprefix("web:").strip()

    def bind(**env: str) -> str:
        shown = subprocess.run(["sh", "-c", f"echo {command}"], capture_output=True, text=True,
                               env={"PATH": os.environ["PATH"], "PORT": "8123", **env}).stdout
        return shown.split("--bind ")[1].split()[0]

    assert bind() == "127.0.0.1:8123"
    assert bind(RLHF_BIND="0.0.0.0") == "0.0.0.0:8123"


# -- logins are throttled (django-axes) ------------------------------------------------------

def _login(client, username, password, ip):
    return client.post("/accounts/login/", {"username": username, "password": password},
                       REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_five_failures_for_one_account_lock_it_from_every_address(client, user):
    # the first four answer with the form again; the fifth already says it is locked
    statuses = [_login(client, "alice", "wrong", f"10.0.0.{i}").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    locked = _login(client, "alice", "alice-pass-123", "10.0.0.99")  # the right password
    assert locked.status_code == 429
    assert locked["Retry-After"] == "60"
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_five_failures_from_one_address_lock_that_address_for_every_account(client, user,
                                                                            other_user):
    statuses = [_login(client, f"nobody{i}", "wrong", "10.0.1.1").status_code for i in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    assert _login(client, "mallory", "mallory-pass-1", "10.0.1.1").status_code == 429
    # another address, and the account itself, are not locked
    assert _login(client, "mallory", "mallory-pass-1", "10.0.1.2").status_code == 302


@pytest.mark.django_db
def test_a_lock_ends_after_the_cool_off(client, user, settings):
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(5):
        _login(client, "alice", "wrong", "10.0.2.1")
    assert _login(client, "alice", "alice-pass-123", "10.0.2.1").status_code == 429
    time.sleep(1.5)
    assert _login(client, "alice", "alice-pass-123", "10.0.2.1").status_code == 302


@pytest.mark.django_db
def test_four_failures_and_a_success_start_the_count_again(client, user):
    for _ in range(4):
        _login(client, "alice", "wrong", "10.0.3.1")
    assert _login(client, "alice", "alice-pass-123", "10.0.3.1").status_code == 302
    client.logout()
    for _ in range(4):
        assert _login(client, "alice", "wrong", "10.0.3.1").status_code == 200
    assert _login(client, "alice", "alice-pass-123", "10.0.3.1").status_code == 302


# -- sign-up can be closed ---------------------------------------------------------------------

@pytest.mark.django_db
def test_closed_sign_up_holds_on_the_pages_and_the_api(client, settings, django_user_model):
    settings.ALLOW_SIGNUP = False
    assert client.get("/accounts/signup/").status_code == 404
    response = client.post("/accounts/signup/", {"username": "eve", "password1": "x9!kQ2#pL",
                                                 "password2": "x9!kQ2#pL"})
    assert response.status_code == 404
    login_page = client.get("/accounts/login/").content.decode()
    assert "/accounts/signup/" not in login_page
    assert "administrator" in login_page
    paths = client.get("/api/openapi.json").json()["paths"]
    assert not [p for p in paths if any(w in p for w in ("user", "account", "signup", "token"))]
    assert not django_user_model.objects.exists()


@pytest.mark.django_db
def test_open_sign_up_creates_an_account_and_signs_it_in(client, settings, django_user_model):
    settings.ALLOW_SIGNUP = True
    assert "/accounts/signup/" in client.get("/accounts/login/").content.decode()
    response = client.post("/accounts/signup/", {"username": "eve", "password1": "x9!kQ2#pLm",
                                                 "password2": "x9!kQ2#pLm"})
    assert response.status_code == 302
    assert django_user_model.objects.filter(username="eve").exists()
    assert client.get("/").status_code == 200
