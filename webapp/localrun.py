"""``make run``: one local server, with output for people.

Finds a Redis (or starts a private one, :mod:`webapp.localredis`), applies migrations,
collects the static files, starts the ``Procfile``'s processes (web, worker, reaper) with
honcho, prints one line that says where to open the app, and on Ctrl-C stops them and then
the private Redis (last: a worker that is shutting down still needs the queue), exiting 0 so
``make`` reports no error. Progress bars and library warnings are switched off in every
process it starts; errors still show.

    python -m webapp.localrun [--port 8000]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from webapp import localredis

ROOT = Path(__file__).resolve().parent.parent
# What the processes of a local server leave out of the terminal: tqdm bars (model loading,
# datasets), transformers' advice, Python warnings (Celery's among them).
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
             "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "DATASETS_VERBOSITY": "error",
             "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
WEB_START_TIMEOUT_S = 120.0


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


class Stop(KeyboardInterrupt):
    """Ctrl-C (SIGINT, which the terminal sends to honcho too) or a SIGTERM sent to this
    process alone (docker, a test), which honcho has to be told about."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: FrameType | None) -> None:
    # Installed for SIGINT too: a shell that started us in the background may have left
    # SIGINT ignored.
    raise Stop(signum)


def _prepare(env: dict[str, str]) -> None:
    """Check the services, migrate and collect the static files in this process (one Django
    start-up instead of three); a failure (the database unreachable) ends start-up."""
    os.environ.update(env)  # the Redis just chosen, before the settings are read
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connections

    django.setup()
    try:
        call_command("check_services")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
    except CommandError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        connections.close_all()  # the server processes open their own


def _wait_for_web(honcho: subprocess.Popen[bytes], host: str, port: int) -> bool:
    deadline = time.monotonic() + WEB_START_TIMEOUT_S
    while honcho.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.25)
    return False


def _serve(env: dict[str, str], port: int, redis_note: str) -> int:
    """Run honcho until it ends or Ctrl-C; returns the exit status for make."""
    honcho = subprocess.Popen(
        [str(Path(sys.executable).parent / "honcho"), "--procfile", str(ROOT / "Procfile"),
         "start", "--port", str(port)], cwd=ROOT, env=env)
    try:
        bind = env.get("RLHF_BIND", "127.0.0.1")
        host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
        if _wait_for_web(honcho, host, port):
            others = "" if host == bind else f" (listening on {bind}, so other machines too)"
            say(f"Open http://{host}:{port}/ in a browser{others}. {redis_note}"
                "Ctrl-C stops everything.")
        return honcho.wait()
    except KeyboardInterrupt as exc:
        # Ctrl-C reached honcho too (same process group) and it stops web, worker and reaper;
        # a signal meant for this process alone is passed on.
        if not (isinstance(exc, Stop) and exc.signum == signal.SIGINT):
            honcho.send_signal(signal.SIGTERM)
        try:
            honcho.wait(10)
        except subprocess.TimeoutExpired:
            honcho.send_signal(signal.SIGTERM)  # a SIGINT sent to this process only
            try:
                honcho.wait(20)
            except subprocess.TimeoutExpired:
                honcho.kill()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the workbench locally.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    var_dir = Path(os.environ.get("RLHF_VAR_DIR") or ROOT / "var").resolve()
    try:
        url, private = localredis.resolve(os.environ, var_dir)
    except localredis.RedisUnavailable as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1
    env = {**os.environ, **QUIET_ENV, "REDIS_URL": url, "PORT": str(args.port)}
    note = (f"Redis: a private one (files in {private.directory}). " if private else "")
    try:
        _prepare(env)
        status = _serve(env, args.port, note)
    except KeyboardInterrupt:
        status = 0
    finally:
        if private is not None:
            private.stop()
    say("Stopped." if status == 0 else f"Stopped (a process ended with status {status}).")
    return status


if __name__ == "__main__":
    sys.exit(main())
