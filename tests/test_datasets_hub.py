"""Data sets by hub id: a small GSM8K-shaped data set, fetched once into this server's dataset
cache from a fake hub on localhost (the real one cannot be reached here), is read by
``POST /api/datasets`` while the server is offline, its columns mapped and its origin kept;
a config, split or column that is not there, a data set not cached, a malformed id or limit
are each a 422 naming the field, with nothing stored."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings

from tests.conftest import ROOT
from tests.fake_hub import fake_hub
from webapp.datasets.models import Dataset

QUESTIONS = ["What is 2+2?", "What is 3*3?", "Name a prime below 10."]
README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
A tiny GSM8K-shaped data set.
"""


@pytest.fixture(scope="module")
def cached_gsm(tmp_path_factory):
    """test-org/tiny-gsm in the dataset cache, as `load_dataset` leaves it on a machine that
    reached the hub once (done in a process pointed at the fake hub)."""
    repo = tmp_path_factory.mktemp("tiny-gsm")
    (repo / "data").mkdir()
    table = pa.table({"question": QUESTIONS, "answer": ["4", "9", "7"]})
    pq.write_table(table, repo / "data" / "train-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 1), repo / "data" / "test-00000-of-00001.parquet")
    (repo / "README.md").write_text(README)
    with fake_hub() as (hub, url):
        hub.add("test-org/tiny-gsm", repo)
        subprocess.run([sys.executable, "-c", (
            "import datasets; datasets.load_dataset('test-org/tiny-gsm', 'main', "
            f"split='train', cache_dir={str(settings.HF_DATASETS_CACHE)!r})")],
            env={**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0",
                 "HF_HUB_CACHE": str(tmp_path_factory.mktemp("hub"))},
            check=True, capture_output=True, cwd=ROOT, timeout=120)
    yield
    shutil.rmtree(Path(settings.HF_DATASETS_CACHE) / "test-org___tiny-gsm", ignore_errors=True)


def _post(api, **body):
    return api.post("/api/datasets", json.dumps(body), content_type="application/json")


GSM = dict(hub_id="test-org/tiny-gsm", config="main", split="train", kind="prompts",
           columns={"prompt": "question", "answer": "answer"}, limit=2, name="gsm")


def test_a_cached_hub_data_set_is_read_offline_mapped_and_kept_with_its_origin(api, cached_gsm):
    response = _post(api, **GSM)

    assert response.status_code == 201, response.content
    dataset = response.json()
    assert (dataset["name"], dataset["kind"], dataset["rows"]) == ("gsm", "prompts", 2)
    assert dataset["columns"] == ["prompt", "answer"]
    assert dataset["preview"][0] == {"prompt": QUESTIONS[0], "answer": "4"}
    assert dataset["origin"] == {"hub_id": "test-org/tiny-gsm", "config": "main",
                                 "split": "train", "revision": "main",
                                 "columns": {"prompt": "question", "answer": "answer"}}
    run = api.post("/api/runs", json.dumps({
        "name": "on gsm", "algorithm": "grpo", "dataset": dataset["id"],
        "base_model": "tiny-llama", "rewards": [{"type": "exact_match", "column": "answer"}]}),
        content_type="application/json")
    assert run.status_code == 201, run.content  # the answer column serves exact match


@pytest.mark.parametrize("change, field", [
    ({"config": "nope"}, "config"),
    ({"split": "validation"}, "split"),
    ({"columns": {"prompt": "problem"}}, "columns.prompt"),
    ({"columns": {"answer": "answer"}}, "columns.prompt"),
    ({"columns": {"reward": "answer", "prompt": "question"}}, "columns.reward"),
    ({"hub_id": "test-org/not-cached"}, "hub_id"),
    ({"hub_id": "../etc/passwd"}, "hub_id"),
    ({"limit": 0}, "limit"),
    ({"kind": "poems"}, "kind"),
])
def test_what_is_not_there_is_a_422_naming_the_field(api, cached_gsm, change, field):
    response = _post(api, **(GSM | change))

    assert response.status_code == 422, response.content
    assert field in response.json()["fields"], response.json()
    assert not Dataset.objects.exists()


def test_the_upload_page_reads_one_too(client, user, cached_gsm):
    client.force_login(user)

    bad = client.post("/datasets/from-hub/", {"hub_id": "test-org/tiny-gsm", "config": "main",
                                              "kind": "prompts", "columns": "prompt=problem"})
    good = client.post("/datasets/from-hub/", {
        "hub_id": "test-org/tiny-gsm", "config": "main", "split": "train", "kind": "prompts",
        "columns": "prompt=question, answer", "limit": "3", "name": "gsm from the page"})

    assert bad.status_code == 422 and "no column &#x27;problem&#x27;" in bad.content.decode()
    assert 'value="prompt=problem"' in bad.content.decode()  # what was typed stays
    dataset = Dataset.objects.get()
    assert good.status_code == 302 and good.url == f"/datasets/{dataset.pk}/"
    assert (dataset.name, dataset.rows, dataset.columns) == ("gsm from the page", 3,
                                                             ["prompt", "answer"])
