"""The dataset pages: list with the upload form, upload, detail with the preview."""
from __future__ import annotations

import html as html_lib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from webapp.datasets.models import Dataset

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("datasets_dir")]


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


def post_upload(client, data: bytes, filename: str, kind: str = "prompts", name: str = ""):
    return client.post(reverse("datasets:upload"), {
        "file": SimpleUploadedFile(filename, data), "kind": kind, "name": name})


def test_the_pages_need_a_signed_in_user(client, user):
    for url in (reverse("datasets:list"), reverse("datasets:detail", args=[1])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


def test_the_list_shows_the_upload_form_and_what_each_kind_expects(browser):
    response = browser.get(reverse("datasets:list"))
    assert response.status_code == 200
    html = html_lib.unescape(response.content.decode())
    assert 'enctype="multipart/form-data"' in html
    assert f'action="{reverse("datasets:upload")}"' in html
    for expected in ("'chosen' and 'rejected'", "'responses'", "<code>rankings</code>"):
        assert expected in html


def test_it_uploads_through_the_page_and_shows_the_dataset(browser):
    data = b"prompt,answer\nWhat is 2+2?,4\n"
    response = post_upload(browser, data, "arith.csv")
    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:detail", args=[dataset.pk])
    assert dataset.name == "arith"
    page = browser.get(response["Location"]).content.decode()
    assert "What is 2+2?" in page and "arith.csv" in page


def test_the_list_shows_only_my_datasets(browser, user, other_user):
    for owner, name in ((user, "mine"), (other_user, "theirs")):
        Dataset.objects.create(owner=owner, name=name, kind="prompts", rows=1,
                               columns=["prompt"], file=f"{name}.jsonl")
    html = browser.get(reverse("datasets:list")).content.decode()
    assert "mine" in html and "theirs" not in html


def test_it_shows_the_rows_at_fault_on_the_page(browser, datasets_dir):
    data = "".join(json.dumps(row) + "\n" for row in (
        {"prompt": "p", "responses": ["a", "b"], "ranking": [1, 2]},
        {"prompt": "p", "responses": ["a", "b"], "ranking": [1, 5]},
    )).encode()
    response = post_upload(browser, data, "r.jsonl", kind="rankings")
    assert response.status_code == 422
    html = response.content.decode()
    assert "Row 2: &#x27;ranking&#x27; ranks must be whole numbers" in html
    assert "Rows: 2" in html
    assert not Dataset.objects.exists()
    assert not any(datasets_dir.iterdir())


def test_it_shows_a_missing_column_on_the_page(browser):
    response = post_upload(browser, b"question\nwhy?\n", "q.csv")
    assert response.status_code == 422
    assert "the columns found are: &#x27;question&#x27;" in response.content.decode()


def test_it_answers_415_for_a_file_type_it_does_not_read(browser):
    response = post_upload(browser, b"\x89PNG\r\n\x1a\n\x00", "cat.png")
    assert response.status_code == 415
    assert "Parquet" in response.content.decode()


def test_it_asks_for_a_file(browser):
    response = browser.post(reverse("datasets:upload"), {"kind": "prompts", "name": "x"})
    assert response.status_code == 422
    assert "errorlist" in response.content.decode()


def test_the_detail_page_shows_chat_prompts_as_role_and_content(browser, user):
    dataset = Dataset.objects.create(
        owner=user, name="chat", kind="preferences", rows=1,
        columns=["prompt", "chosen", "rejected"], file="chat.jsonl",
        preview=[{"prompt": [{"role": "system", "content": "Be kind."},
                             {"role": "user", "content": "Hello?"}],
                  "chosen": "Hi there", "rejected": "Go away"}])
    html = browser.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "<strong>system:</strong> Be kind." in html
    assert "<strong>user:</strong> Hello?" in html
    assert "Hi there" in html


def test_another_users_dataset_page_is_not_found(browser, other_user):
    dataset = Dataset.objects.create(owner=other_user, name="theirs", kind="prompts", rows=1,
                                     columns=["prompt"], file="theirs.jsonl")
    assert browser.get(reverse("datasets:detail", args=[dataset.pk])).status_code == 404


def test_the_detail_page_lists_responses_and_shows_the_ranks(browser, user):
    dataset = Dataset.objects.create(
        owner=user, name="ranked", kind="rankings", rows=1,
        columns=["prompt", "responses", "ranking"], file="ranked.jsonl",
        preview=[{"prompt": "Pick one", "responses": ["first answer", "second answer"],
                  "ranking": [2, 1]}])
    html = browser.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert '<li><pre class="wrap">second answer</pre></li>' in html
    assert '<pre class="wrap">[2, 1]</pre>' in html
