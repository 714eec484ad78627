"""What the benchmark scripts share to start the product's web server as `make run` does."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The Procfile's web server (ASGI), and the threaded WSGI one it replaced (a reference).
SERVERS = {
    "asgi": ["webapp.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker"],
    "wsgi": ["webapp.wsgi:application", "--worker-class", "gthread", "--threads", "32"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(port: int, env: dict[str, str], *, kind: str = "asgi",
              timeout: float = 60) -> subprocess.Popen:
    """gunicorn with one worker on 127.0.0.1:``port``; returns once it accepts connections."""
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), *SERVERS[kind], "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--timeout", "0", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the {kind} web server did not start on port {port}")
