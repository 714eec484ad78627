"""Fire hostile inputs at a running server and check each gets a clear 4xx JSON answer and
stores nothing. Prints one JSON line: tried, clear_4xx, stored_nothing (and what failed).

    .venv/bin/python manage.py create_api_token alice        # the token is the last line
    .venv/bin/python bench/hostile_inputs.py --url http://127.0.0.1:8000 --token rlhf_...

It uploads one small prompts dataset first (the runs and batches below need one to name),
then counts the datasets, runs and batches before and after the hostile requests.
Standard library only, so it runs from anywhere that reaches the server.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

GOOD = b'{"prompt": "Summarize: a cat sat on a mat."}\n'


def request(base: str, token: str, method: str, path: str, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, dict[str, Any] | None]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def multipart(filename: str, data: bytes, kind: str = "prompts",
              name: str = "hostile") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for field, value in (("name", name), ("kind", kind)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                 .encode("utf-8", errors="surrogateescape") + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def run_json(dataset: int, **changes: Any) -> dict[str, Any]:
    body = {"name": "hostile", "algorithm": "grpo", "dataset": dataset,
            "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 50}],
            "hyperparameters": {"max_steps": 2}}
    body.update(changes)
    return body


def cases(dataset: int) -> list[tuple[str, str, str, Any]]:
    """(what, method, path, payload): payload is a JSON-able value, raw JSON text, or an
    upload as ("file", filename, bytes)."""
    deep = "[" * 20_000 + "]" * 20_000
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}] * 2500
    return [
        ("upload: 20,000-deep JSONL", "POST", "/api/datasets",
         ("file", "p.jsonl", b'{"prompt": "a", "x": ' + deep.encode() + b"}\n")),
        ("upload: invalid UTF-8", "POST", "/api/datasets",
         ("file", "p.jsonl", b'{"prompt": "\xe9"}\n')),
        ("upload: .exe", "POST", "/api/datasets", ("file", "tool.exe", b"MZ\x90\x00")),
        ("upload: .php", "POST", "/api/datasets", ("file", "x.php", b"<?php echo 1; ?>")),
        ("upload: HTML named .csv", "POST", "/api/datasets",
         ("file", "p.csv", b"<html><script>alert(1)</script></html>")),
        ("upload: a 2 MB line", "POST", "/api/datasets",
         ("file", "p.jsonl", json.dumps({"prompt": "x" * 2_000_000}).encode() + b"\n")),
        ("upload: gzip bomb", "POST", "/api/datasets",
         ("file", "p.jsonl.gz", gzip.compress(b" " * 300_000_000))),
        ("upload: CSV cell over many lines", "POST", "/api/datasets",
         ("file", "p.csv", b'prompt\n"' + b"\n".join([b"y" * 1000] * 1500) + b'"\n')),
        ("upload: 5,000 chat turns", "POST", "/api/datasets",
         ("file", "p.jsonl", json.dumps({"prompt": turns}).encode() + b"\n")),
        ("upload: unpaired surrogate", "POST", "/api/datasets",
         ("file", "p.jsonl", b'{"prompt": "\\ud800"}\n')),
        ("upload: 10,000 columns", "POST", "/api/datasets",
         ("file", "p.csv", (",".join(["prompt"] + [f"c{i}" for i in range(10_000)]) + "\nhi"
                            + ",0" * 10_000 + "\n").encode())),
        ("list: offset 2**63", "GET", "/api/runs?offset=9223372036854775808", None),
        ("list: huge limit", "GET", "/api/datasets?limit=" + "9" * 30, None),
        ("list: offset 2**63 on batches", "GET",
         "/api/labeling/batches?offset=9223372036854775808", None),
        ("id: +1", "GET", f"/api/datasets/+{dataset}", None),
        ("id: 1.0", "GET", f"/api/datasets/{dataset}.0", None),
        ("id: %20", "GET", f"/api/datasets/%20{dataset}", None),
        ("id: 2**63", "GET", "/api/runs/9223372036854775808", None),
        ("run: NaN learning rate", "POST", "/api/runs",
         json.dumps(run_json(dataset)).replace('"max_steps": 2', '"max_steps": 2, '
                                               '"learning_rate": NaN')),
        ("run: Infinity weight", "POST", "/api/runs",
         json.dumps(run_json(dataset)).replace('"target": 50',
                                               '"target": 50, "weight": Infinity')),
        ("run: mass assignment", "POST", "/api/runs",
         run_json(dataset, owner=1, status="succeeded")),
        ("run: caps", "POST", "/api/runs", run_json(dataset, hyperparameters={
            "prompts_per_step": 4096, "group_size": 256, "max_new_tokens": 32768,
            "max_steps": 100000})),
        ("run: catastrophic-backreference regex", "POST", "/api/runs",
         run_json(dataset, rewards=[{"type": "regex", "pattern": r"(a+)+\1"}])),
        ("run: 5,000-deep body", "POST", "/api/runs",
         json.dumps(run_json(dataset)).replace('"hostile"', "[" * 5000 + "]" * 5000, 1)),
        ("run: repeated key", "POST", "/api/runs", '{"name": "a", "name": "b"}'),
        ("run: surrogate name", "POST", "/api/runs", '{"name": "\\ud800"}'),
        ("run: boolean dataset", "POST", "/api/runs", run_json(True)),  # type: ignore[arg-type]
        ("run: array for hyperparameters", "POST", "/api/runs",
         run_json(dataset, hyperparameters=[1, 2])),
        ("run: 10,000-character name", "POST", "/api/runs", run_json(dataset, name="n" * 10_000)),
        ("run: 65-bit step count", "POST", "/api/runs",
         json.dumps(run_json(dataset)).replace('"max_steps": 2',
                                               '"max_steps": 99999999999999999999')),
        ("batch: NaN temperature", "POST", "/api/labeling/batches",
         f'{{"name": "b", "dataset": {dataset}, "model": "tiny-llama", "temperature": NaN}}'),
        ("body: 3 MB of JSON", "POST", "/api/runs", json.dumps({"name": "x" * 3_000_000})),
    ]


def fire(base: str, token: str, method: str, path: str, payload: Any) -> tuple[int, Any]:
    if isinstance(payload, tuple):
        body, content_type = multipart(payload[1], payload[2])
        return request(base, token, method, path, body, content_type)
    if payload is None:
        return request(base, token, method, path)
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return request(base, token, method, path, text.encode("utf-8", errors="surrogatepass"),
                   "application/json")


def counts(base: str, token: str) -> dict[str, int]:
    out = {}
    for path in ("/api/datasets", "/api/runs", "/api/labeling/batches"):
        status, body = request(base, token, "GET", path + "?limit=500")
        assert status == 200, (path, status, body)
        out[path] = len(body or [])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    body, content_type = multipart("seed.jsonl", GOOD, name="hostile-inputs seed")
    status, seed = request(base, args.token, "POST", "/api/datasets", body, content_type)
    if status != 201 or not seed:
        sys.exit(f"could not upload the seed dataset: {status} {seed}")
    before = counts(base, args.token)
    failures, clear = [], 0
    tried = cases(seed["id"])
    for what, method, path, payload in tried:
        status, answer = fire(base, args.token, method, path, payload)
        ok = 400 <= status < 500 and isinstance(answer, dict) and answer.get("error") and \
            answer.get("detail")
        clear += bool(ok)
        if not ok:
            failures.append({"what": what, "status": status, "answer": str(answer)[:200]})
    after = counts(base, args.token)
    print(json.dumps({"tried": len(tried), "clear_4xx": clear, "stored_nothing": before == after,
                      "failures": failures}))


if __name__ == "__main__":
    main()
