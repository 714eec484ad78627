"""404 and 500 pages carry the site's navigation (and say what to do); under /api/ both are
JSON in the one error shape."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_a_missing_page_has_the_navigation_and_says_where_to_go(client, user):
    client.force_login(user)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'id="site-nav"' in html and 'href="/runs/"' in html and "Sign out" in html
    assert "There is no page at" in html and "/no-such-page/" in html


def test_another_users_object_is_the_same_404_page(client, user, other_user):
    from tests.runs_helpers import make_dataset, make_run

    run = make_run(other_user, make_dataset(other_user), steps=1)
    client.force_login(user)
    response = client.get(f"/runs/{run.pk}/")
    assert response.status_code == 404 and 'id="site-nav"' in response.content.decode()


def test_a_missing_page_when_signed_out_offers_the_sign_in(client):
    html = client.get("/no-such-page/").content.decode()
    assert 'href="/accounts/login/"' in html and 'id="site-nav"' not in html


def test_a_server_error_has_the_navigation_and_no_details(client, user, settings):
    settings.ROOT_URLCONF = "tests.urls_failing"
    client.raise_request_exception = False
    client.force_login(user)
    response = client.get("/boom/")
    assert response.status_code == 500
    html = response.content.decode()
    assert 'id="site-nav"' in html and "Something went wrong" in html
    assert "a bug the test put here" not in html  # the error is logged, not shown


def test_a_server_error_under_the_api_is_json(client, user, settings):
    settings.ROOT_URLCONF = "tests.urls_failing"
    client.raise_request_exception = False
    client.force_login(user)
    response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "detail": "Something went wrong on "
                               "the server; it has been logged."}
