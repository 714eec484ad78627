"""The runs page (filters, sorting, paging, compare checkboxes) and the compare page with the
Django test client."""
from __future__ import annotations

import re

import pytest

from tests.runs_helpers import GRPO_HP, grpo_metrics, make_dataset, make_run
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def _names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/runs/\d+/">([^<]+)</a></td>', html)


def test_the_runs_page_filters_sorts_and_pages(signed_in, user):
    data = make_dataset(user)
    make_run(user, data, name="small", steps=2)
    make_run(user, data, name="big", steps=2, metrics=lambda s: grpo_metrics(s, scale=3))
    make_run(user, data, name="broken", steps=1, finish=RunStatus.FAILED)
    page = signed_in.get("/runs/?ordering=-reward_best").content.decode()
    assert _names(page) == ["big", "small", "broken"]
    assert 'aria-sort="descending"' in page and "Final KL" in page and "Peak memory" in page
    assert _names(signed_in.get("/runs/?status=failed").content.decode()) == ["broken"]
    assert _names(signed_in.get("/runs/?q=SMA").content.decode()) == ["small"]
    assert "No run matches these filters" in signed_in.get("/runs/?algorithm=ppo").content.decode()
    assert 'name="id"' in page and 'id="compare-selected"' in page
    bad = signed_in.get("/runs/?ordering=secret")
    assert bad.status_code == 200 and "ordering" in bad.content.decode()


def test_paging_shows_fifty_runs_a_page(signed_in, user):
    data = make_dataset(user)
    Run.objects.bulk_create([Run(owner=user, name=f"run {i:02d}", algorithm="grpo",
                                 dataset=data, base_model="tiny-llama", max_steps=1)
                             for i in range(60)])
    first = signed_in.get("/runs/?ordering=name").content.decode()
    second = signed_in.get("/runs/?ordering=name&page=2").content.decode()
    assert len(_names(first)) == 50 and _names(second) == [f"run {i}" for i in range(50, 60)]
    assert "page 1 of 2" in first and "?ordering=name&page=2" in first


def test_the_checkboxes_lead_to_a_shareable_compare_url(signed_in, user):
    data = make_dataset(user)
    a = make_run(user, data, name="a", steps=2)
    b = make_run(user, data, name="b", steps=2, hyperparameters=GRPO_HP | {"beta": 0.0})
    response = signed_in.get(f"/runs/compare/?id={a.pk}&id={b.pk}")
    assert response.status_code == 302 and response["Location"] == \
        f"/runs/compare/?ids={a.pk},{b.pk}"
    html = signed_in.get(response["Location"]).content.decode()
    assert "Compare 2 runs" in html
    assert re.search(r'<tr class="differs" data-field="hyperparameters.beta">', html)
    assert re.search(r'<tr class="same" data-field="hyperparameters.learning_rate">', html)
    assert "1 of " in html and " differ" in html


def test_a_compare_url_naming_another_users_run_is_a_404(signed_in, user, other_user):
    mine = make_run(user, make_dataset(user), steps=1)
    theirs = make_run(other_user, make_dataset(other_user), name="secret plan", steps=1)
    for ids in (f"{mine.pk},{theirs.pk}", f"{theirs.pk}", f"{mine.pk},1e3"):
        response = signed_in.get(f"/runs/compare/?ids={ids}")
        assert response.status_code == 404
        assert "secret plan" not in response.content.decode()


def test_a_compare_url_without_runs_goes_back_to_the_list_saying_why(signed_in):
    response = signed_in.get("/runs/compare/", follow=True)
    assert response.redirect_chain[-1][0] == "/runs/"
    assert "Name the runs to compare" in response.content.decode()
