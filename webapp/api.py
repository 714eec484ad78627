"""The JSON API (API.md): one NinjaAPI, token or session auth, one error shape."""
from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, django_auth

from webapp.accounts.services import api_token_authenticate
from webapp.errors import ServiceError


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_authenticate(raw=token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(title="RLHF workbench API", version="1", auth=[BearerAuth(), django_auth],
               urls_namespace="api")


def _error(request: HttpRequest, status: int, error: str, detail: str,
           **extra: Any) -> HttpResponse:
    return api.create_response(request, {"error": error, "detail": detail, **extra},
                               status=status)


@api.exception_handler(ServiceError)
def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return api.create_response(request, exc.payload(), status=exc.status)


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "unauthorized",
                  "Send 'Authorization: Bearer <token>' (python manage.py create_api_token "
                  "USERNAME prints one) or sign in.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", str(exc) or "No such object.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 403: "forbidden", 405: "method_not_allowed"}.get(
        exc.status_code, "error")
    return _error(request, exc.status_code, code, str(exc))


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, str] = {}
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "payload", "query", "form")]
        fields[".".join(loc) or "body"] = err.get("msg", "invalid")
    names = ", ".join(fields)
    return _error(request, 422, "invalid", f"Check these fields: {names}.", fields=fields)


api.add_router("/datasets", "webapp.datasets.api.router")
api.add_router("/", "webapp.runs.api.router")
api.add_router("/labeling", "webapp.labeling.api.router")
