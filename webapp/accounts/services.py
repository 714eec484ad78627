"""API tokens: made (shown once), checked on each request, revoked."""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from webapp.accounts.models import ApiToken, hash_token
from webapp.errors import Invalid
from webapp.text import clean_name

# Tokens one person may hold at once; revoke one to make another.
TOKENS_MAX = 50
TOKEN_NAME_MAX = 100


def api_token_issue(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the raw token, which is not stored
    (only its hash is) and so can be shown this once."""
    name = clean_name(name or "", max_chars=TOKEN_NAME_MAX, what="the token")
    if ApiToken.objects.filter(user_id=user.pk).count() >= TOKENS_MAX:
        raise Invalid(f"You hold {TOKENS_MAX} tokens, the most one person may; revoke one you "
                      "no longer use first.", fields={"name": "too many tokens"})
    raw = "rlhf_" + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw))
    return token, raw


def api_token_create(*, username: str, name: str = "default") -> tuple[AbstractBaseUser, str]:
    """Create the user if needed and a new token for them; returns (user, raw token)."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    _, raw = api_token_issue(user=user, name=name)
    return user, raw


def api_token_revoke(*, token: ApiToken) -> None:
    """The token stops working at once: requests that send it get 401."""
    token.delete()


def api_token_authenticate(*, raw: str) -> AbstractBaseUser | None:
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
