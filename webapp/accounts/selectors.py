"""Reads of a person's API tokens; another person's token is a 404."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from webapp.accounts.models import ApiToken
from webapp.ids import parse_id


def api_token_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user_id=user.pk).order_by("-created_at", "-id")


def api_token_get_for_user(*, user: AbstractBaseUser | AnonymousUser,
                           token_id: int | str) -> ApiToken:
    try:
        return ApiToken.objects.get(pk=parse_id(token_id, what="token"), user_id=user.pk)
    except ApiToken.DoesNotExist:
        raise Http404("No such token.") from None
