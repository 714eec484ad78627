from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from webapp.accounts.models import ApiToken, hash_token


def api_token_create(*, username: str, name: str = "default") -> tuple[AbstractBaseUser, str]:
    """Create the user if needed and a new token for them; returns (user, raw token)."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    raw = "rlhf_" + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw))
    return user, raw


def api_token_authenticate(*, raw: str) -> AbstractBaseUser | None:
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
