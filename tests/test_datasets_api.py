"""``/api/datasets`` and the services behind it: upload, storage, limits, listing, access."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from webapp.datasets import services
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import dataset_rows
from webapp.errors import Invalid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("datasets_dir")]


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def upload(client, data: bytes, filename: str = "data.jsonl", kind: str = "prompts",
           name: str | None = "my data", path: str = "/api/datasets"):
    form: dict[str, Any] = {"file": SimpleUploadedFile(filename, data), "kind": kind}
    if name is not None:
        form["name"] = name
    return client.post(path, form)


def stored_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*")) if directory.exists() else []


PAIRS = jsonl({"prompt": "Say hi", "chosen": "Hi!", "rejected": "No.", "margin": 1},
              {"prompt": [{"role": "user", "content": "Count"}], "chosen": "1 2 3",
               "rejected": "3 2 1"})


# -- upload ----------------------------------------------------------------------------------

def test_it_stores_an_uploaded_preference_file_and_returns_it(api, user, datasets_dir):
    response = upload(api, PAIRS, "pairs.jsonl", kind="preferences")
    assert response.status_code == 201
    body = response.json()
    assert {"id", "name", "kind", "rows", "columns", "preview", "created_at",
            "size_bytes"} <= set(body)
    assert (body["name"], body["kind"], body["rows"]) == ("my data", "preferences", 2)
    assert body["columns"] == ["prompt", "chosen", "rejected", "margin"]
    assert body["size_bytes"] == len(PAIRS)
    assert body["preview"][0] == {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No.",
                                  "margin": 1.0}
    dataset = Dataset.objects.get(pk=body["id"])
    assert dataset.owner == user
    assert dataset.file_path.parent == datasets_dir
    assert list(dataset_rows(dataset)) == body["preview"]
    assert stored_files(datasets_dir) == [dataset.file_path]


def test_it_accepts_the_collection_path_with_a_trailing_slash(api):
    assert upload(api, jsonl({"prompt": "a"}), path="/api/datasets/").status_code == 201
    assert api.get("/api/datasets/").status_code == 200


def test_it_stores_a_gzipped_csv_of_rankings(api):
    data = gzip.compress(b'prompt,responses,ranking\nPick,"[""a"",""b"",""c""]",'
                         b'"[[2],[0,1]]"\n')
    response = upload(api, data, "ranks.csv.gz", kind="rankings")
    assert response.status_code == 201
    assert response.json()["preview"] == [{"prompt": "Pick", "responses": ["a", "b", "c"],
                                           "ranking": [2, 2, 1]}]


def test_it_stores_a_file_that_django_spools_to_disk(api, settings):
    rows = [{"prompt": f"question {i} " + "x" * 300} for i in range(7_000)]
    data = jsonl(*rows)
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    response = upload(api, data)
    assert response.status_code == 201
    assert response.json()["rows"] == 7_000


def test_it_requires_a_token(client):
    response = upload(client, jsonl({"prompt": "a"}))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert client.get("/api/datasets").status_code == 401


def test_it_asks_for_the_missing_file(api):
    response = api.post("/api/datasets", {"name": "x", "kind": "prompts"})
    assert response.status_code == 422
    assert "file" in response.json()["fields"]


def test_it_asks_for_a_name(api):
    response = upload(api, jsonl({"prompt": "a"}), name=None)
    assert response.status_code == 422
    assert set(response.json()["fields"]) == {"name"}


def test_it_lists_the_kinds_when_the_kind_is_unknown(api):
    response = upload(api, jsonl({"prompt": "a"}), kind="pairs")
    assert response.status_code == 422
    assert response.json()["fields"]["kind"] == "Choose one of: prompts, preferences, rankings."


def test_it_rejects_a_csv_without_a_prompt_column(api, datasets_dir):
    response = upload(api, b"question,answer\nwhy?,because\n", "q.csv")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid"
    assert body["fields"] == {"prompt": "missing"}
    assert "'question', 'answer'" in body["detail"]
    assert not Dataset.objects.exists()
    assert stored_files(datasets_dir) == []


def test_it_names_the_invalid_rows_and_stores_nothing(api, datasets_dir):
    data = jsonl({"prompt": "ok", "chosen": "a", "rejected": "b"},
                 {"prompt": "", "chosen": "a", "rejected": "b"},
                 {"prompt": "ok", "chosen": "a", "rejected": "b"},
                 {"prompt": "ok", "chosen": 7, "rejected": "b"})
    response = upload(api, data, kind="preferences")
    assert response.status_code == 422
    body = response.json()
    assert body["rows"] == [2, 4]
    assert body["detail"] == "Row 2: 'prompt' is empty; row 4: 'chosen' must be text."
    assert not Dataset.objects.exists()
    assert stored_files(datasets_dir) == []


def test_it_names_the_line_of_malformed_json(api):
    response = upload(api, b'{"prompt": "a"}\n{"prompt": \n')
    assert response.status_code == 422
    assert response.json()["rows"] == [2]


def test_it_refuses_an_unknown_file_type_with_415(api):
    response = upload(api, b"\x89PNG\r\n\x1a\n\x00\x00\x00", "cat.png")
    assert response.status_code == 415
    body = response.json()
    assert body["error"] == "unsupported_type"
    assert "JSON Lines" in body["detail"] and "Parquet" in body["detail"]


def test_it_refuses_a_gzip_bomb_and_leaves_nothing_behind(api, settings, datasets_dir):
    settings.UPLOAD_MAX_DECOMPRESSED_BYTES = 100_000
    line = json.dumps({"prompt": "a" * 1000}).encode() + b"\n"
    bomb = gzip.compress(line * 5_000)  # 5 MB of JSON in about 15 kB
    assert len(bomb) < 50_000
    response = upload(api, bomb, "bomb.jsonl.gz")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert "RLHF_UPLOAD_MAX_DECOMPRESSED_BYTES" in response.json()["detail"]
    assert not Dataset.objects.exists()
    assert stored_files(datasets_dir) == []


def test_it_refuses_a_file_over_the_upload_limit(api, settings, datasets_dir):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload(api, jsonl(*({"prompt": "x" * 50} for _ in range(40))))
    assert response.status_code == 413
    assert "RLHF_UPLOAD_MAX_BYTES" in response.json()["detail"]
    assert stored_files(datasets_dir) == []


def test_the_middleware_refuses_a_body_far_over_the_limit(api, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload(api, b'{"prompt": "a"}\n' * 10_000)
    assert response.status_code == 413


def test_it_refuses_more_rows_than_the_limit(api, settings):
    settings.UPLOAD_MAX_ROWS = 3
    response = upload(api, jsonl(*({"prompt": str(i)} for i in range(4))))
    assert response.status_code == 413
    assert "4 rows" in response.json()["detail"]


# -- services --------------------------------------------------------------------------------

def test_it_removes_the_file_when_the_database_write_fails(user, datasets_dir, monkeypatch):
    def fail(**kwargs: Any) -> Dataset:
        raise RuntimeError("database is gone")

    monkeypatch.setattr(Dataset.objects, "create", fail)
    with pytest.raises(RuntimeError):
        services.dataset_create(owner=user, name="x", kind="prompts",
                                upload=SimpleUploadedFile("p.jsonl", jsonl({"prompt": "a"})))
    assert stored_files(datasets_dir) == []


def test_it_stores_rows_made_on_the_server(user):
    dataset = services.dataset_create_from_rows(
        owner=user, name="from labels", kind="preferences",
        rows=[{"prompt": "p", "chosen": "a", "rejected": "b"},
              {"prompt": "q", "chosen": "c", "rejected": "d", "annotator": "bob"}])
    assert dataset.columns == ["prompt", "chosen", "rejected", "annotator"]
    assert [row["annotator"] for row in dataset_rows(dataset)] == [None, "bob"]
    assert dataset.size_bytes == dataset.file_path.stat().st_size


def test_server_rows_are_validated_like_uploads(user):
    with pytest.raises(Invalid) as caught:
        services.dataset_create_from_rows(owner=user, name="x", kind="preferences",
                                          rows=[{"prompt": "p", "chosen": "a", "rejected": "a"}])
    assert caught.value.rows == [1]


@pytest.mark.parametrize(("filename", "name"), [
    ("prefs.jsonl.gz", "prefs"), ("my.data.csv", "my.data"), ("x.parquet", "x"), ("raw", "raw"),
])
def test_the_default_name_is_the_file_name_without_extensions(filename, name):
    assert services.name_from_filename(filename) == name


# -- reading ---------------------------------------------------------------------------------

def make(owner, name: str) -> Dataset:
    return Dataset.objects.create(owner=owner, name=name, kind="prompts", rows=1,
                                  columns=["prompt"], preview=[{"prompt": "p"}],
                                  file=f"{name}.jsonl")


def test_it_lists_my_datasets_newest_first_a_page_at_a_time(api, user, other_user):
    for name in ("one", "two", "three", "four"):
        make(user, name)
    make(other_user, "theirs")
    assert [d["name"] for d in api.get("/api/datasets").json()] == ["four", "three", "two",
                                                                     "one"]
    page = api.get("/api/datasets?limit=2&offset=1").json()
    assert [d["name"] for d in page] == ["three", "two"]
    assert "preview" not in page[0]


def test_it_caps_the_page_size_and_refuses_a_negative_offset(api, user):
    make(user, "one")
    assert len(api.get("/api/datasets?limit=100000").json()) == 1
    assert api.get("/api/datasets?offset=-1").status_code == 422


def test_it_returns_one_dataset_with_its_preview(api, user):
    dataset = make(user, "one")
    body = api.get(f"/api/datasets/{dataset.pk}").json()
    assert (body["id"], body["preview"]) == (dataset.pk, [{"prompt": "p"}])


def test_another_users_dataset_is_not_found(api, other_user):
    dataset = make(other_user, "theirs")
    response = api.get(f"/api/datasets/{dataset.pk}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert api.get("/api/datasets/not-an-id").status_code == 404


def _export(api, dataset_id, fmt):
    response = api.get(f"/api/datasets/{dataset_id}/export?format={fmt}")
    body = b"".join(response.streaming_content).decode() if response.status_code == 200 else ""
    return response, [json.loads(line) for line in body.splitlines() if line]


def test_a_ranked_list_dataset_exports_its_pairs_with_ties_giving_none(api):
    upload = SimpleUploadedFile("ranked.jsonl", jsonl(
        {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, 1, 2]},
        {"prompt": "q", "responses": ["x", "y"], "ranking": [[1], [0]]}))
    created = api.post("/api/datasets", {"file": upload, "name": "r", "kind": "rankings"})
    assert created.status_code == 201, created.content
    response, pairs = _export(api, created.json()["id"], "pairs")
    assert response.status_code == 200
    # b beats a and c (a and c tie: no pair); y beats x
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("p", "b", "a"), ("p", "b", "c"), ("q", "y", "x")]
    _, rows = _export(api, created.json()["id"], "rows")
    assert len(rows) == 2 and rows[1]["ranking"] == [2, 1]


def test_export_refuses_pairs_of_a_prompts_dataset_and_unknown_formats(api, other_api):
    upload = SimpleUploadedFile("p.jsonl", jsonl({"prompt": "hello"}))
    dataset_id = api.post("/api/datasets", {"file": upload, "name": "p",
                                            "kind": "prompts"}).json()["id"]
    assert _export(api, dataset_id, "pairs")[0].status_code == 422
    assert _export(api, dataset_id, "csv")[0].status_code == 422
    assert _export(other_api, dataset_id, "rows")[0].status_code == 404
