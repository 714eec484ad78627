"""The API and the pages against requests a hostile user sends: lax ids, huge offsets,
non-finite numbers, mass assignment, oversized or deeply nested bodies, missing tokens.
Every answer is a clear 4xx JSON error (HTML for pages) and nothing is stored."""
from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import PROMPTS, upload_prompts
from tests.labeling_helpers import make_batch
from webapp.accounts.services import api_token_issue
from webapp.datasets.models import Dataset
from webapp.labeling.models import Batch, BatchOrigin, BatchStatus
from webapp.runs.models import Checkpoint, Run, RunStatus

pytestmark = pytest.mark.django_db

INT64_PLUS_ONE = "9223372036854775808"


def post_json(client, path, payload, **extra):
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post(path, body, content_type="application/json", **extra)


def run_body(dataset_id, **overrides):
    payload = {"name": "r", "algorithm": "grpo", "dataset": dataset_id,
               "base_model": "tiny-llama", "rewards": [{"type": "length", "target": 50}],
               "hyperparameters": {"max_steps": 3}}
    payload.update(overrides)
    return payload


def assert_json_error(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"], body
    return body


@pytest.fixture
def dataset(api):
    return upload_prompts(api, PROMPTS[:4])


# -- every list endpoint bounds ?offset= and ?limit= ---------------------------------------

LISTS = ["/api/runs", "/api/datasets", "/api/labeling/batches"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", [f"offset={INT64_PLUS_ONE}", "offset=1000000001",
                                   "limit=" + "9" * 30, "offset=-1", "limit=0",
                                   "offset=1e3", "limit=abc"])
def test_an_offset_or_limit_out_of_bounds_is_a_422_on_every_list(api, path, query):
    body = assert_json_error(api.get(f"{path}?{query}"), 422)
    assert query.split("=")[0] in body["fields"]


@pytest.mark.parametrize("query", [f"after={INT64_PLUS_ONE}", "after=-1", f"step={INT64_PLUS_ONE}"])
def test_cursors_of_a_run_are_bounded_too(api, dataset, query):
    run = post_json(api, "/api/runs", run_body(dataset["id"])).json()
    endpoint = "metrics" if query.startswith("after") else "samples"
    assert_json_error(api.get(f"/api/runs/{run['id']}/{endpoint}?{query}"), 422)


# -- ids in canonical form only, on every route ----------------------------------------------

def _routes(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


_PARAM = re.compile(r"<(?:\w+:)?(\w+)>|\{(?:\w+:)?(\w+)\}")
ID_PARAMS = ("run_id", "dataset_id", "batch_id", "item_id", "checkpoint_id", "token_id",
             "session_id")
# Routes that delete what they name run last, each after the routes that still need it.
DELETING = ["models/checkpoints/<int:checkpoint_id>/delete/", "runs/<int:run_id>/delete/",
            "playground/<int:session_id>/delete/", "labeling/<int:batch_id>/delete/",
            "datasets/<int:dataset_id>/delete/", "accounts/tokens/<int:token_id>/revoke/"]


def id_routes():
    """Every route of the project (API and pages, not the admin) whose parameters are ids."""
    routes = set()
    for route in _routes():
        names = [a or b for a, b in _PARAM.findall(route)]
        if names and not route.startswith("admin/") and all(n in ID_PARAMS for n in names):
            routes.add(route)
    return sorted(routes)


@pytest.fixture
def objects(user, settings, tmp_path):
    """One object of each kind, owned by ``user``, so a canonical id reaches something."""
    dataset = Dataset.objects.create(owner=user, name="d", kind="prompts", rows=1,
                                     columns=["prompt"], file="none.jsonl")
    run = Run.objects.create(owner=user, name="r", algorithm="grpo", dataset=dataset,
                             base_model="tiny-llama", rewards=[], hyperparameters={},
                             max_steps=1, status=RunStatus.SUCCEEDED)
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"PK")
    checkpoint = Checkpoint.objects.create(run=run, step=1, path="x", archive=str(archive),
                                           size_bytes=2, sha256="0" * 64)
    batch = make_batch(user)
    item = batch.items.first()
    token, _ = api_token_issue(user=user, name="script")
    session = Batch.objects.create(owner=user, name="p", dataset=Dataset.objects.create(
        owner=user, name="p", kind="prompts", rows=1, columns=["prompt"], file="p.jsonl",
        hidden=True), model="tiny-llama", responses_per_prompt=2, items_expected=1,
        origin=BatchOrigin.PLAYGROUND, status=BatchStatus.READY)
    return {"run_id": run.pk, "dataset_id": dataset.pk, "batch_id": batch.pk,
            "item_id": item.pk, "checkpoint_id": checkpoint.pk, "token_id": token.pk,
            "session_id": session.pk}


def _fill(route, ids, spell):
    def one(match):
        return spell(ids[match.group(1) or match.group(2)])
    return "/" + _PARAM.sub(one, route)


LAX = {"plus": lambda n: f"+{n}", "float": lambda n: f"{n}.0", "underscore": lambda n: f"0_{n}",
       "leading zero": lambda n: f"0{n}", "space": lambda n: f"%20{n}",
       "trailing space": lambda n: f"{n}%20", "nul": lambda n: f"{n}%00",
       "exponent": lambda n: f"{n}e0", "too big": lambda n: INT64_PLUS_ONE}


def test_every_id_route_is_found_and_answers_with_a_canonical_id(client, user, objects):
    routes = sorted(id_routes(), key=lambda r: DELETING.index(r) + 1 if r in DELETING else 0)
    assert len(routes) >= 25, routes  # the API's and the pages' id routes are all here
    assert set(DELETING) <= set(routes)
    client.force_login(user)
    for route in routes:
        if route.endswith("/events"):
            continue  # a live stream; it is checked with lax ids only
        path = _fill(route, objects, str)
        response = client.get(path)
        if response.status_code == 405:
            response = client.post(path)
        assert response.status_code != 404, f"{path}: {response.content[:200]}"


@pytest.mark.parametrize("spelling", LAX)
def test_an_id_in_any_lax_spelling_is_a_404_on_every_route(client, user, objects, spelling):
    client.force_login(user)
    for route in id_routes():
        path = _fill(route, objects, LAX[spelling])
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 404, f"{method} {path}: {response.status_code}"
            if path.startswith("/api/"):
                assert response.json()["error"] == "not_found"


def test_a_lax_dataset_id_in_a_body_names_no_dataset(api, dataset):
    for spelling in (f"+{dataset['id']}", f"{dataset['id']}.0", f" {dataset['id']}",
                     f"0{dataset['id']}", True, float(dataset["id"])):
        response = post_json(api, "/api/runs", run_body(spelling))
        body = assert_json_error(response, 422)
        assert "dataset" in body["fields"], spelling
    assert not Run.objects.exists()


# -- numbers: finite, in range, numbers --------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["hyperparameters.learning_rate", "hyperparameters.temperature",
                                   "rewards[0].weight", "rewards[0].target"])
def test_a_non_finite_number_anywhere_in_a_run_is_a_422_naming_it(api, dataset, literal, where):
    payload = run_body(dataset["id"])
    text = json.dumps(payload)
    if where.startswith("hyperparameters"):
        key = where.split(".")[1]
        text = text.replace('{"max_steps": 3}', f'{{"max_steps": 3, "{key}": {literal}}}')
    else:
        key = where.split(".")[1]
        text = text.replace('"target": 50', f'"target": 50, "{key}": {literal}' if key == "weight"
                            else f'"target": {literal}')
    body = assert_json_error(post_json(api, "/api/runs", text), 422)
    assert where in body["fields"]
    assert not Run.objects.exists()


@pytest.mark.parametrize("field", ["temperature", "top_p", "max_new_tokens",
                                   "responses_per_prompt"])
def test_nan_in_a_labeling_batch_is_a_422_naming_the_field(api, dataset, field):
    text = json.dumps({"name": "b", "dataset": dataset["id"], "model": "tiny-llama"})
    text = text[:-1] + f', "{field}": NaN}}'
    body = assert_json_error(post_json(api, "/api/labeling/batches", text), 422)
    assert field in body["fields"]
    assert not Batch.objects.exists()


# -- unknown fields (mass assignment) --------------------------------------------------------

@pytest.mark.parametrize("field, value", [("owner", 2), ("status", "succeeded"), ("step", 99),
                                          ("attempt", 7), ("id", 1)])
def test_a_field_the_server_sets_itself_is_a_422_naming_it(api, dataset, field, value):
    body = assert_json_error(post_json(api, "/api/runs", run_body(dataset["id"], **{field: value})),
                             422)
    assert body["fields"] == {field: "unknown field"}
    assert field in body["detail"]
    assert not Run.objects.exists()


def test_unknown_fields_of_a_batch_a_ranking_and_a_dataset_are_named(api, user, dataset):
    batch_body = {"name": "b", "dataset": dataset["id"], "model": "tiny-llama", "owner": 1,
                  "status": "ready"}
    body = assert_json_error(post_json(api, "/api/labeling/batches", batch_body), 422)
    assert set(body["fields"]) == {"owner", "status"}
    batch = make_batch(user)
    item = batch.items.first()
    body = assert_json_error(post_json(api, f"/api/labeling/items/{item.pk}/ranking",
                                       {"ranking": [[1]], "annotator": 2}), 422)
    assert body["fields"] == {"annotator": "unknown field"}
    body = assert_json_error(post_json(api, f"/api/labeling/batches/{batch.pk}/dataset",
                                       {"name": "x", "owner": 2}), 422)
    assert body["fields"] == {"owner": "unknown field"}
    assert not item.rankings.exists()


# -- tokens: 401, never a CSRF 403 -----------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer rlhf_forged"},
                                     {"HTTP_AUTHORIZATION": "Basic YWxpY2U6cGFzcw=="},
                                     {"HTTP_AUTHORIZATION": "Bearer"}])
@pytest.mark.parametrize("path", ["/api/runs", "/api/labeling/batches", "/api/datasets"])
def test_a_post_without_a_good_token_is_a_401_not_a_csrf_403(path, headers, user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    body = assert_json_error(post_json(client, path, {"name": "x"}, **headers), 401)
    assert body["error"] == "unauthorized"


def test_a_bad_token_beside_a_browser_session_is_still_a_401(user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert_json_error(post_json(client, "/api/runs", {}, HTTP_AUTHORIZATION="Bearer bad"), 401)
    # the session alone, without its CSRF token, is the browser case: that is a 403
    assert_json_error(post_json(client, "/api/runs", {}), 403)


# -- bodies: size, parts, nesting, JSON that Python reads but JSON does not have -----------

def test_a_body_over_the_size_limit_is_a_413_in_json(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    text = json.dumps({"name": "x" * 20_000})
    body = assert_json_error(post_json(api, "/api/runs", text), 413)
    assert "RLHF_REQUEST_MAX_BYTES" in body["detail"]


def test_a_form_with_too_many_parts_is_a_400_in_json(api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    fields = {f"f{i}": "x" for i in range(50)}
    body = assert_json_error(api.post("/api/datasets", fields), 400)
    assert body["error"] == "bad_request"
    assert not Dataset.objects.exists()


def test_an_upload_with_too_many_files_is_a_400_in_json(api, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = {f"file{i}": SimpleUploadedFile(f"p{i}.jsonl", b'{"prompt": "a"}\n')
             for i in range(5)}
    assert_json_error(api.post("/api/datasets", {**files, "name": "n", "kind": "prompts"}), 400)
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("depth", [33, 1_000, 5_000, 100_000])
def test_a_deeply_nested_body_is_a_422(api, dataset, depth):
    nested = "[" * depth + "]" * depth
    text = json.dumps(run_body(dataset["id"])).replace('"r"', nested, 1)
    body = assert_json_error(post_json(api, "/api/runs", text), 422)
    assert f"{depth + 1} levels" in body["detail"]  # inside the body object
    assert not Run.objects.exists()


@pytest.mark.parametrize("text, status, says", [
    ('{"name": "a", "name": "b"}', 422, "appears twice"),
    ('{"name": "\\ud800"}', 422, "surrogate"),
    ('{"name": "r", "hyperparameters": {"max_steps": 99999999999999999999}}', 422, "out of range"),
    ('{"name": ', 400, "not valid JSON"),
    (b'{"name": "\xff"}', 400, "not UTF-8"),
])
def test_json_that_python_would_read_leniently_is_refused(api, text, status, says):
    body = assert_json_error(post_json(api, "/api/runs", text), status)
    assert says in body["detail"]
    assert not Run.objects.exists()


def test_every_api_error_is_json_also_a_wrong_method(api):
    body = assert_json_error(api.delete("/api/models"), 405)
    assert "GET" in body["detail"]
    assert_json_error(api.get("/api/no-such-thing"), 404)
    assert_json_error(api.get("/api/runs", HTTP_HOST="evil.example"), 400)
