"""Drives ``python -m webapp.localrun`` (what ``make run`` starts) as a person would, where
no Redis answers at the address the launcher looks at, and prints one JSON line for
tests/test_local_run.py: the launcher's output, whether a run trained, and what was left
running after Ctrl-C.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m tests.local_run_driver DIR'
    .venv/bin/python -m tests.local_run_driver DIR redis://127.0.0.1:PORT/0

Inside a network namespace nothing answers on 127.0.0.1:6379. Where none can be made, the
second form has the launcher look for its local Redis at an address where nothing listens
instead of 127.0.0.1:6379 (set in the launcher's own process: the product has no such
setting), which is the same situation for it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = "\n".join(json.dumps({"prompt": f"Say something about cat {i}."}) for i in range(4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, token: str, *, body: bytes | None = None,
             content_type: str = "application/json") -> dict:
    req = urllib.request.Request(url, data=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read())


def _upload(base: str, token: str) -> int:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             for k, v in (("name", "cats"), ("kind", "prompts"))]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="cats.jsonl"\r\nContent-Type: application/json\r\n\r\n'
                 f"{PROMPTS}\r\n--{boundary}--\r\n")
    return _request(base + "/api/datasets", token, body="".join(parts).encode(),
                    content_type=f"multipart/form-data; boundary={boundary}")["id"]


def _train(base: str, token: str) -> str:
    dataset = _upload(base, token)
    run = _request(base + "/api/runs", token, body=json.dumps({
        "name": "bare", "algorithm": "grpo", "dataset": dataset, "base_model": "tiny-llama",
        "rewards": [{"type": "length", "target": 20}],
        "hyperparameters": {"max_steps": 2, "prompts_per_step": 2, "group_size": 2,
                            "max_new_tokens": 8}}).encode())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = _request(f"{base}/api/runs/{run['id']}", token)["status"]
        if status in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(1)
    return "timed out"


def _redis_processes(directory: Path) -> list[int]:
    """redis-server processes working in ``directory`` (Redis changes into its ``--dir`` and
    rewrites its command line, so the working directory is what tells them apart)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().startswith("redis-server") \
                    and (proc / "cwd").resolve() == directory.resolve():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _launcher_command(look_at: str | None) -> list[str]:
    if look_at is None:
        return [sys.executable, "-m", "webapp.localrun"]
    code = (f"import runpy, webapp.localredis as r; r.DEFAULT_URL = {look_at!r}; "
            "runpy.run_module('webapp.localrun', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code]


def main(var_dir: Path, look_at: str | None = None) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL",
                                                            "DJANGO_SETTINGS_MODULE")}
    env |= {"RLHF_VAR_DIR": str(var_dir), "RLHF_MODELS_DIR": str(ROOT / "var" / "models"),
            "DJANGO_SECRET_KEY": "local-run-test-" + "x" * 40, "PORT": str(port)}
    log_path = var_dir / "launcher.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # A session of its own, so the SIGINT below reaches its whole group as Ctrl-C does.
        launcher = subprocess.Popen(_launcher_command(look_at), cwd=ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    result: dict = {"port": port}
    try:
        deadline = time.monotonic() + 180
        while "Open http://" not in log_path.read_text() and time.monotonic() < deadline:
            if launcher.poll() is not None:
                break
            time.sleep(0.2)
        result["start_s"] = round(time.monotonic() - started, 1)
        result["redis_while_running"] = _redis_processes(var_dir / "redis")
        token = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "alice"], cwd=ROOT, env=env,
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        result["run_status"] = _train(f"http://127.0.0.1:{port}", token)
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        try:
            result["exit_status"] = launcher.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            result["exit_status"] = "did not stop"
        time.sleep(0.5)
        result["redis_after_stop"] = _redis_processes(var_dir / "redis")
        result["redis_files"] = sorted(p.name for p in (var_dir / "redis").glob("*"))
        result["output"] = log_path.read_text()
        print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
