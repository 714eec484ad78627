"""Reading uploads (formats, gzip, limits, parse errors) and checking rows per kind."""
from __future__ import annotations

import datetime
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webapp.datasets import loading, screening, validation
from webapp.errors import Invalid, TooLarge, Unsupported

LIMITS = screening.UploadLimits(max_bytes=1_000_000, max_decompressed_bytes=5_000_000,
                                max_rows=1000)


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def parquet(columns: dict[str, list[Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def load(data: bytes, filename: str, work_dir: Path,
         limits: screening.UploadLimits = LIMITS) -> datasets.Dataset:
    work_dir.mkdir(exist_ok=True)
    return loading.load_upload([data], filename=filename, work_dir=work_dir, limits=limits)


def rows_of(data: bytes, filename: str, kind: str, work_dir: Path) -> list[dict[str, Any]]:
    table = load(data, filename, work_dir)
    validation.check_columns(table.column_names, kind)
    return list(validation.normalise_rows(loading.iter_rows(table), kind))


def check(kind: str, *rows: dict[str, Any]) -> list[dict[str, Any]]:
    return list(validation.normalise_rows(rows, kind))


def problems(kind: str, *rows: dict[str, Any]) -> Invalid:
    with pytest.raises(Invalid) as caught:
        check(kind, *rows)
    return caught.value


# -- formats ---------------------------------------------------------------------------------

def test_it_reads_jsonl_prompts_as_text_and_chat_messages(tmp_path):
    data = jsonl({"prompt": "2+2?", "answer": 4},
                 {"prompt": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hi"}], "answer": "hello"})
    rows = rows_of(data, "p.jsonl", "prompts", tmp_path / "w")
    assert rows == [
        {"prompt": "2+2?", "answer": "4"},
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}], "answer": "hello"},
    ]


def test_it_reads_a_json_array_of_objects(tmp_path):
    data = json.dumps([{"prompt": "a"}, {"prompt": "b"}]).encode()
    assert rows_of(data, "p.jsonl", "prompts", tmp_path / "w") == [{"prompt": "a"},
                                                                     {"prompt": "b"}]


def test_it_reads_every_csv_cell_as_text(tmp_path):
    data = b"prompt,answer,source\nWhat is James Bond's number?,007,films\n"
    rows = rows_of(data, "p.csv", "prompts", tmp_path / "w")
    assert rows == [{"prompt": "What is James Bond's number?", "answer": "007",
                     "source": "films"}]


def test_it_decodes_json_lists_in_csv_cells(tmp_path):
    data = (b'prompt,responses,ranking\n'
            b'"[{""role"": ""user"", ""content"": ""Hi""}]","[""a"", ""b""]","[2, 1]"\n')
    rows = rows_of(data, "r.csv", "rankings", tmp_path / "w")
    assert rows == [{"prompt": [{"role": "user", "content": "Hi"}],
                     "responses": ["a", "b"], "ranking": [2, 1]}]


def test_it_reads_parquet_with_chat_messages_and_grouped_rankings(tmp_path):
    data = parquet({"prompt": [[{"role": "user", "content": "Hi"}]],
                    "responses": [["a", "b", "c"]], "ranking": [[[1], [0, 2]]]})
    rows = rows_of(data, "r.parquet", "rankings", tmp_path / "w")
    assert rows == [{"prompt": [{"role": "user", "content": "Hi"}],
                     "responses": ["a", "b", "c"], "ranking": [2, 1, 2]}]


@pytest.mark.parametrize("filename", ["p.jsonl.gz", "p.jsonl"])
def test_it_reads_gzipped_jsonl_by_suffix_or_magic_bytes(tmp_path, filename):
    data = gzip.compress(jsonl({"prompt": "a"}, {"prompt": "b"}))
    assert load(data, filename, tmp_path / "w").num_rows == 2


def test_it_reads_gzipped_csv_and_parquet(tmp_path):
    csv_rows = rows_of(gzip.compress(b"prompt\nhello\n"), "p.csv.gz", "prompts", tmp_path / "a")
    parquet_rows = rows_of(gzip.compress(parquet({"prompt": ["hi"]})), "p.parquet.gz",
                           "prompts", tmp_path / "b")
    assert csv_rows == [{"prompt": "hello"}]
    assert parquet_rows == [{"prompt": "hi"}]


@pytest.mark.parametrize(("filename", "expected"), [
    ("p.jsonl", screening.Format.JSONL), ("P.JSONL.GZ", screening.Format.JSONL),
    ("p.csv", screening.Format.CSV), ("p.csv.gz", screening.Format.CSV),
    ("p.parquet", screening.Format.PARQUET), ("p.parquet.gz", screening.Format.PARQUET),
])
def test_the_name_decides_the_format(filename, expected):
    head = b"PAR1\x15\x04" if expected is screening.Format.PARQUET else b"prompt\nhi\n"
    assert screening.detect_format(filename, head) is expected


@pytest.mark.parametrize(("filename", "head"), [
    ("sheet.xlsx", b"PK\x03\x04rest"),
    ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
    ("notes.txt", b"just some words\n"),
    ("tool.exe", b"MZ\x90\x00"),
    ("shell.php", b"<?php system($_GET['c']); ?>"),
    ("data.json", b'[{"prompt": "a"}]'),
    ("blob", b'{"prompt": "a"}\n'),
    ("archive.gz", b'{"prompt": "a"}\n'),
    ("rows.csv", b"PK\x03\x04rest"),  # a zip named .csv
])
def test_it_refuses_a_name_or_format_it_does_not_read_with_415(filename, head):
    with pytest.raises(Unsupported) as caught:
        screening.detect_format(filename, head)
    assert caught.value.status == 415


@pytest.mark.parametrize(("filename", "head", "says"), [
    ("page.csv", b"<!DOCTYPE html><html><script>alert(1)</script>", "HTML"),
    ("page.csv", b"\xef\xbb\xbf  <html><body>hi</body></html>", "HTML"),
    ("page.jsonl", b"<script>alert(1)</script>\n", "HTML"),
    ("feed.csv", b"<?xml version='1.0'?><rss/>", "XML"),
    ("rows.parquet", b"prompt\nhello\n", "not a Parquet file"),
    ("rows.csv", b"prompt\nhe\x00llo\n", "binary"),
])
def test_it_refuses_content_that_contradicts_the_name_with_415(filename, head, says):
    with pytest.raises(Unsupported, match=says):
        screening.detect_format(filename, head)


@pytest.mark.parametrize("data", [b"", b"  \n\n", gzip.compress(b"")])
def test_it_rejects_an_empty_file(tmp_path, data):
    with pytest.raises(Invalid, match="empty"):
        load(data, "p.jsonl", tmp_path / "w")


@pytest.mark.parametrize(("data", "filename"), [
    (b"prompt,answer\n", "p.csv"), (b"[]", "p.jsonl"), (parquet({"prompt": []}), "p.parquet"),
])
def test_it_rejects_a_file_with_no_rows(tmp_path, data, filename):
    with pytest.raises(Invalid, match="no rows"):
        load(data, filename, tmp_path / "w")


# -- parse errors ----------------------------------------------------------------------------

def test_it_names_the_line_of_malformed_json(tmp_path):
    data = b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c",}\n{"prompt": "d"}\n'
    with pytest.raises(Invalid) as caught:
        load(data, "p.jsonl", tmp_path / "w")
    assert caught.value.rows == [3]
    assert caught.value.detail.startswith("Line 3 is not valid JSON")


def test_it_names_a_json_line_that_is_not_an_object(tmp_path):
    with pytest.raises(Invalid) as caught:
        load(b'{"prompt": "a"}\n["b"]\n', "p.jsonl", tmp_path / "w")
    assert caught.value.rows == [2]
    assert "not a JSON object" in caught.value.detail


def test_it_names_the_csv_line_with_too_many_fields(tmp_path):
    data = b"prompt,answer\na,1\nb,2\nc,3,oops\n"
    with pytest.raises(Invalid) as caught:
        load(data, "p.csv", tmp_path / "w")
    assert caught.value.rows == [3]
    assert "Line 4 of the CSV (data row 3) has 3 fields" in caught.value.detail


def test_it_rejects_a_csv_that_is_not_utf8(tmp_path):
    with pytest.raises(Invalid, match="not UTF-8"):
        load("prompt\ncafé\n".encode("latin-1"), "p.csv", tmp_path / "w")


def test_it_rejects_a_parquet_file_it_cannot_read(tmp_path):
    with pytest.raises(Invalid, match="not a readable Parquet file"):
        load(b"PAR1 but not really parquet", "p.parquet", tmp_path / "w")


def test_it_rejects_a_broken_gzip_file(tmp_path):
    with pytest.raises(Invalid, match="not a valid gzip file"):
        load(gzip.compress(jsonl({"prompt": "a"}))[:-12], "p.jsonl.gz", tmp_path / "w")


# -- limits ----------------------------------------------------------------------------------

def test_it_stops_decompressing_as_soon_as_the_cap_is_passed(tmp_path):
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 20_000_000))
    out = tmp_path / "out"
    with pytest.raises(TooLarge) as caught:
        loading.gunzip_capped(bomb, out, max_bytes=1_000_000)
    assert caught.value.status == 413
    assert out.stat().st_size <= 1_000_000


def test_it_refuses_a_compressed_file_over_the_size_cap(tmp_path):
    with pytest.raises(TooLarge):
        loading.copy_capped([b"x" * 600, b"x" * 600], tmp_path / "f", max_bytes=1000)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_it_refuses_more_rows_than_the_limit(tmp_path, fmt):
    prompts = [f"p{i}" for i in range(5)]
    data = jsonl(*({"prompt": p} for p in prompts)) if fmt == "jsonl" else parquet(
        {"prompt": prompts})
    limits = screening.UploadLimits(max_bytes=10**6, max_decompressed_bytes=10**6, max_rows=4)
    with pytest.raises(TooLarge, match="5 rows"):
        load(data, f"p.{fmt}", tmp_path / "w", limits)


def test_it_keeps_the_datasets_cache_inside_the_work_dir(tmp_path, monkeypatch):
    home_cache = tmp_path / "home-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home_cache)
    load(jsonl({"prompt": "a"}), "p.jsonl", tmp_path / "w")
    assert not home_cache.exists()
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["upload.bin"]


def test_reading_every_format_does_not_import_torch(tmp_path):
    """``webapp`` never imports torch; the ``datasets`` library must not drag it in."""
    script = f"""
import io, pathlib, sys
import pyarrow as pa, pyarrow.parquet as pq
from webapp.datasets import loading, screening, validation
buffer = io.BytesIO(); pq.write_table(pa.table({{"prompt": ["a"]}}), buffer)
limits = screening.UploadLimits(10**6, 10**6, 10)
for i, (data, name) in enumerate([(b'{{"prompt": "a"}}', "a.jsonl"), (b"prompt\\na", "a.csv"),
                                  (buffer.getvalue(), "a.parquet")]):
    work = pathlib.Path({str(tmp_path)!r}) / str(i); work.mkdir()
    table = loading.load_upload([data], filename=name, work_dir=work, limits=limits)
    rows = validation.normalise_rows(loading.iter_rows(table), "prompts")
    assert list(rows) == [{{"prompt": "a"}}]
print("torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- kinds -----------------------------------------------------------------------------------

def test_it_keeps_other_columns_and_turns_numeric_answers_into_text():
    rows = check("prompts", {"prompt": "a", "answer": 2.0, "meta": {"id": 1}},
                 {"prompt": "b", "answer": 2.5, "meta": None}, {"prompt": "c", "answer": ""})
    assert rows == [{"prompt": "a", "answer": "2", "meta": {"id": 1}},
                    {"prompt": "b", "answer": "2.5", "meta": None},
                    {"prompt": "c", "answer": None}]


def test_it_writes_dates_as_text_and_nans_as_null_in_other_columns(tmp_path):
    data = parquet({"prompt": ["a"], "day": [datetime.date(2025, 1, 31)],
                    "score": [float("nan")]})
    rows = rows_of(data, "p.parquet", "prompts", tmp_path / "w")
    assert rows == [{"prompt": "a", "day": "2025-01-31", "score": None}]


def test_it_names_the_rows_with_bad_prompts():
    error = problems("prompts", {"prompt": "ok"}, {"prompt": "  "}, {"prompt": None},
                     {"prompt": [{"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "a"}]},
                     {"prompt": [{"role": "robot", "content": "q"}]}, {"prompt": []},
                     {"prompt": 5})
    assert error.status == 422
    assert error.rows == [2, 3, 4, 5, 6, 7]
    assert error.detail.startswith("Row 2: 'prompt' is empty; row 3: 'prompt' is missing; "
                                   "row 4: 'prompt' ends with an assistant message")
    assert "6 rows have problems in all." in error.detail


def test_it_normalises_preference_pairs_with_a_margin():
    rows = check("preferences", {"prompt": "p", "chosen": "good", "rejected": "bad",
                                 "margin": "0.5"},
                 {"prompt": "p", "chosen": "good", "rejected": "bad", "margin": ""})
    assert [row["margin"] for row in rows] == [0.5, None]


def test_it_names_the_rows_with_bad_preference_pairs():
    error = problems("preferences",
                     {"prompt": "p", "chosen": "a", "rejected": "b"},
                     {"prompt": "p", "chosen": 3, "rejected": "b"},
                     {"prompt": "p", "chosen": "same", "rejected": "same"},
                     {"prompt": "p", "chosen": "a", "rejected": "b", "margin": float("inf")})
    assert error.rows == [2, 3, 4]
    assert error.detail == ("Row 2: 'chosen' must be text; row 3: 'chosen' and 'rejected' are "
                            "the same text; row 4: 'margin' must be a finite number.")


def test_it_turns_grouped_rankings_into_a_rank_per_response():
    rows = check("rankings", {"prompt": "p", "responses": ["a", "b", "c", "d"],
                              "ranking": [[2], [0, 3], [1]]},
                 {"prompt": "p", "responses": ["a", "b"], "ranking": [1, 1]})
    assert [row["ranking"] for row in rows] == [[2, 3, 1, 2], [1, 1]]


def test_it_names_the_rows_with_bad_rankings():
    error = problems("rankings",
                     {"prompt": "p", "responses": ["a", "b"], "ranking": [1, 2]},
                     {"prompt": "p", "responses": ["a"], "ranking": [1]},
                     {"prompt": "p", "responses": ["a", "b"], "ranking": [1, 3]},
                     {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [1, 2]},
                     {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [[0], [1, 1]]},
                     {"prompt": "p", "responses": ["a", ""], "ranking": [1, 2]})
    assert error.rows == [2, 3, 4, 5, 6]
    assert "Row 2: 'responses' needs at least 2 responses, has 1" in error.detail
    assert "row 3: 'ranking' ranks must be whole numbers from 1 (best) to 2" in error.detail
    assert "row 4: 'ranking' has 2 ranks for 3 responses" in error.detail
    assert "row 5: 'ranking' groups must hold each response index 0 to 2 exactly once" in (
        error.detail)


def test_it_lists_at_most_20_bad_rows_and_counts_the_rest():
    error = problems("prompts", *({"prompt": ""} for _ in range(30)))
    assert error.rows == list(range(1, 21))
    assert error.detail.endswith("30 rows have problems in all.")


def test_it_rejects_a_csv_without_a_prompt_column(tmp_path):
    table = load(b"question,answer\nwhy?,because\n", "q.csv", tmp_path / "w")
    with pytest.raises(Invalid) as caught:
        validation.check_columns(table.column_names, "prompts")
    assert caught.value.fields == {"prompt": "missing"}
    assert "'question', 'answer'" in caught.value.detail


def test_it_names_every_missing_column():
    with pytest.raises(Invalid) as caught:
        validation.check_columns(["prompt", "chosen"], "preferences")
    assert caught.value.fields == {"rejected": "missing"}


def test_previews_cut_long_strings_anywhere_in_a_row():
    row = {"prompt": [{"role": "user", "content": "x" * 600}], "answer": "short"}
    cut = validation.truncate(row, 500)
    assert cut["prompt"][0]["content"] == "x" * 500 + "…"
    assert cut["answer"] == "short"
    assert row["prompt"][0]["content"] == "x" * 600
