"""The OpenAPI document tells the truth: schemathesis, fed nothing but /api/openapi.json, fires
generated requests at every operation of the live test server with every check (no server
error, only documented statuses, responses matching their schemas, schema-valid requests
accepted and schema-invalid ones refused, stateful sequences). The exceptions it allows are in
schemathesis.toml, each with its reason."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.training_helpers import ROOT

pytestmark = [pytest.mark.timeout(600)]


def test_every_operation_keeps_its_documented_contract(live_server, user, transactional_db,
                                                      settings, tmp_path):
    from webapp.accounts.services import api_token_create

    settings.DATASETS_DIR = tmp_path / "datasets"  # what a generated upload may store
    _, token = api_token_create(username=user.username)
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run",
         f"{live_server.url}/api/openapi.json", "--checks", "all",
         "-H", f"Authorization: Bearer {token}", "--max-examples", "4", "--seed", "20261207",
         "--generation-database", "none", "--workers", "2", "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    failures = done.stdout[done.stdout.find("FAILURES"):][:6000] if "FAILURES" in done.stdout \
        else ""
    summary = failures + done.stdout[-3000:]
    assert done.returncode == 0, summary
    assert " passed" in summary and "failures" not in summary.split("====")[-1], summary
