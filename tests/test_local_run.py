"""``make run`` on a machine without Redis, and with a REDIS_URL that does not answer.

The first test runs the launcher (``python -m webapp.localrun``, what ``make run`` starts)
in a network namespace of its own, where nothing answers on 127.0.0.1:6379 (the machine's
Redis is out of reach there), trains a run through the API, presses Ctrl-C, and checks what
a person would see and what is left running."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from webapp import localredis

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _namespace_prefix() -> list[str] | None:
    """``unshare`` with a new network namespace (as root, or a user namespace otherwise), or
    None where the kernel or the sandbox refuses one."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for flags in (["-n"], ["-r", "-n"]):
        if subprocess.run(["unshare", *flags, "true"], capture_output=True).returncode == 0:
            return ["unshare", *flags]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_no_redis_reachable_make_run_starts_its_own_trains_a_run_and_stops_on_ctrl_c(
        tmp_path):
    """In a network namespace where one can be made (nothing answers on 127.0.0.1:6379
    there); elsewhere the launcher looks for its local Redis at a port where nothing listens
    (tests/local_run_driver.py)."""
    prefix = _namespace_prefix()
    driver = [sys.executable, "-m", "tests.local_run_driver", str(tmp_path)]
    if prefix is not None:
        command = [*prefix, "sh", "-c", "ip link set lo up && exec " + " ".join(driver)]
    else:
        command = [*driver, f"redis://127.0.0.1:{_free_port()}/0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=560)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    output = result["output"]

    assert result["run_status"] == "succeeded", output[-3000:]
    assert result["redis_while_running"], "no private redis-server was running"
    assert result["redis_after_stop"] == [], "Ctrl-C left the private Redis running"
    assert "dump.rdb" in result["redis_files"]  # its files are under var/redis
    assert result["exit_status"] == 0  # so make reports no error
    opened = [line for line in output.splitlines() if "Open http://" in line]
    assert opened == [f"==> Open http://127.0.0.1:{result['port']}/ in a browser. Redis: a "
                      f"private one (files in {tmp_path / 'redis'}). Ctrl-C stops everything."]
    # For people: no progress bars, no Python or Celery warnings, no Celery banner.
    for noise in ("it/s]", "%|", "Warning:", "UserWarning", "DeprecationWarning",
                  "-------------- celery@"):
        assert noise not in output, f"{noise!r} in the output of make run:\n{output[-3000:]}"
    assert output.rstrip().endswith("==> Stopped.")


def test_a_set_redis_url_that_does_not_answer_stops_start_up_and_says_what_to_do(tmp_path):
    url = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    env = {**os.environ, "REDIS_URL": url, "RLHF_VAR_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "webapp.localrun"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"REDIS_URL is set to {url}, but no Redis answers there" in done.stderr
    assert "unset it" in done.stderr
    assert not (tmp_path / "redis").exists()  # no private Redis instead of the one asked for


def test_a_set_redis_url_that_answers_is_used_as_given(tmp_path):
    private = localredis.start_private(tmp_path / "other")
    try:
        url, started = localredis.resolve({"REDIS_URL": private.url}, tmp_path)
    finally:
        private.stop()
    assert (url, started) == (private.url, None)
    assert not (tmp_path / "redis").exists()


def test_a_private_redis_keeps_its_files_in_the_directory_and_stops(tmp_path):
    private = localredis.start_private(tmp_path / "redis")
    assert localredis.answers(private.url) is None
    private.stop()
    assert private.process.returncode == 0  # a clean shutdown (it saved its data)
    assert localredis.answers(private.url) is not None
    assert {"dump.rdb", "redis.log"} <= {p.name for p in (tmp_path / "redis").iterdir()}
