from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from webapp.accounts.forms import SignupForm


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
