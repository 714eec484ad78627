"""The engine stands alone: it never imports the web app, Django or Celery, and its config
module imports without torch so forms can validate with it."""
from __future__ import annotations

import ast
import subprocess
import sys

from tests.training_helpers import ROOT

FORBIDDEN = ("django", "celery", "webapp", "workers")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_importing_the_grpo_trainer_loads_no_django_celery_or_web_code():
    done = _run("import training.grpo, sys; "
                "assert not any(m.split('.')[0] in ('django', 'celery', 'webapp', 'workers') "
                "for m in sys.modules), sorted(m for m in sys.modules "
                "if m.split('.')[0] in ('django', 'celery', 'webapp', 'workers'))")

    assert done.returncode == 0, done.stderr


def test_no_training_module_imports_django_celery_or_web_code():
    offenders = []
    files = sorted((ROOT / "training").rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]

    assert offenders == []


def test_the_config_module_imports_without_torch():
    done = _run("import sys, training.config, training.algorithms, training.reward_types; "
                "training.algorithms.algorithms(); "
                "assert 'torch' not in sys.modules, 'torch was imported'; "
                "training.algorithms.validate_hyperparameters('grpo', {'group_size': 4})")

    assert done.returncode == 0, done.stderr
