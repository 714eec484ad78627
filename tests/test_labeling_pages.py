"""The labeling pages: list and form, batch page with its polled status fragment, the rank
page, and the buttons that make a dataset or open a reward-model run."""
from __future__ import annotations

import pytest

from tests.conftest import PROMPTS, upload_prompts
from tests.labeling_helpers import make_batch, rank_in_order
from webapp.datasets.models import Dataset
from webapp.labeling.models import Batch, BatchStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


def test_the_form_creates_a_batch_and_opens_its_page(browser, api, datasets_dir):
    dataset = upload_prompts(api, PROMPTS[:3])
    page = browser.get("/labeling/")
    assert page.status_code == 200
    assert b"tiny-llama" in page.content and b"Generate responses" in page.content
    response = browser.post("/labeling/new/", {
        "name": "from the form", "dataset": dataset["id"], "model": "tiny-llama",
        "responses_per_prompt": 4, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 64,
        "max_prompts": "", "shared": "on"})
    batch = Batch.objects.get()
    assert response.status_code == 302 and response.url == f"/labeling/{batch.pk}/"
    assert batch.shared and batch.responses_per_prompt == 4 and batch.items_expected == 3
    page = browser.get(response.url)
    assert page.status_code == 200 and b"every 2s" in page.content  # polls while queued


def test_the_form_shows_errors_and_creates_nothing(browser, api, datasets_dir):
    dataset = upload_prompts(api, PROMPTS[:3])
    response = browser.post("/labeling/new/", {
        "name": "bad", "dataset": dataset["id"], "model": "tiny-llama",
        "responses_per_prompt": 12, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 64})
    assert response.status_code == 422 and b"class=\"error\"" in response.content
    assert not Batch.objects.exists()


def test_the_batch_page_shows_progress_agreement_and_exports(browser, other_api, user):
    batch = make_batch(user, items=2, shared=True)
    first = batch.items.order_by("index").first()
    rank_in_order(other_api, first.pk)
    page = browser.get(f"/labeling/{batch.pk}/")
    text = page.content.decode()
    assert "2 of 2 prompts generated" in text and "mallory" in text
    assert "export?format=pairs" in text and 'id="fit-reward-model"' in text
    assert "every 2s" not in text  # ready: no polling
    fragment = browser.get(f"/labeling/{batch.pk}/status/")
    assert fragment.status_code == 200 and b'id="status-card"' in fragment.content
    assert b"<html" not in fragment.content


def test_the_status_fragment_gives_an_eta_while_generating(browser, user):
    from datetime import timedelta

    from django.utils import timezone

    batch = make_batch(user, items=2)
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.GENERATING, items_expected=6,
        started_at=timezone.now() - timedelta(seconds=20))
    text = browser.get(f"/labeling/{batch.pk}/status/").content.decode()
    # 2 items in 20 s -> 10 s each, 4 left -> about 40 s
    assert "2 of 6 prompts generated" in text and "ETA 4" in text and "every 2s" in text


def test_the_rank_page_shows_the_next_item_then_all_done(browser, api, user):
    batch = make_batch(user, k=3, items=1)
    item = batch.items.get()
    page = browser.get(f"/labeling/{batch.pk}/rank/").content.decode()
    assert item.prompt_text in page and page.count('class="rank-card"') == 3
    assert "0 of 1" in page and "js/label_rank." in page  # the script, by its hashed name
    rank_in_order(api, item.pk)
    page = browser.get(f"/labeling/{batch.pk}/rank/").content.decode()
    assert "All done" in page and 'class="rank-card"' not in page
    # an item you ranked is not shown even when asked for by id
    page = browser.get(f"/labeling/{batch.pk}/rank/?item={item.pk}").content.decode()
    assert "All done" in page


def test_others_get_404_on_every_page_of_a_private_batch(client, other_user, user):
    batch = make_batch(user)
    client.force_login(other_user)
    for url in ("", "status/", "rank/"):
        assert client.get(f"/labeling/{batch.pk}/{url}").status_code == 404
    for url in ("dataset/", "reward-model/"):
        assert client.post(f"/labeling/{batch.pk}/{url}").status_code == 404
    assert f'href="/labeling/{batch.pk}/"' not in client.get("/labeling/").content.decode()


def test_a_shared_batch_page_hides_the_owner_actions(client, other_user, user):
    batch = make_batch(user, shared=True)
    client.force_login(other_user)
    page = client.get(f"/labeling/{batch.pk}/").content.decode()
    assert "Exports and datasets are made by the batch's owner" in page
    assert 'id="fit-reward-model"' not in page
    assert client.get(f"/labeling/{batch.pk}/rank/").status_code == 200
    assert client.post(f"/labeling/{batch.pk}/dataset/").status_code == 404


def test_fit_a_reward_model_makes_the_dataset_and_opens_the_launch_form(browser, api, user,
                                                                      datasets_dir):
    batch = make_batch(user, items=1)
    response = browser.post(f"/labeling/{batch.pk}/reward-model/")
    assert response.status_code == 302 and response.url == f"/labeling/{batch.pk}/"
    rank_in_order(api, batch.items.get().pk)
    response = browser.post(f"/labeling/{batch.pk}/reward-model/")
    dataset = Dataset.objects.get(kind="preferences")
    assert dataset.source_batch_id == batch.pk and dataset.rows == 3
    assert response.status_code == 302
    assert response.url.startswith(f"/runs/new/?algorithm=reward_model&dataset={dataset.pk}")
    form = browser.get(response.url).content.decode()
    assert f'<option value="{dataset.pk}" selected>' in form


def test_make_dataset_opens_the_new_dataset(browser, api, user, datasets_dir):
    batch = make_batch(user, items=1)
    rank_in_order(api, batch.items.get().pk)
    response = browser.post(f"/labeling/{batch.pk}/dataset/")
    dataset = Dataset.objects.get(kind="preferences")
    assert response.status_code == 302 and response.url == f"/datasets/{dataset.pk}/"
