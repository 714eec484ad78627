"""Every page's <title> is plain text: a page block that leaked into the title would show its
markup in the browser tab (it once carried a whole Delete section)."""
from __future__ import annotations

import re

import pytest

from tests.conftest import PROMPTS, upload_prompts
from tests.labeling_helpers import make_batch
from tests.runs_helpers import make_dataset, make_run

pytestmark = pytest.mark.django_db


def test_detail_pages_have_plain_titles(client, user, api):
    client.force_login(user)
    dataset = upload_prompts(api, PROMPTS[:2], name="cats")
    batch = make_batch(user, name="b1")
    run = make_run(user, make_dataset(user), name="r1", steps=1)
    pages = {f"/datasets/{dataset['id']}/": "cats", f"/labeling/{batch.pk}/": "b1",
             f"/runs/{run.pk}/": "r1", "/runs/": "Runs", f"/runs/compare/?ids={run.pk}": "Compare"}
    for path, expected in pages.items():
        html = client.get(path).content.decode()
        title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
        assert "<" not in title and expected in title and "Delete" not in title, (path, title)
