from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts import selectors, services
from webapp.accounts.forms import SignupForm
from webapp.accounts.models import ApiToken
from webapp.errors import ServiceError


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(**kwargs) | {"allow_signup": settings.ALLOW_SIGNUP}


def login_locked_out(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict[str, Any] | None = None) -> HttpResponse:
    """django-axes calls this once an address or an account has failed too often: the
    sign-in page again, with 429 and the seconds to wait in ``Retry-After``."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(request, "accounts/login.html", {
        "form": auth_views.AuthenticationForm(request), "allow_signup": settings.ALLOW_SIGNUP,
        "locked_out": f"Too many failed sign-ins from this address or for this account. "
                      f"Try again in {seconds} seconds.",
    }, status=429)
    response["Retry-After"] = str(seconds)
    return response


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.ALLOW_SIGNUP:
        raise Http404("Sign-up is closed on this server.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # Two backends are configured (django-axes' and the model backend): name the one.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "accounts/signup.html", {"form": form})


def _get_token_for_user(request: HttpRequest, token_id: int) -> ApiToken:
    return selectors.api_token_get_for_user(user=request.user, token_id=token_id)


def _tokens_page(request: HttpRequest, *, status: int = 200, **extra: Any) -> HttpResponse:
    return render(request, "accounts/tokens.html", {
        "tokens": selectors.api_token_list(user=request.user),
        "tokens_max": services.TOKENS_MAX, "name_max": services.TOKEN_NAME_MAX,
        "base_url": request.build_absolute_uri("/").rstrip("/"), **extra}, status=status)


@login_required
@require_GET
def token_list_page(request: HttpRequest) -> HttpResponse:
    return _tokens_page(request)


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    """The new token is shown on the page this once (only its hash is kept), so the answer
    is the page itself rather than a redirect that would lose it."""
    name = request.POST.get("name", "")
    try:
        token, raw = services.api_token_issue(user=request.user, name=name)
    except ServiceError as exc:
        return _tokens_page(request, status=exc.status, error=exc.detail, name=name)
    return _tokens_page(request, status=201, new_token=token, raw=raw)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _get_token_for_user(request, token_id)
    services.api_token_revoke(token=token)
    messages.success(request, f"Token '{token.name}' is revoked; requests that send it now "
                              "get 401.")
    return redirect("accounts:tokens")
