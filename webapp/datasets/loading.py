"""Reading an uploaded file, with no Django models and no settings (the caller passes
:class:`UploadLimits`): the gzip guard, the checks before parsing
(:mod:`webapp.datasets.screening`), loading with the Hugging Face
``datasets`` library in memory (its cache goes to a directory the caller removes), and parse
errors that name the line. Checking the rows per kind is :mod:`webapp.datasets.validation`.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import re
import shutil
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import datasets

from webapp import strictjson
from webapp.datasets.screening import (
    Format,
    UploadLimits,
    check_lines,
    check_parquet,
    detect_format,
    format_from_name,
)
from webapp.datasets.validation import MAX_ROWS_LISTED
from webapp.errors import Invalid, TooLarge

_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_NO_DATA = "corresponds to no data"  # what ``datasets`` says about a file without rows


def load_upload(chunks: Iterable[bytes], *, filename: str, work_dir: Path,
                limits: UploadLimits) -> datasets.Dataset:
    """Copy the upload into ``work_dir``, gunzip it under the cap, detect its format and load it.

    Everything written (the copies, the ``datasets`` cache) stays inside ``work_dir``, which the
    caller removes; the returned dataset lives in memory.
    """
    format_from_name(filename)  # before a byte is read: .exe and .php stop here
    raw = work_dir / "upload.bin"
    size = copy_capped(chunks, raw, max_bytes=limits.max_bytes)
    if size == 0:
        raise Invalid("The file is empty.", fields={"file": "empty"})
    path = raw
    if _is_gzip(filename, raw):
        path = work_dir / "upload.decompressed"
        gunzip_capped(raw, path, max_bytes=limits.max_decompressed_bytes)
        raw.unlink()
    if not _has_content(path):
        raise Invalid("The file is empty.", fields={"file": "empty"})
    fmt = detect_format(filename, _head(path))
    if fmt is Format.PARQUET:
        check_parquet(path, limits)
    else:
        check_lines(path, fmt, max_line_bytes=limits.max_line_bytes, max_depth=limits.max_depth)
    table = read_table(path, fmt, cache_dir=work_dir / "hf-cache", max_rows=limits.max_rows)
    if table.num_rows == 0:
        raise _no_rows()
    return table


def copy_capped(chunks: Iterable[bytes], dest: Path, *, max_bytes: int) -> int:
    """Write ``chunks`` to ``dest``; refuse (413) as soon as more than ``max_bytes`` arrive."""
    written = 0
    with dest.open("wb") as out:
        for chunk in chunks:
            written += len(chunk)
            if written > max_bytes:
                raise TooLarge(f"The file is larger than {max_bytes} bytes, the most this server "
                               "accepts (RLHF_UPLOAD_MAX_BYTES).")
            out.write(chunk)
    return written


def gunzip_capped(source: Path, dest: Path, *, max_bytes: int) -> int:
    """Decompress chunk by chunk and stop as soon as the output passes ``max_bytes``: a small
    gzip can expand a thousandfold, so the cap is on what comes out, never on what goes in."""
    written = 0
    try:
        with gzip.open(source, "rb") as src, dest.open("wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise TooLarge(
                        f"The file decompresses to more than {max_bytes} bytes, the most this "
                        "server accepts (RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES).")
                out.write(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise Invalid(f"The file is not a valid gzip file ({exc}).",
                      fields={"file": "bad gzip"}) from None
    return written


def _is_gzip(filename: str, path: Path) -> bool:
    return filename.lower().endswith(".gz") or _head(path, 2) == _GZIP_MAGIC


def _head(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def _has_content(path: Path) -> bool:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            if chunk.strip(b"\xef\xbb\xbf \t\r\n"):
                return True
    return False


def read_table(path: Path, fmt: Format, *, cache_dir: Path, max_rows: int) -> datasets.Dataset:
    """Load with the ``datasets`` library, in memory, with its cache inside ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_datasets():
            if fmt is Format.PARQUET:
                table = _read_parquet(path, cache_dir)
            elif fmt is Format.CSV:
                table = _read_csv(path, cache_dir)
            else:
                table = _read_jsonl(path, cache_dir)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    _check_row_count(table.num_rows, max_rows)
    return table


def _check_row_count(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise TooLarge(f"The file has {rows} rows; this server accepts up to {max_rows} "
                       "(RLHF_UPLOAD_MAX_ROWS).")


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """``datasets`` draws progress bars and logs read failures itself; we report them."""
    bars_were_on = datasets.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def _read_parquet(path: Path, cache_dir: Path) -> datasets.Dataset:
    """The footer was checked first (:func:`check_parquet`)."""
    try:
        return datasets.Dataset.from_parquet(str(path), cache_dir=str(cache_dir),
                                             keep_in_memory=True)
    except Exception as exc:
        raise Invalid(f"The file is not a readable Parquet file: {_root_message(exc)}",
                      fields={"file": "unreadable"}) from None


def _read_csv(path: Path, cache_dir: Path) -> datasets.Dataset:
    """Every cell is read as text, so ``007`` stays ``007`` and an empty cell stays ``""``;
    the validation decides what a column means."""
    header = _csv_header(path)
    features = datasets.Features({name: datasets.Value("string") for name in header})
    try:
        return datasets.Dataset.from_csv(str(path), cache_dir=str(cache_dir),
                                         keep_in_memory=True, features=features,
                                         keep_default_na=False, na_filter=False)
    except Exception as exc:
        raise _csv_error(exc) from None


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise _not_utf8() from None
    except csv.Error as exc:
        raise Invalid(f"Line 1 of the CSV cannot be read: {exc}.", fields={"file": "unreadable"},
                      rows=[1]) from None
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise Invalid(f"The CSV header repeats column names: {', '.join(duplicates)}.",
                      fields={"file": "duplicate columns"})
    return header


def _csv_error(exc: BaseException) -> Invalid:
    message = _root_message(exc)
    if _NO_DATA in message:
        return _no_rows()
    if "codec can't decode" in message:
        return _not_utf8()
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if match:
        expected, line, saw = (int(g) for g in match.groups())
        return Invalid(f"Line {line} of the CSV (data row {line - 1}) has {saw} fields; the "
                       f"header has {expected}.", fields={"file": "unreadable"}, rows=[line - 1])
    return Invalid(f"The CSV cannot be read: {message}", fields={"file": "unreadable"})


def _no_rows() -> Invalid:
    return Invalid("The file has no rows.", fields={"file": "no rows"})


def _not_utf8() -> Invalid:
    return Invalid("The file is not UTF-8 text; save it as UTF-8 and upload it again.",
                   fields={"file": "not UTF-8"})


def _read_jsonl(path: Path, cache_dir: Path) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_json(str(path), cache_dir=str(cache_dir),
                                          keep_in_memory=True)
    except Exception as exc:
        if _NO_DATA in _root_message(exc):
            raise _no_rows() from None
        # ``datasets`` does not say where a file is broken; find the line ourselves.
        raise find_json_error(path) or Invalid(
            f"The JSON cannot be read: {_root_message(exc)}", fields={"file": "unreadable"}
        ) from None


def find_json_error(path: Path) -> Invalid | None:
    """The first line that is not a JSON object, as an error naming it (None if all are)."""
    try:
        with path.open(encoding="utf-8-sig") as f:
            if f.read(1) == "[":
                return _json_array_error(path)
            f.seek(0)
            for number, line in enumerate(f, start=1):
                if line.strip() and (problem := _json_line_problem(line)):
                    return Invalid(f"Line {number} {problem}.", fields={"file": "bad JSON"},
                                   rows=[number])
    except UnicodeDecodeError:
        return _not_utf8()
    return None


def _json_line_problem(line: str) -> str | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"is not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return "is not a JSON object; each line must be one object like {\"prompt\": \"...\"}"
    try:  # what Python reads but JSON does not allow: NaN, unpaired surrogates, repeated keys
        strictjson.loads(line, max_depth=sys.maxsize)  # the depth was checked before parsing
    except strictjson.JsonProblem as exc:
        return "is refused: " + exc.detail[0].lower() + exc.detail[1:].rstrip(".")
    return None


def _json_array_error(path: Path) -> Invalid:
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        return Invalid(f"Line {exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}).",
                       fields={"file": "bad JSON"}, rows=[exc.lineno])
    if isinstance(value, list):
        bad = [i for i, item in enumerate(value, start=1) if not isinstance(item, dict)]
        if bad:
            return Invalid(f"Item {bad[0]} of the JSON array is not an object.",
                           fields={"file": "bad JSON"}, rows=bad[:MAX_ROWS_LISTED])
    return Invalid("The JSON file must hold one object per line (JSON Lines) or an array of "
                   "objects.", fields={"file": "bad JSON"})


def _root_message(exc: BaseException) -> str:
    """``datasets`` wraps the reader's error; the innermost one says what is wrong."""
    for _ in range(10):  # a chain is short; the bound guards against a cycle
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return message[:300]


def iter_rows(table: datasets.Dataset, *, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """The rows as plain dicts, read a batch at a time (much faster than row by row)."""
    for batch in table.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns), strict=True):
            yield dict(zip(columns, values, strict=True))
