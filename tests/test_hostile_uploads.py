"""Uploads a hostile user sends: deep JSON, broken UTF-8, executables and odd names, HTML
named .csv, huge lines and fields, compression bombs, odd Parquet types, thousands of chat
turns. Each is a clear 4xx JSON error that names the row where there is one, and leaves no
dataset row and no file behind."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from webapp.datasets.models import Dataset

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("datasets_dir")]

GOOD = b'{"prompt": "a"}\n'


def upload(client, data: bytes, filename: str = "data.jsonl", kind: str = "prompts",
           name: str = "my data"):
    return client.post("/api/datasets", {"file": SimpleUploadedFile(filename, data),
                                         "kind": kind, "name": name})


def refused(response, status: int, datasets_dir: Path) -> dict:
    """The answer is the JSON error ``status`` and nothing was stored."""
    assert response.status_code == status, response.content[:400]
    body = response.json()
    assert body["error"] and body["detail"]
    assert not Dataset.objects.exists()
    left = [p for p in datasets_dir.rglob("*") if p.is_file()] if datasets_dir.exists() else []
    assert left == [], left
    return body


def parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


# -- the list ----------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1_000, 5_000, 20_000])
def test_a_deeply_nested_jsonl_value_is_a_422_naming_the_row(api, datasets_dir, depth):
    deep = b'{"prompt": "a", "x": ' + b"[" * depth + b"]" * depth + b"}\n"
    body = refused(upload(api, GOOD + deep), 422, datasets_dir)
    assert body["rows"] == [2]
    assert f"Line 2 nests {depth + 1} levels deep" in body["detail"]


def test_brackets_inside_strings_do_not_count_as_nesting(api):
    response = upload(api, json.dumps({"prompt": "[" * 5000 + "{" * 5000}).encode())
    assert response.status_code == 201, response.content


def test_invalid_utf8_is_a_422_naming_the_row(api, datasets_dir):
    body = refused(upload(api, GOOD + GOOD + b'{"prompt": "caf\xe9"}\n'), 422, datasets_dir)
    assert body["rows"] == [3]
    assert "not UTF-8" in body["detail"]


@pytest.mark.parametrize("filename", ["tool.exe", "shell.php", "data.json", "data.txt",
                                      "data", "data.jsonl.exe", "data.gz"])
def test_a_name_this_server_does_not_read_is_a_415(api, datasets_dir, filename):
    body = refused(upload(api, GOOD, filename), 415, datasets_dir)
    assert ".jsonl" in body["detail"]


def test_a_nul_in_the_name_cannot_smuggle_an_extension(api, datasets_dir):
    # "evil.jsonl\0.exe": the NUL is dropped, so the name ends in .exe
    refused(upload(api, GOOD, "evil.jsonl\x00.exe"), 415, datasets_dir)


def test_names_are_stored_without_directories_control_characters_or_excess_length(api):
    long_name = "a" * 300 + ".jsonl"
    for sent, stored in [("../../etc/passwd.jsonl", "passwd.jsonl"),
                         ("C:\\Users\\x\\prompts.jsonl", "prompts.jsonl"),
                         ("pro\x1bmpts\u202e.jsonl", "prompts.jsonl"),
                         (long_name, "a" * 194 + ".jsonl")]:
        response = upload(api, GOOD, sent)
        assert response.status_code == 201, (sent, response.content)
        assert response.json()["original_filename"] == stored
        assert len(stored) <= 200


@pytest.mark.parametrize("data", [
    b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>",
    b"<html>\nprompt\n<script>alert(1)</script>\n</html>\n",
    b"\xef\xbb\xbf<script>fetch('/api/runs')</script>,x\n",
])
def test_an_html_document_named_csv_is_a_415(api, datasets_dir, data):
    refused(upload(api, data, "prompts.csv"), 415, datasets_dir)


def test_a_csv_header_with_markup_is_refused(api, datasets_dir):
    body = refused(upload(api, b'prompt,"<img src=x onerror=alert(1)>"\nhi,1\n', "p.csv"),
                   422, datasets_dir)
    assert "column name" in body["detail"]


def test_html_in_a_cell_is_stored_as_text_and_shown_escaped(api, client, user):
    response = upload(api, b'prompt\n"<script>alert(1)</script>"\n', "p.csv")
    assert response.status_code == 201
    client.force_login(user)
    page = client.get(f"/datasets/{response.json()['id']}/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("filename", ["p.jsonl", "p.csv"])
def test_a_line_over_one_megabyte_is_a_422_naming_it(api, datasets_dir, filename):
    if filename.endswith(".csv"):
        data = b"prompt\nhello\n" + b"x" * (1024 * 1024 + 1) + b"\n"
        row = 2  # data row 2 is line 3
    else:
        data = GOOD + json.dumps({"prompt": "x" * (1024 * 1024)}).encode() + b"\n"
        row = 2
    body = refused(upload(api, data, filename), 422, datasets_dir)
    assert body["rows"] == [row]
    assert "RLHF_UPLOAD_MAX_LINE_BYTES" in body["detail"]


# -- twelve of our own ---------------------------------------------------------------------

def test_own_1_a_gzip_bomb_stops_at_the_decompressed_cap(api, datasets_dir, settings):
    settings.UPLOAD_MAX_DECOMPRESSED_BYTES = 1_000_000
    bomb = gzip.compress(b" " * 50_000_000)  # 49 KB that unpack to 50 MB
    body = refused(upload(api, bomb, "p.jsonl.gz"), 413, datasets_dir)
    assert "RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES" in body["detail"]


def test_own_2_a_parquet_bomb_is_refused_from_its_footer(api, datasets_dir, settings):
    settings.UPLOAD_MAX_DECOMPRESSED_BYTES = 1_000_000
    data = parquet(pa.table({"prompt": ["a" * 1000] * 5000}), compression="zstd")
    assert len(data) < 100_000  # 5 MB of text in a few kilobytes
    body = refused(upload(api, data, "p.parquet"), 413, datasets_dir)
    assert "unpacks to" in body["detail"]


def test_own_3_a_quoted_csv_field_spanning_many_lines_is_bounded(api, datasets_dir):
    field = "\n".join(["y" * 1000] * 1500)  # 1.5 MB in one cell, no line over 1 KB
    data = b'prompt\n"' + field.encode() + b'"\n'
    body = refused(upload(api, data, "p.csv"), 422, datasets_dir)
    assert "at most 1000000" in body["detail"]


def test_own_4_json_nested_deep_inside_a_csv_cell_is_a_422(api, datasets_dir):
    cell = "[" * 20_000 + "]" * 20_000
    body = refused(upload(api, f'prompt,responses,ranking\nhi,"{cell}","[1]"\n'.encode(),
                          "r.csv", kind="rankings"), 422, datasets_dir)
    assert body["rows"] == [1]


def test_own_5_a_parquet_column_nested_deeper_than_the_cap(api, datasets_dir):
    value: object = "a"
    arrow_type: pa.DataType = pa.string()
    for _ in range(40):
        value, arrow_type = [value], pa.list_(arrow_type)
    table = pa.table({"prompt": pa.array(["hi"]), "x": pa.array([value], type=arrow_type)})
    body = refused(upload(api, parquet(table), "p.parquet"), 422, datasets_dir)
    assert "nests 40 levels" in body["detail"]


def test_own_6_a_parquet_prompt_of_bytes_or_numbers_is_not_text(api, datasets_dir):
    for column in (pa.array([b"\xff\xfe binary"]), pa.array([3.5]), pa.array([[1, 2]])):
        response = upload(api, parquet(pa.table({"prompt": column})), "p.parquet")
        body = refused(response, 422, datasets_dir)
        assert body["rows"] == [1]


def test_own_7_a_chat_prompt_with_thousands_of_turns(api, datasets_dir):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}] * 2500
    turns.append({"role": "user", "content": "and?"})
    body = refused(upload(api, GOOD + json.dumps({"prompt": turns}).encode()), 422, datasets_dir)
    assert body["rows"] == [2]
    assert "5001 messages" in body["detail"]


def test_own_8_an_unpaired_surrogate_in_a_row(api, datasets_dir):
    body = refused(upload(api, GOOD + b'{"prompt": "\\ud800 broken"}\n'), 422, datasets_dir)
    assert body["rows"] == [2]
    assert "surrogate" in body["detail"]


@pytest.mark.parametrize("name", ["report\u202egpj.exe", "a\x00b", "tab\there", "zero\u200bwidth",
                                  "x" * 201, "   "])
def test_own_9_a_name_with_invisible_characters_or_too_long(api, datasets_dir, name):
    body = refused(upload(api, GOOD, name=name), 422, datasets_dir)
    assert "name" in body["fields"]


def test_own_10_ten_thousand_columns(api, datasets_dir):
    header = ",".join(["prompt"] + [f"c{i}" for i in range(10_000)])
    data = (header + "\n" + ",".join(["hi"] + ["0"] * 10_000) + "\n").encode()
    body = refused(upload(api, data, "p.csv"), 422, datasets_dir)
    assert "10001 columns" in body["detail"]


def test_own_11_a_ranking_of_a_thousand_responses(api, datasets_dir):
    row = {"prompt": "pick", "responses": [f"r{i}" for i in range(1000)],
           "ranking": list(range(1, 1001))}
    body = refused(upload(api, json.dumps(row).encode(), kind="rankings"), 422, datasets_dir)
    assert "1000 responses" in body["detail"]


def test_own_12_a_zip_or_an_executable_named_jsonl_or_csv(api, datasets_dir):
    refused(upload(api, b"PK\x03\x04" + b"\x00" * 100, "p.csv"), 415, datasets_dir)
    refused(upload(api, b"MZ\x90\x00\x03\x00\x00\x00", "p.csv"), 415, datasets_dir)
    body = refused(upload(api, b"\x7fELF\x02\x01\x01" + b"\x00" * 50, "p.jsonl"), 422,
                   datasets_dir)
    assert body["rows"] == [1]
