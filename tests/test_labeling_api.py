"""The labeling API: creating batches, the next item, rankings and their validation, skip,
undo, export, datasets, and who may do what. Items and responses are made directly in the
database here; tests/test_labeling_e2e.py lets a real worker generate them."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import PROMPTS, upload_prompts
from webapp.datasets.models import Dataset
from webapp.labeling.models import Batch, Ranking, Response, Skip

pytestmark = pytest.mark.django_db


from tests.labeling_helpers import (  # noqa: E402
    export,
    make_batch,
    next_item,
    post,
    rank,
    rank_in_order,
    response_ids,
)

# --- creating batches ---

@pytest.fixture
def prompts(api, datasets_dir):
    return upload_prompts(api, PROMPTS[:4])


def body(dataset_id, **overrides):
    payload = {"name": "first batch", "dataset": dataset_id, "model": "tiny-llama",
               "responses_per_prompt": 3, "shared": False}
    return payload | overrides


def test_creating_a_batch_returns_it_queued_with_its_settings(api, prompts):
    response = post(api, "/api/labeling/batches", body(prompts["id"]))
    assert response.status_code == 201, response.content
    batch = response.json()
    assert batch["status"] == "queued" and batch["shared"] is False
    assert batch["items_total"] == 0 and batch["items_ranked_by_you"] == 0
    assert batch["rankings_total"] == 0 and batch["items_expected"] == 4
    assert batch["responses_per_prompt"] == 3 and batch["model"] == "tiny-llama"
    assert (batch["temperature"], batch["top_p"], batch["max_new_tokens"]) == (0.8, 1.0, 128)
    assert batch["agreement"]["comparisons"] == 0 and batch["yours"] is True
    assert api.get(f"/api/labeling/batches/{batch['id']}").json()["id"] == batch["id"]
    assert [b["id"] for b in api.get("/api/labeling/batches").json()] == [batch["id"]]


def test_max_prompts_limits_the_items_expected(api, prompts):
    response = post(api, "/api/labeling/batches", body(prompts["id"], max_prompts=2,
                                                       temperature=1.2, max_new_tokens=16))
    assert response.status_code == 201, response.content
    assert response.json()["items_expected"] == 2
    assert response.json()["max_new_tokens"] == 16


@pytest.mark.parametrize("overrides, field", [
    ({"name": ""}, "name"),
    ({"dataset": None}, "dataset"),
    ({"dataset": 999999}, "dataset"),
    ({"model": "gpt-9"}, "model"),
    ({"model": ""}, "model"),
    ({"responses_per_prompt": 1}, "responses_per_prompt"),
    ({"responses_per_prompt": 9}, "responses_per_prompt"),
    ({"responses_per_prompt": 2.5}, "responses_per_prompt"),
    ({"responses_per_prompt": "four"}, "responses_per_prompt"),
    ({"temperature": 0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_prompts": 0}, "max_prompts"),
    ({"max_prompts": 1001}, "max_prompts"),
])
def test_a_bad_batch_is_a_422_naming_the_field_and_stores_nothing(api, prompts, overrides,
                                                                   field):
    response = post(api, "/api/labeling/batches", body(prompts["id"], **overrides))
    assert response.status_code == 422, response.content
    error = response.json()
    assert error["error"] == "invalid" and error["detail"]
    assert field in error["fields"], error
    assert not Batch.objects.exists()


def test_a_batch_needs_a_prompts_dataset_of_your_own(api, other_api, user, datasets_dir):
    others = upload_prompts(other_api, PROMPTS[:2])
    response = post(api, "/api/labeling/batches", body(others["id"]))
    assert response.status_code == 422 and "dataset" in response.json()["fields"]
    prefs = Dataset.objects.create(owner=user, name="prefs", kind="preferences", rows=1,
                                   columns=["prompt", "chosen", "rejected"], file="x.jsonl")
    response = post(api, "/api/labeling/batches", body(prefs.pk))
    assert response.status_code == 422
    assert "prompts dataset" in response.json()["fields"]["dataset"]
    assert not Batch.objects.exists()


# --- next, ranking, validation ---

def test_next_walks_the_items_and_never_returns_one_you_ranked(api, user):
    batch = make_batch(user, items=3)
    seen = []
    while (response := next_item(api, batch.pk)).status_code == 200:
        item = response.json()
        assert set(item) >= {"item", "prompt", "responses"}
        assert len(item["responses"]) == 3 and {"id", "text"} <= set(item["responses"][0])
        assert item["item"] not in seen
        seen.append(item["item"])
        rank_in_order(api, item["item"])
    assert response.status_code == 204 and response.content == b""
    assert len(seen) == 3
    detail = api.get(f"/api/labeling/batches/{batch.pk}").json()
    assert detail["items_total"] == 3 and detail["items_ranked_by_you"] == 3
    assert detail["rankings_total"] == 3


def test_a_ranking_stores_one_rank_per_response_with_ties(api, user):
    batch = make_batch(user, k=4, items=1)
    item = batch.items.get()
    a, b, c, d = response_ids(item.pk)
    response = rank(api, item.pk, [[c], [a, d], [b]])
    assert response.status_code == 201, response.content
    assert response.json()["ranks"] == [2, 3, 1, 2]
    assert response.json()["ranking"] == [[c], [a, d], [b]]
    assert Ranking.objects.get().ranks == [2, 3, 1, 2]


def test_ranking_the_same_item_again_is_a_409(api, user):
    batch = make_batch(user, items=1)
    item = batch.items.get()
    rank_in_order(api, item.pk)
    response = rank(api, item.pk, [[rid] for rid in reversed(response_ids(item.pk))])
    assert response.status_code == 409 and response.json()["error"] == "wrong_state"
    assert "already ranked" in response.json()["detail"]
    assert Ranking.objects.get().ranks == [1, 2, 3]


@pytest.mark.parametrize("make_ranking, words", [
    (lambda ids, other: [[ids[0]], [ids[1]]], "leaves out"),
    (lambda ids, other: [[ids[0]], [ids[1]], [ids[2]], [other]], "do not belong"),
    (lambda ids, other: [[ids[0]], [ids[1]], [other]], "do not belong"),
    (lambda ids, other: [[ids[0], ids[1]], [ids[1]], [ids[2]]], "more than once"),
    (lambda ids, other: [], "list of groups"),
    (lambda ids, other: None, "list of groups"),
    (lambda ids, other: ids, "Group 1"),
    (lambda ids, other: [[ids[0]], [], [ids[1], ids[2]]], "Group 2"),
    (lambda ids, other: [[ids[0]], ["abc"], [ids[1], ids[2]]], "not a response id"),
    (lambda ids, other: [[ids[0]], [True], [ids[1], ids[2]]], "not a response id"),
])
def test_a_bad_ranking_is_a_422_naming_the_problem_and_stores_nothing(api, user, make_ranking,
                                                                      words):
    batch = make_batch(user, items=2)
    first, second = batch.items.order_by("index")
    response = rank(api, first.pk, make_ranking(response_ids(first.pk),
                                                response_ids(second.pk)[0]))
    assert response.status_code == 422, response.content
    error = response.json()
    assert error["error"] == "invalid" and "ranking" in error["fields"]
    assert words in error["detail"], error
    assert not Ranking.objects.exists()


def test_string_ids_are_accepted_as_the_ids_they_spell(api, user):
    batch = make_batch(user, k=2, items=1)
    item = batch.items.get()
    a, b = response_ids(item.pk)
    assert rank(api, item.pk, [[str(b)], [str(a)]]).status_code == 201
    assert Ranking.objects.get().ranks == [2, 1]


def test_a_ranking_without_a_body_is_a_4xx(api, user):
    item = make_batch(user, items=1).items.get()
    response = api.post(f"/api/labeling/items/{item.pk}/ranking", "{oops",
                        content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]
    assert not Ranking.objects.exists()


# --- skip and undo ---

def test_a_skipped_item_comes_back_only_after_the_others(api, user):
    batch = make_batch(user, items=3)
    first, second, third = batch.items.order_by("index")
    assert next_item(api, batch.pk).json()["item"] == first.pk
    response = api.post(f"/api/labeling/items/{first.pk}/skip")
    assert response.status_code == 204
    assert next_item(api, batch.pk).json()["item"] == second.pk
    assert api.post(f"/api/labeling/items/{second.pk}/skip").status_code == 204
    assert next_item(api, batch.pk).json()["item"] == third.pk
    rank_in_order(api, third.pk)
    # only skipped ones are left: they come back, the longest-skipped first
    assert next_item(api, batch.pk).json()["item"] == first.pk
    rank_in_order(api, first.pk)
    assert not Skip.objects.filter(item=first).exists()
    assert next_item(api, batch.pk).json()["item"] == second.pk
    assert api.get(f"/api/labeling/batches/{batch.pk}").json()["items_skipped_by_you"] == 1
    # skipping an item you ranked is a 409
    response = api.post(f"/api/labeling/items/{first.pk}/skip")
    assert response.status_code == 409 and "already ranked" in response.json()["detail"]


def test_undo_removes_your_latest_ranking_and_the_item_comes_back(api, user):
    batch = make_batch(user, items=3)
    first, second, _ = batch.items.order_by("index")
    rank_in_order(api, first.pk)
    a, b, c = response_ids(second.pk)
    assert rank(api, second.pk, [[b, c], [a]]).status_code == 201
    response = post(api, f"/api/labeling/batches/{batch.pk}/undo")
    assert response.status_code == 200, response.content
    undone = response.json()
    assert undone["item"] == second.pk and undone["ranking"] == [[b, c], [a]]
    assert undone["ranks"] == [2, 1, 1] and len(undone["responses"]) == 3
    assert list(Ranking.objects.values_list("item_id", flat=True)) == [first.pk]
    assert next_item(api, batch.pk).json()["item"] == second.pk
    assert post(api, f"/api/labeling/batches/{batch.pk}/undo").json()["item"] == first.pk
    response = post(api, f"/api/labeling/batches/{batch.pk}/undo")
    assert response.status_code == 409 and "no ranking" in response.json()["detail"]


def test_undo_touches_only_your_own_rankings(api, other_api, user):
    batch = make_batch(user, items=1, shared=True)
    item = batch.items.get()
    rank_in_order(api, item.pk)
    assert post(other_api, f"/api/labeling/batches/{batch.pk}/undo").status_code == 409
    assert Ranking.objects.count() == 1


# --- export ---

def test_export_gives_k_choose_2_pairs_per_strict_ranking_and_none_for_ties(api, user):
    batch = make_batch(user, k=3, items=3)
    first, second, third = batch.items.order_by("index")
    rank_in_order(api, first.pk)  # strict: 3 pairs
    a, b, c = response_ids(second.pk)
    assert rank(api, second.pk, [[a, b], [c]]).status_code == 201  # one tie: 2 pairs
    assert rank(api, third.pk, [response_ids(third.pk)]).status_code == 201  # all tied: 0
    lines = export(api, batch.pk, "pairs")
    by_item = {}
    for line in lines:
        assert set(line) == {"prompt", "chosen", "rejected", "annotator", "item", "item_number"}
        assert line["annotator"] == "alice"
        # the number the ranking and batch pages show: the prompt's row, from 1
        assert line["item_number"] == {first.pk: 1, second.pk: 2, third.pk: 3}[line["item"]]
        by_item.setdefault(line["item"], []).append((line["chosen"], line["rejected"]))
    assert len(by_item[first.pk]) == 3 and len(by_item[second.pk]) == 2
    assert third.pk not in by_item
    texts = {r.pk: r.text for r in Response.objects.all()}
    assert set(by_item[first.pk]) == {
        (texts[x], texts[y]) for x, y in [(response_ids(first.pk)[0], response_ids(first.pk)[1]),
                                          (response_ids(first.pk)[0], response_ids(first.pk)[2]),
                                          (response_ids(first.pk)[1], response_ids(first.pk)[2])]}
    assert set(by_item[second.pk]) == {(texts[a], texts[c]), (texts[b], texts[c])}
    assert lines[0]["prompt"] == first.prompt


def test_two_annotators_give_two_sets_of_pairs_each_naming_its_annotator(api, other_api, user):
    batch = make_batch(user, k=4, items=1, shared=True)
    item = batch.items.get()
    rank_in_order(api, item.pk)
    assert rank(other_api, item.pk, [[rid] for rid in reversed(response_ids(item.pk))]
                ).status_code == 201
    lines = export(api, batch.pk, "pairs")
    assert len(lines) == 2 * 6
    assert sorted({line["annotator"] for line in lines}) == ["alice", "mallory"]
    alice = {(x["chosen"], x["rejected"]) for x in lines if x["annotator"] == "alice"}
    mallory = {(x["chosen"], x["rejected"]) for x in lines if x["annotator"] == "mallory"}
    assert mallory == {(r, c) for c, r in alice}
    rankings = export(api, batch.pk, "rankings")
    assert len(rankings) == 2
    assert {r["annotator"]: r["ranking"] for r in rankings} == {
        "alice": [1, 2, 3, 4], "mallory": [4, 3, 2, 1]}
    assert all(set(r) == {"prompt", "responses", "ranking", "annotator", "item", "item_number"}
               and len(r["responses"]) == 4 for r in rankings)


def test_an_unknown_export_format_is_a_422(api, user):
    batch = make_batch(user)
    response = api.get(f"/api/labeling/batches/{batch.pk}/export?format=csv")
    assert response.status_code == 422 and "format" in response.json()["fields"]


def test_agreement_shows_on_the_batch(api, other_api, user):
    batch = make_batch(user, k=3, items=2, shared=True)
    first, second = batch.items.order_by("index")
    rank_in_order(api, first.pk)
    a, b, c = response_ids(first.pk)
    assert rank(other_api, first.pk, [[b], [a], [c]]).status_code == 201  # one swap
    rank_in_order(api, second.pk)  # one annotator only: no comparison
    detail = api.get(f"/api/labeling/batches/{batch.pk}").json()
    assert detail["agreement"]["comparisons"] == 1
    assert detail["agreement"]["pairwise_agreement"] == pytest.approx(2 / 3)
    assert detail["agreement"]["kendall_tau_b"] == pytest.approx(1 / 3)
    assert {a["annotator"]: a["rankings"] for a in detail["annotators"]} == {
        "alice": 2, "mallory": 1}
    per_item = api.get(f"/api/labeling/batches/{batch.pk}/agreement").json()["items"]
    assert [row["item"] for row in per_item] == [first.pk]


# --- datasets ---

def test_a_dataset_needs_rankings_first(api, user, datasets_dir):
    batch = make_batch(user)
    response = post(api, f"/api/labeling/batches/{batch.pk}/dataset")
    assert response.status_code == 409 and response.json()["error"] == "wrong_state"
    assert not Dataset.objects.filter(kind="preferences").exists()


def test_the_dataset_holds_the_pairs_and_records_its_batch(api, other_api, user, datasets_dir):
    batch = make_batch(user, k=3, items=2, shared=True)
    first, second = batch.items.order_by("index")
    rank_in_order(api, first.pk)  # 3 pairs
    rank_in_order(other_api, first.pk)  # 3 more
    a, b, c = response_ids(second.pk)
    assert rank(api, second.pk, [[a], [b, c]]).status_code == 201  # 2 pairs
    response = post(api, f"/api/labeling/batches/{batch.pk}/dataset", {"name": "my prefs"})
    assert response.status_code == 201, response.content
    made = response.json()
    assert made["kind"] == "preferences" and made["rows"] == 8
    assert made["name"] == "my prefs" and made["source_batch"] == batch.pk
    assert set(made["columns"]) == {"prompt", "chosen", "rejected"}
    dataset = Dataset.objects.get(pk=made["id"])
    assert dataset.source_batch_id == batch.pk and dataset.owner_id == user.pk
    assert api.get(f"/api/datasets/{made['id']}").json()["rows"] == 8
    # without a body the name comes from the batch
    response = api.post(f"/api/labeling/batches/{batch.pk}/dataset")
    assert response.status_code == 201 and response.json()["name"] == "batch (preferences)"


def test_chat_prompts_and_blank_responses_make_a_valid_dataset(api, user, datasets_dir):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    batch = make_batch(user, k=3, items=1, prompts=[chat], texts=["Hello!", "   ", "Hey."])
    item = batch.items.get()
    rank_in_order(api, item.pk)
    # only ("Hello!", "Hey."): a blank response gives no pair, in the export and the dataset
    lines = export(api, batch.pk, "pairs")
    assert [(x["chosen"], x["rejected"]) for x in lines] == [("Hello!", "Hey.")]
    assert lines[0]["prompt"] == chat
    assert len(export(api, batch.pk, "rankings")[0]["responses"]) == 3
    response = post(api, f"/api/labeling/batches/{batch.pk}/dataset")
    assert response.status_code == 201, response.content
    assert response.json()["rows"] == 1


# --- permissions ---

def routes(batch: Batch):
    item = batch.items.order_by("index").first()
    ids = response_ids(item.pk)
    b = f"/api/labeling/batches/{batch.pk}"
    return [("get", b, None), ("get", b + "/next", None), ("get", b + "/agreement", None),
            ("post", f"/api/labeling/items/{item.pk}/ranking", {"ranking": [[i] for i in ids]}),
            ("post", f"/api/labeling/items/{item.pk}/skip", None),
            ("post", b + "/undo", None), ("get", b + "/export?format=pairs", None),
            ("get", b + "/export?format=rankings", None), ("post", b + "/dataset", None)]


def call(client, method, url, payload):
    if method == "get":
        return client.get(url)
    return post(client, url, payload)


def test_a_private_batch_is_a_404_for_others_on_every_route(api, other_api, user,
                                                            datasets_dir):
    batch = make_batch(user)
    rank_in_order(api, batch.items.order_by("index")[1].pk)
    for method, url, payload in routes(batch):
        response = call(other_api, method, url, payload)
        assert response.status_code == 404, (url, response.content)
        assert response.json()["error"] == "not_found"
    assert other_api.get("/api/labeling/batches").json() == []
    assert Ranking.objects.count() == 1 and not Skip.objects.exists()
    assert not Dataset.objects.filter(kind="preferences").exists()


def test_a_shared_batch_lets_others_rank_but_not_export(api, other_api, user, datasets_dir):
    batch = make_batch(user, shared=True)
    listed = other_api.get("/api/labeling/batches").json()
    assert [(b["id"], b["yours"], b["owner"]) for b in listed] == [(batch.pk, False, "alice")]
    item = next_item(other_api, batch.pk).json()
    rank_in_order(other_api, item["item"])
    second = next_item(other_api, batch.pk).json()["item"]
    assert other_api.post(f"/api/labeling/items/{second}/skip").status_code == 204
    detail = other_api.get(f"/api/labeling/batches/{batch.pk}").json()
    assert detail["items_ranked_by_you"] == 1 and detail["rankings_total"] == 1
    assert detail["yours"] is False
    assert api.get(f"/api/labeling/batches/{batch.pk}").json()["items_ranked_by_you"] == 0
    for url in (f"/api/labeling/batches/{batch.pk}/export?format=pairs",
                f"/api/labeling/batches/{batch.pk}/export?format=rankings"):
        assert other_api.get(url).status_code == 404
    assert post(other_api, f"/api/labeling/batches/{batch.pk}/dataset").status_code == 404
    assert post(other_api, f"/api/labeling/batches/{batch.pk}/undo").status_code == 200
    assert not Ranking.objects.exists()


def test_every_route_needs_a_token(user, datasets_dir):
    batch = make_batch(user, shared=True)
    anonymous = Client()
    for method, url, payload in [("get", "/api/labeling/batches", None),
                                 ("post", "/api/labeling/batches", {"name": "x"}),
                                 *routes(batch)]:
        response = call(anonymous, method, url, payload)
        assert response.status_code == 401, (url, response.content)
        assert response.json()["error"] == "unauthorized"
    assert not Ranking.objects.exists()


def test_a_missing_item_or_batch_is_a_404(api):
    assert next_item(api, 999999).status_code == 404
    assert rank(api, 999999, [[1], [2]]).status_code == 404
    assert api.post("/api/labeling/items/999999/skip").status_code == 404
