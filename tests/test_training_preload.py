"""The worker child imports the engine as it starts; the parent never imports torch, and
nothing initialises CUDA. Each check runs in a fresh interpreter, as a worker process is."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.training_helpers import ROOT

CHECK = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from celery.signals import worker_process_init
import workers.celery
parent = "torch" in sys.modules
worker_process_init.send(sender=None)  # what a prefork child sends as it starts
import torch
print(json.dumps({"torch_in_parent": parent, "engine_in_child": "training.grpo" in sys.modules,
                  "cuda_initialised": torch.cuda.is_initialized()}))
"""


def test_the_worker_child_preloads_the_engine_without_touching_cuda():
    out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)

    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert result == {"torch_in_parent": False, "engine_in_child": True,
                      "cuda_initialised": False}
