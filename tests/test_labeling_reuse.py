"""A batch's rankings as a dataset: nothing to export (or fit) until someone ranks, and
"Fit a reward model" clicked again on the same rankings reuses the dataset it made."""
from __future__ import annotations

import pytest

from tests.labeling_helpers import make_batch, rank_in_order, response_ids
from webapp.datasets.models import Dataset
from webapp.labeling import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_with_no_rankings_the_exports_are_disabled_and_the_api_says_why(signed_in, api, user):
    batch = make_batch(user, items=2)
    html = signed_in.get(f"/labeling/{batch.pk}/").content.decode()
    assert 'id="export-pairs" disabled' in html and 'id="export-rankings" disabled' in html
    assert "export?format=pairs" not in html  # no link to follow
    for fmt in ("pairs", "rankings"):
        response = api.get(f"/api/labeling/batches/{batch.pk}/export?format={fmt}")
        assert response.status_code == 409 and "nothing to export" in response.json()["detail"]
    rank_in_order(api, batch.items.order_by("index").first().pk)
    html = signed_in.get(f"/labeling/{batch.pk}/").content.decode()
    assert "export?format=pairs" in html and 'id="export-pairs" disabled' not in html


def test_fit_a_reward_model_twice_on_the_same_rankings_reuses_the_dataset(signed_in, api, user,
                                                                           datasets_dir):
    batch = make_batch(user, items=2)
    first, second = batch.items.order_by("index")
    rank_in_order(api, first.pk)
    one = signed_in.post(f"/labeling/{batch.pk}/reward-model/")
    two = signed_in.post(f"/labeling/{batch.pk}/reward-model/", follow=True)
    assert one.status_code == 302 and one.url == two.redirect_chain[0][0]
    assert Dataset.objects.filter(source_batch=batch).count() == 1
    assert "reused" in two.content.decode()
    dataset = Dataset.objects.get(source_batch=batch)
    assert f"dataset={dataset.pk}" in one.url

    # a new ranking is new data: the next click makes a dataset that holds it
    services.ranking_record(item=second, annotator=user,
                            ranking=[[x] for x in response_ids(second.pk)])
    three = signed_in.post(f"/labeling/{batch.pk}/reward-model/")
    newest = Dataset.objects.filter(source_batch=batch).order_by("-pk").first()
    assert Dataset.objects.filter(source_batch=batch).count() == 2
    assert f"dataset={newest.pk}" in three.url and newest.rows > dataset.rows

    # an undo brings back the rankings of the first dataset: it is found again
    services.ranking_undo(batch=batch, annotator=user)
    four = signed_in.post(f"/labeling/{batch.pk}/reward-model/")
    assert f"dataset={dataset.pk}" in four.url


def test_make_dataset_through_the_api_still_makes_a_new_one_each_time(api, user, datasets_dir):
    batch = make_batch(user, items=1)
    rank_in_order(api, batch.items.get().pk)
    ids = {api.post(f"/api/labeling/batches/{batch.pk}/dataset").json()["id"] for _ in range(2)}
    assert len(ids) == 2  # an explicit "make a dataset" (with its own name) is a new dataset
