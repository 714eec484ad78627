"""Workers and their devices: what a worker reports (GPUs through nvidia-smi, the CPU through
/proc), the real worker's presence in ``GET /api/workers`` and on the staff Workers page, with
the run it holds."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import PROMPTS, upload_prompts, wait_for
from training.devices import check_spec, worker_devices

# What nvidia-smi prints on a machine with an H100 and a V100 (no GPU here: a script on PATH
# stands in for the driver's tool, in its documented CSV format).
SMI_OUTPUT = ("0, GPU-aaaa1111-0000, NVIDIA H100 80GB HBM3, 81559, 80100, 9.0\n"
              "1, GPU-bbbb2222-0000, Tesla V100-SXM2-16GB, 16384, 15000, 7.0\n")
WORKER = f"test-{os.getpid()}@test"  # the session worker's --hostname (tests/conftest.py)


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nprintf '{SMI_OUTPUT}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_each_gpu_is_reported_with_memory_bf16_and_capability(fake_smi):
    h100, v100 = worker_devices("auto")

    assert h100.as_json() == {"type": "cuda", "index": 0, "name": "NVIDIA H100 80GB HBM3",
                              "total_mb": 81559, "free_mb": 80100, "bf16": True,
                              "capability": "9.0", "threads": None}
    assert (v100.index, v100.bf16, v100.capability) == (1, False, "7.0")  # bf16 needs 8.0


def test_cuda_visible_devices_and_the_spec_choose_the_gpus(fake_smi, monkeypatch):
    assert [d.name for d in worker_devices("cuda:1")] == ["Tesla V100-SXM2-16GB"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb2222")

    (only,) = worker_devices("auto")

    assert (only.index, only.name) == (0, "Tesla V100-SXM2-16GB")  # numbered as CUDA does


def test_without_a_gpu_the_worker_offers_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())

    (cpu,) = worker_devices("auto")
    (two,) = worker_devices("cpu:2")

    assert (cpu.type, cpu.index, cpu.bf16) == ("cpu", 0, True)
    assert cpu.total_mb == int(meminfo["MemTotal"].split()[0]) // 1024
    assert 0 < cpu.free_mb <= cpu.total_mb
    assert cpu.threads == len(os.sched_getaffinity(0)) and two.threads == 2


@pytest.mark.parametrize("spec", ["gpu", "cuda", "cuda:a", "cpu:-1", "auto,cpu"])
def test_a_bad_device_setting_says_what_is_accepted(spec):
    with pytest.raises(ValueError, match="auto, cuda:0,1"):
        check_spec(spec)


@pytest.fixture
def staff_api(api, user):
    user.is_staff = True
    user.save()
    return api


def test_the_running_worker_reports_itself_and_the_run_it_holds(staff_api, other_api, worker):
    workers = wait_for(lambda: {w["name"]: w for w in staff_api.get("/api/workers").json()}
                       .get(WORKER) and staff_api.get("/api/workers").json(),
                       timeout=30, what="the worker's presence")
    (me,) = [w for w in workers if w["name"] == WORKER]
    assert me["queues"] == [os.environ["RLHF_TRAINING_QUEUE"]]
    assert [d["type"] for d in me["devices"]] == ["cpu"] and me["devices"][0]["total_mb"] > 0
    assert me["running"] == []
    dataset = upload_prompts(staff_api, PROMPTS)
    run = staff_api.post("/api/runs", json.dumps({
        "name": "long", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 30}],
        "hyperparameters": {"max_steps": 500, "max_new_tokens": 8}}),
        content_type="application/json").json()

    held = wait_for(lambda: f"run-{run['id']}" in next(
        w for w in staff_api.get("/api/workers").json() if w["name"] == WORKER)["running"],
        timeout=90, what="the worker to hold the run")

    assert held
    staff_api.post(f"/api/runs/{run['id']}/cancel")
    response = other_api.get("/api/workers")
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


def test_the_workers_page_is_for_staff(client, user, worker):
    client.force_login(user)
    assert client.get("/workers/").status_code == 403
    assert "/workers/" not in client.get("/").content.decode()  # no link either
    user.is_staff = True
    user.save()

    page = wait_for(lambda: (text := client.get("/workers/").content.decode())
                    and WORKER in text and text, timeout=30, what="the worker on the page")

    assert os.environ["RLHF_TRAINING_QUEUE"] in page and "threads" in page
    assert 'href="/workers/"' in client.get("/").content.decode()
