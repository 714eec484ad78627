"""The README's shell commands work as written on a machine where `make run` made its local
secret key: manage.py reads var/secret-key when DJANGO_SECRET_KEY is unset."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.training_helpers import ROOT


def test_create_api_token_works_without_the_secret_key_in_the_environment(tmp_path):
    (tmp_path / "secret-key").write_text("a-local-key-" + "x" * 40 + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE",
                        "DATABASE_URL")}
    env["RLHF_VAR_DIR"] = str(tmp_path)  # its own SQLite database and key

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=180)

    assert manage("migrate", "--verbosity", "0").returncode == 0
    done = manage("create_api_token", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("rlhf_")
    (tmp_path / "secret-key").unlink()
    refused = manage("create_api_token", "alice")
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY" in refused.stderr
