"""Maths answers for the ``math`` reward: the completion's final answer (the last ``\\boxed{}``,
else the ``<answer>`` tag's content, else the last number), the reference (GSM8K's ``#### 42``
understood), and whether they are one answer by symbolic equivalence with Hugging Face's
``math-verify`` (``1/2``, ``0.5``, ``\\frac{1}{2}`` and ``\\boxed{\\dfrac12}`` are one).

Symbolic maths can be made to run for ever (``9^{9^{9^9}}``), and sympy's big-integer work does
not yield to Python's signals, so the checking happens in a process of its own that is killed
and started again when one pair takes longer than its time limit (which then scores 0). The
process starts on first use and serves the run's steps after that.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIME_LIMIT_S = 5.0
STARTUP_S = 20.0  # a fresh interpreter importing sympy and math-verify, on a busy machine
ANSWER_MAX_CHARS = 2000  # a final answer longer than this is not an answer
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[begin:i - 1] if depth == 0 else None


def final_answer(completion: str) -> str | None:
    """The answer a completion gives, or None when it gives none."""
    boxed = last_boxed(completion)
    if boxed is not None:
        found = boxed
    elif tags := _ANSWER_TAG.findall(completion):
        found = tags[-1]
    else:
        numbers = _NUMBER.findall(completion)
        found = numbers[-1] if numbers else ""
    found = found.strip()
    return found if found and len(found) <= ANSWER_MAX_CHARS else None


def reference_answer(value: Any) -> str | None:
    """The row's answer: after GSM8K's ``####`` when it has one."""
    if value is None:
        return None
    text = str(value)
    gsm8k = _GSM8K.search(text)
    return (gsm8k.group(1) if gsm8k else text).strip()[:ANSWER_MAX_CHARS] or None


def _verify(gold: str, answer: str) -> bool:
    """In the checking process: math-verify's parse of each side (as LaTeX and as a plain
    expression) and its equivalence check."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]

    def parsed(text: str) -> Any:
        # bare text is read as an expression; in $...$ as LaTeX (\frac, \sqrt, ...)
        return parse(f"${text}$", extraction_config=configs) or parse(text, configs)

    gold_parsed, answer_parsed = parsed(gold), parsed(answer)
    return bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed))


def _serve() -> None:
    """The checking process: one JSON pair ``[gold, answer]`` a line in, ``1`` or ``0`` out."""
    for line in sys.stdin:
        try:
            gold, answer = json.loads(line)
            same = _verify(str(gold), str(answer))
        except Exception:  # an expression math-verify cannot read is not equivalent
            same = False
        sys.stdout.write("1\n" if same else "0\n")
        sys.stdout.flush()


class Checker:
    """The checking process: ``equivalent(gold, answer)`` answers within ``time_limit_s``
    or kills the process (it is started again for the next pair) and answers False. A plain
    subprocess (``python -m training.math_answers``): no fork of a process holding torch's
    threads, and no re-import of whatever started this one."""

    def __init__(self, time_limit_s: float = TIME_LIMIT_S, budget_s: float | None = None):
        self.time_limit_s = time_limit_s
        self.budget_s = budget_s  # all pairs together; past it, pairs score 0 unchecked
        self.spent_s = 0.0
        self._process: subprocess.Popen[str] | None = None
        self._fresh = False  # a process that has not answered yet (still importing)
        self._lock = threading.Lock()  # one pair at a time on the pipe
        self.timeouts = 0

    def _start(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "training.math_answers"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                cwd=root, env=env)
            self._fresh = True
        return self._process

    def equivalent(self, gold: str, answer: str) -> bool:
        with self._lock:
            if self.budget_s is not None and self.spent_s >= self.budget_s:
                return False
            started = time.monotonic()
            try:
                return self._check(gold, answer)
            finally:
                self.spent_s += time.monotonic() - started

    def _check(self, gold: str, answer: str) -> bool:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps([gold, answer]) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            self.close()
            return False
        # a new process's first pair also pays for its start and math-verify's import
        limit = self.time_limit_s + (STARTUP_S if self._fresh else 0.0)
        ready, _, _ = select.select([process.stdout], [], [], limit)
        line = process.stdout.readline() if ready else ""
        if not line:  # too slow, or the process died: it starts again for the next pair
            self.timeouts += 1
            self.close()
            return False
        self._fresh = False
        return line.strip() == "1"

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None:
                    stream.close()
        self._process = None


_CHECKER: Checker | None = None
_SCOPED: contextvars.ContextVar[Checker | None] = contextvars.ContextVar("math_checker",
                                                                        default=None)


def checker() -> Checker:
    """The checker of the current scope (:func:`scoped_checker`), else the process-wide one
    (one per training process)."""
    global _CHECKER
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped
    if _CHECKER is None:
        _CHECKER = Checker()
    return _CHECKER


@contextlib.contextmanager
def scoped_checker(time_limit_s: float, budget_s: float) -> Iterator[Checker]:
    """A checker of its own for one request (a web request testing rewards): its own
    process, a total time budget, closed at the end, so one person's hostile answers cost no
    one else anything."""
    own = Checker(time_limit_s=time_limit_s, budget_s=budget_s)
    token = _SCOPED.set(own)
    try:
        yield own
    finally:
        _SCOPED.reset(token)
        own.close()


if __name__ == "__main__":
    _serve()
