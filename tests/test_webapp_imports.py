"""The web process never imports torch: it stays light and never touches a GPU."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import sys, django
django.setup()
import webapp.urls, webapp.runs.services, webapp.runs.views, webapp.datasets.services
import workers.tasks
from django.urls import resolve
resolve('/api/runs')
heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)
assert not heavy, heavy
print('ok')
"""


def test_the_web_app_and_the_task_definitions_import_without_torch():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
