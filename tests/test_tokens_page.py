"""The API-token page: a person makes a token without a shell (shown once), scripts use it,
and revoking it shuts them out at once."""
from __future__ import annotations

import pytest

from webapp.accounts.models import ApiToken
from webapp.accounts.services import TOKENS_MAX, api_token_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_a_new_token_is_shown_once_and_works_for_the_api(signed_in, client, user):
    page = signed_in.post("/accounts/tokens/new/", {"name": "laptop notebook"})
    assert page.status_code == 201
    raw = page.context["raw"]
    assert raw.startswith("rlhf_") and raw in page.content.decode()
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop notebook" and raw not in token.key_hash  # only a hash kept
    listing = signed_in.get("/accounts/tokens/").content.decode()
    assert "laptop notebook" in listing and raw not in listing  # never shown again

    client.logout()
    answer = client.get("/api/runs", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_revoked_token_is_refused_at_once(signed_in, client, user):
    token, raw = api_token_issue(user=user, name="ci")
    response = signed_in.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response.url == "/accounts/tokens/"
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    client.logout()
    answer = client.get("/api/runs", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"


def test_another_persons_token_cannot_be_revoked(signed_in, other_user):
    theirs, _ = api_token_issue(user=other_user, name="theirs")
    assert signed_in.post(f"/accounts/tokens/{theirs.pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert "theirs" not in signed_in.get("/accounts/tokens/").content.decode()


@pytest.mark.parametrize("name, says", [("", "Give the token a name"),
                                        ("bad\u202ename", "invisible or control character"),
                                        ("x" * 101, "100 characters or fewer")])
def test_a_bad_name_is_refused_on_the_page_and_makes_no_token(signed_in, name, says):
    page = signed_in.post("/accounts/tokens/new/", {"name": name})
    assert page.status_code == 422 and says in page.content.decode()
    assert not ApiToken.objects.exists()


def test_a_person_holds_at_most_the_cap_of_tokens(signed_in, user):
    for i in range(TOKENS_MAX):
        api_token_issue(user=user, name=f"t{i}")
    page = signed_in.post("/accounts/tokens/new/", {"name": "one more"})
    assert page.status_code == 422 and "revoke one" in page.content.decode()
    assert ApiToken.objects.filter(user=user).count() == TOKENS_MAX


def test_the_page_needs_a_sign_in(client):
    response = client.get("/accounts/tokens/")
    assert response.status_code == 302 and "/accounts/login/" in response.url
