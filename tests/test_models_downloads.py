"""A hub model asked for by id: a real worker fetches it into the shared Hugging Face cache
(from a fake hub on localhost: the real one cannot be reached here), progress and state are
followed in the API, and it appears as ``hf:<id>`` when complete; offline, gated, missing and
pickle-only repositories fail at once saying what to do; malformed ids, too many downloads and
models already cached are refused; a download is canceled by whoever asked for it."""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.architectures import BY_ID, save_model
from tests.conftest import WorkerProcess, wait_for, worker_env
from tests.fake_hub import fake_hub
from tests.hf_cache import cache_model, empty
from webapp.runs.models import ModelDownload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _ask(client, hub_id, revision=None):
    body = {"hub_id": hub_id} | ({"revision": revision} if revision else {})
    return client.post("/api/models", json.dumps(body), content_type="application/json")


def _ended(client, model_id: str) -> dict:
    return wait_for(lambda: (s := client.get(f"/api/models/{model_id}").json())["status"] in (
        "ready", "failed", "cancelled") and s, timeout=120, what=f"{model_id}'s download")


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory) -> Path:
    return save_model(BY_ID["qwen3"], tmp_path_factory.mktemp("qwen3"))


@pytest.fixture
def cache():
    folder = empty(Path(settings.HF_HUB_CACHE))
    yield folder
    empty(folder)


@pytest.fixture(scope="module")
def _hub_and_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A fake hub, and a worker on a queue of this module's own that reaches it
    (HF_ENDPOINT), started once for the module's tests."""
    queue = f"test-hub-{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        env = worker_env()
    with fake_hub() as (hub, url):
        worker = WorkerProcess(queue, tmp_path_factory.mktemp("hub") / "worker.log", name="hub",
                               env=env | {"RLHF_TRAINING_QUEUE": queue, "HF_ENDPOINT": url,
                                          "HF_HUB_OFFLINE": "0"})
        try:
            yield hub, worker.wait_ready(), queue
        finally:
            worker.stop()


@pytest.fixture
def hub_worker(_hub_and_worker, settings, transactional_db, cache):
    hub, worker, queue = _hub_and_worker
    settings.TRAINING_QUEUE = queue
    return hub, worker


def test_a_hub_model_downloads_and_appears_when_complete(api, other_api, hub_worker,
                                                         qwen3_dir):
    hub, _ = hub_worker
    commit = hub.add("test-org/tiny-qwen3", qwen3_dir)
    (qwen3_dir / "pytorch_model.bin").write_bytes(b"pickle, never fetched")

    response = _ask(api, "test-org/tiny-qwen3")
    done = _ended(api, "hf:test-org/tiny-qwen3")

    assert response.status_code == 202 and response.json()["status"] in ("queued", "downloading")
    assert done["status"] == "ready", done["error"]
    assert (done["source"], done["progress"], done["revision"]) == ("hf_cache", 1.0, commit)
    assert done["card"]["architecture"] == "Qwen3ForCausalLM"
    assert not any("pytorch_model.bin" in r for r in hub.requests)  # safetensors only
    theirs = {m["id"] for m in other_api.get("/api/models").json()}
    assert "hf:test-org/tiny-qwen3" in theirs  # the cache is everyone's
    assert _ask(api, "test-org/tiny-qwen3").status_code == 409  # already cached
    (qwen3_dir / "pytorch_model.bin").unlink()


@pytest.mark.parametrize("setup, words", [
    ("gated", "HF_TOKEN"), ("missing", "No model"), ("pickle", "safetensors"),
])
def test_what_cannot_be_fetched_fails_at_once_saying_what_to_do(api, hub_worker, qwen3_dir,
                                                                tmp_path, setup, words):
    hub, _ = hub_worker
    repo = f"test-org/{setup}"
    if setup == "gated":
        hub.add(repo, qwen3_dir)
        hub.gated.add(repo)
    elif setup == "pickle":
        folder = tmp_path / "pickled"
        shutil.copytree(qwen3_dir, folder)
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        hub.add(repo, folder)

    assert _ask(api, repo).status_code == 202
    done = _ended(api, f"hf:{repo}")

    assert done["status"] == "failed" and words in done["error"]
    assert f"hf:{repo}" not in {m["id"] for m in api.get("/api/models").json()}


def test_offline_the_worker_fails_it_at_once_saying_what_to_do(api, worker, cache):
    """The session's worker has HF_HUB_OFFLINE=1 (tests/settings.py), as an air-gapped
    deployment would."""
    assert _ask(api, "Qwen/Qwen2.5-0.5B-Instruct").status_code == 202

    done = _ended(api, "hf:Qwen/Qwen2.5-0.5B-Instruct")

    assert done["status"] == "failed"
    assert "offline" in done["error"] and "register a directory" in done["error"]


@pytest.mark.parametrize("body, field", [
    ({"hub_id": "no-slash"}, "hub_id"), ({"hub_id": "a/b/c"}, "hub_id"),
    ({"hub_id": "../etc"}, "hub_id"), ({"hub_id": "org/name", "revision": "../x"}, "revision"),
    ({"hub_id": "org/name", "path": "/models/x"}, "path"),
])
def test_a_malformed_request_is_a_422_and_nothing_is_stored(api, body, field):
    response = api.post("/api/models", json.dumps(body), content_type="application/json")

    assert response.status_code == 422 and field in response.json()["fields"]
    assert not ModelDownload.objects.exists()


def test_downloads_are_bounded_per_user_and_canceled_by_who_asked(api, other_api, settings,
                                                                 transactional_db, cache):
    settings.TRAINING_QUEUE = f"test-nobody-{uuid.uuid4().hex[:8]}"  # no worker takes them
    assert _ask(api, "org/one").status_code == 202
    assert _ask(api, "org/one").json()["id"] == "hf:org/one"  # the same download, not another
    assert _ask(api, "org/two").status_code == 202

    third = _ask(api, "org/three")

    assert third.status_code == 409 and "cancel one" in third.json()["detail"]
    assert other_api.post("/api/models/hf:org/one/cancel").status_code == 404
    cancelled = api.post("/api/models/hf:org/one/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.post("/api/models/hf:org/one/cancel").status_code == 409
    assert _ask(api, "org/three").status_code == 202


def test_a_model_in_the_cache_reads_as_ready(api, cache, qwen3_dir):
    cache_model(cache, "test-org/cached", qwen3_dir)

    state = api.get("/api/models/hf:test-org/cached").json()

    assert (state["status"], state["progress"], state["ready"]) == ("ready", 1.0, True)
    assert api.get("/api/models/hf:test-org/nothing").status_code == 404


def test_the_models_page_downloads_shows_progress_and_cancels(client, user, other_user,
                                                             hub_worker, qwen3_dir):
    hub, _ = hub_worker
    hub.add("test-org/from-the-page", qwen3_dir)
    client.force_login(user)

    page = client.post("/models/download/", {"hub_id": "test-org/from-the-page"},
                       follow=True).content.decode()
    download = ModelDownload.objects.get()
    wait_for(lambda: (download.refresh_from_db(), download.status)[1] in ("ready", "failed"),
             timeout=120, what="the page's download")
    fragment = client.get("/models/downloads/").content.decode()

    assert "a worker downloads it" in page and 'id="download-model"' in page
    assert download.status == "ready", download.error
    assert "hf:test-org/from-the-page" in fragment and "ready" in fragment
    assert "hx-get" not in fragment  # nothing left to follow
    assert "test-org/from-the-page" in client.get("/models/").content.decode()
    client.force_login(other_user)
    assert "from-the-page" not in client.get("/models/downloads/").content.decode()
    assert client.post(f"/models/downloads/{download.pk}/cancel/").status_code == 404
