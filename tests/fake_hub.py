"""A Hugging Face hub on localhost, for the download tests: the endpoints ``huggingface_hub``
calls to fetch a model (model info with file sizes, the file tree, and each file by HEAD and
GET under ``resolve/``), serving model directories from disk, with the hub's error headers
for gated and missing repositories. The real hub cannot be reached from here (or from CI);
``HF_ENDPOINT`` points a worker at this one."""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Path] = {}
        self.gated: set[str] = set()
        self.requests: list[str] = []

    def add(self, repo_id: str, folder: Path) -> str:
        """Serve ``folder``'s files as ``repo_id``; returns the commit it stands at."""
        self.repos[repo_id] = folder
        return self.commit(repo_id)

    @staticmethod
    def commit(repo_id: str) -> str:
        return hashlib.sha1(f"commit of {repo_id}".encode()).hexdigest()

    def files(self, repo_id: str) -> list[Path]:
        return sorted(p for p in self.repos[repo_id].rglob("*") if p.is_file())

    def entries(self, repo_id: str) -> list[dict]:
        root = self.repos[repo_id]
        folders = sorted({p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()})
        return ([{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest(),
                  "size": 0} for f in folders]
                + [_entry(p, p.relative_to(root).as_posix()) for p in self.files(repo_id)])


def _entry(path: Path, name: str | None = None) -> dict:
    data = path.read_bytes()
    return {"type": "file", "path": name or path.name, "size": len(data),
            "oid": hashlib.sha1(data).hexdigest(),
            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                    "pointerSize": 134}}


def _within(path: str, folder: str, recursive: bool) -> bool:
    """Whether a tree listing of ``folder`` shows ``path``."""
    prefix = f"{folder}/" if folder else ""
    if not path.startswith(prefix) or path == folder:
        return False
    return recursive or "/" not in path[len(prefix):]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    # models under /api/models and /<repo>; data sets under /api/datasets and /datasets/<repo>
    info = re.compile(r"^/api/(?:models|datasets)/([^/]+/[^/]+)/revision/([^/]+)$")
    tree = re.compile(r"^/api/(?:models|datasets)/([^/]+/[^/]+)/tree/([^/]+)/?(.*)$")
    resolve = re.compile(r"^/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _json(self, body: object, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _refuse(self, repo_id: str) -> bool:
            if repo_id in hub.gated:
                self.send_response(403)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", "Access to this model is restricted.")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            if repo_id not in hub.repos:
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            return False

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if match := info.match(path):
                repo_id = match.group(1)
                if not self._refuse(repo_id):
                    self._json({"id": repo_id, "modelId": repo_id, "sha": hub.commit(repo_id),
                                "private": False, "gated": False, "siblings": [
                                    {"rfilename": e["path"], "size": e["size"],
                                     "blobId": e["oid"], "lfs": {"sha256": e["lfs"]["oid"],
                                                                 "size": e["size"],
                                                                 "pointerSize": 134}}
                                    for e in hub.entries(repo_id) if e["type"] == "file"]})
            elif match := tree.match(path):
                repo_id, under = match.group(1), match.group(3).strip("/")
                if not self._refuse(repo_id):
                    recursive = "recursive=true" in self.path.lower()
                    self._json([e for e in hub.entries(repo_id) if _within(e["path"], under,
                                                                           recursive)])
            elif match := resolve.match(path):
                repo_id, name = match.group(1), match.group(3)
                if self._refuse(repo_id):
                    return
                file = hub.repos[repo_id] / name
                if not file.is_file():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = file.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.commit(repo_id))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            else:
                self._json({"error": f"not served: {path}"}, status=404)

    return Handler


@contextmanager
def fake_hub() -> Iterator[tuple[FakeHub, str]]:
    """A running fake hub and its endpoint URL."""
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
