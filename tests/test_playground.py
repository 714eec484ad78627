"""The playground: a prompt answered by a model (and a checkpoint's base model) through the
labeling worker task, kept out of the dataset and batch lists, the ticked completions sent
to a ranking batch. Generation itself runs on a real worker in tests/test_browser_playground.py;
here the completions are written as the worker writes them."""
from __future__ import annotations

import pytest

from tests.runs_helpers import make_dataset, make_run
from tests.site_data import write_checkpoint
from webapp.datasets.models import Dataset
from webapp.labeling import services as labeling
from webapp.labeling.models import Batch, BatchOrigin, BatchStatus, Response
from webapp.playground import selectors, services

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dirs(settings, tmp_path):
    settings.CHECKPOINTS_DIR = tmp_path / "checkpoints"
    settings.DATASETS_DIR = tmp_path / "datasets"


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def written(batch: Batch, texts: list[str]) -> None:
    """What the worker does for a one-item batch: claim, record the item, finish."""
    attempt = labeling.batch_claim(batch_id=batch.pk, worker="test")
    labeling.batch_record_items(batch_id=batch.pk, attempt=attempt, items=[{
        "index": 0, "prompt": "Name a cat.", "prompt_text": "Name a cat.", "responses": texts}])
    labeling.batch_finish(batch_id=batch.pk, attempt=attempt, status=str(BatchStatus.READY))


def test_a_checkpoint_is_answered_beside_its_base_model(signed_in, user):
    checkpoint = write_checkpoint(make_run(user, make_dataset(user), name="tuned", steps=1), 1)
    response = signed_in.post("/playground/generate/", {
        "model": checkpoint.model_id, "prompt": "Name a cat.", "responses_per_prompt": 2,
        "max_new_tokens": 8, "temperature": 0.7})
    first = Batch.objects.filter(origin=BatchOrigin.PLAYGROUND).order_by("pk").first()
    assert response.status_code == 302 and response.url == f"/playground/{first.pk}/"
    session = selectors.playground_session_get(user=user, session_id=first.pk)
    assert [(c.batch.model, c.role) for c in session.columns] == [
        (checkpoint.model_id, "picked"), ("tiny-llama", "base")]
    assert all(c.batch.responses_per_prompt == 2 and c.batch.max_new_tokens == 8
               and c.batch.items_expected == 1 for c in session.columns)
    assert session.prompt == "Name a cat." and session.dataset.hidden

    # kept out of the lists people browse
    assert session.dataset.pk not in [d["id"] for d in signed_in.get("/api/datasets").json()]
    assert "Playground: Name a cat." not in signed_in.get("/datasets/").content.decode()
    assert "Playground ·" not in signed_in.get("/labeling/").content.decode()
    assert "Name a cat." in signed_in.get("/playground/").content.decode()  # listed here


def test_the_ticked_completions_become_a_ready_ranking_batch(signed_in, user,
                                                            django_capture_on_commit_callbacks):
    checkpoint = write_checkpoint(make_run(user, make_dataset(user), steps=1), 1)
    first = services.playground_generate(owner=user, model=checkpoint.model_id,
                                         prompt="Name a cat.", responses_per_prompt=2)
    session = selectors.playground_session_get(user=user, session_id=first.pk)
    written(session.columns[0].batch, ["Tom", "Felix"])
    written(session.columns[1].batch, ["Cat", ""])
    page = signed_in.get(f"/playground/{first.pk}/").content.decode()
    assert "Felix" in page and "(empty completion)" in page and "every 2s" not in page

    session = selectors.playground_session_get(user=user, session_id=first.pk)
    picked = [session.columns[0].responses[1].pk, session.columns[1].responses[0].pk]
    response = signed_in.post(f"/playground/{first.pk}/rank/", {
        "response": picked, "name": "cats", "shared": "on"})
    batch = Batch.objects.get(name="cats")
    assert response.status_code == 302 and response.url == f"/labeling/{batch.pk}/rank/"
    assert batch.status == BatchStatus.READY and batch.shared and batch.origin == "samples"
    texts = list(Response.objects.filter(item__batch=batch).order_by("index")
                 .values_list("text", "source"))
    assert [t for t, _ in texts] == ["Felix", "Cat"]
    assert [s["model"] for _, s in texts] == [checkpoint.model_id, "tiny-llama"]

    too_few = signed_in.post(f"/playground/{first.pk}/rank/", {"response": picked[:1],
                                                               "name": "one"}, follow=True)
    assert "Tick 2 to 8" in too_few.content.decode()
    assert not Batch.objects.filter(name="one").exists()

    # deleting the session takes its batches and prompt along; the ranking batch stays
    path = session.dataset.file_path
    with django_capture_on_commit_callbacks(execute=True):  # the file goes after the commit
        assert signed_in.post(f"/playground/{first.pk}/delete/").status_code == 302
    assert not Batch.objects.filter(origin=BatchOrigin.PLAYGROUND).exists()
    assert not Dataset.objects.filter(pk=session.dataset.pk).exists() and not path.exists()
    assert Batch.objects.filter(pk=batch.pk).exists()


@pytest.mark.parametrize("fields, field", [({"prompt": "   "}, "prompt"),
                                           ({"model": "no-such-model"}, "model"),
                                           ({"responses_per_prompt": 9}, "responses_per_prompt"),
                                           ({"max_new_tokens": 0}, "max_new_tokens")])
def test_a_bad_request_names_the_field_and_stores_nothing(signed_in, fields, field):
    body = {"model": "tiny-llama", "prompt": "Hi", "responses_per_prompt": 2,
            "max_new_tokens": 8, "temperature": 0.8} | fields
    response = signed_in.post("/playground/generate/", body)
    assert response.status_code == 422
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert not Batch.objects.exists() and not Dataset.objects.exists()


def test_a_bundled_model_has_no_base_column(user):
    first = services.playground_generate(owner=user, model="tiny-llama", prompt="Hi")
    session = selectors.playground_session_get(user=user, session_id=first.pk)
    assert [c.batch.model for c in session.columns] == ["tiny-llama"]


def test_another_persons_session_is_404(signed_in, other_user):
    theirs = services.playground_generate(owner=other_user, model="tiny-llama",
                                          prompt="Their secret prompt")
    for method, path in (("get", f"/playground/{theirs.pk}/"),
                         ("post", f"/playground/{theirs.pk}/rank/"),
                         ("post", f"/playground/{theirs.pk}/delete/")):
        assert getattr(signed_in, method)(path).status_code == 404, path
    assert "Their secret prompt" not in signed_in.get("/playground/").content.decode()


def test_a_refusal_after_the_prompt_is_stored_leaves_neither_row_nor_file(signed_in, settings,
                                                                         tmp_path):
    settings.MAX_NEW_TOKENS = 4  # this server's cap, checked once the batch is being made
    response = signed_in.post("/playground/generate/", {
        "model": "tiny-llama", "prompt": "Hi there", "responses_per_prompt": 2,
        "max_new_tokens": 8, "temperature": 0.8})
    assert response.status_code == 422 and "RLHF_MAX_NEW_TOKENS" in response.content.decode()
    assert response.context["form"].errors.get("max_new_tokens")
    assert not Batch.objects.exists() and not Dataset.objects.exists()
    assert not [p for p in (tmp_path / "datasets").glob("*.jsonl")]


def test_the_api_does_what_the_page_does(api, user, other_api):
    made = api.post("/api/playground", {"model": "tiny-llama", "prompt": "Name a dog.",
                                        "responses_per_prompt": 3},
                    content_type="application/json")
    assert made.status_code == 201, made.content
    session = made.json()
    assert session["generating"] and [c["model"] for c in session["columns"]] == ["tiny-llama"]
    written(Batch.objects.get(pk=session["columns"][0]["batch"]), ["Rex", "Fido", "Spot"])
    session = api.get(f"/api/playground/{session['id']}").json()
    assert not session["generating"]
    ids = [c["id"] for c in session["columns"][0]["completions"]]
    assert other_api.get(f"/api/playground/{session['id']}").status_code == 404

    batch = api.post(f"/api/playground/{session['id']}/batch",
                     {"name": "dogs", "completions": ids[:2]}, content_type="application/json")
    assert batch.status_code == 201 and batch.json()["items_total"] == 1
    bad = api.post(f"/api/playground/{session['id']}/batch", {"name": "x", "completions": [1]},
                   content_type="application/json")
    assert bad.status_code == 422 and "responses" in bad.json()["fields"]
    unknown = api.post("/api/playground", {"model": "tiny-llama", "prompt": "x", "owner": 2},
                       content_type="application/json")
    assert unknown.status_code == 422 and unknown.json()["fields"] == {"owner": "unknown field"}
    assert api.delete(f"/api/playground/{session['id']}").status_code == 204
    assert api.get(f"/api/playground/{session['id']}").status_code == 404
