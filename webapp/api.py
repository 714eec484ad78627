"""The JSON API (described at /api/openapi.json): one NinjaAPI, token or session auth, one error
shape."""
from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer, SessionAuth

from webapp import strictjson
from webapp.accounts.services import api_token_authenticate
from webapp.errors import ServiceError
from webapp.middleware import body_too_large_detail


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_authenticate(raw=token)
        if user is not None:
            request.user = user
        return user


class BrowserSessionAuth(SessionAuth):
    """The signed-in browser's session, CSRF-checked. A request that sends a token, or has no
    session, is not a browser's: it gets the 401 of a missing or bad token, never the 403 of
    a failed CSRF check (which would say nothing about the token)."""

    def _get_key(self, request: HttpRequest) -> str | None:
        if "authorization" in request.headers or not request.user.is_authenticated:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return super().authenticate(request, key) if key is not None else None


class StrictParser(Parser):
    """The body as :class:`webapp.middleware.StrictJsonBodyMiddleware` already parsed it."""

    def parse_body(self, request: HttpRequest) -> Any:
        if hasattr(request, "json_body"):
            return request.json_body
        return strictjson.loads(request.body, max_depth=settings.JSON_MAX_DEPTH)


ERROR_SCHEMA = {
    "type": "object", "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a code: invalid, not_found, ..."},
        "detail": {"type": "string", "description": "a sentence a person can act on"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "the fields to change, each with what is wrong"},
        "rows": {"type": "array", "items": {"type": "integer"},
                 "description": "the rows of an upload that are wrong"},
    }}
# What each kind of operation can answer besides its success, all in the error shape above.
ERRORS = {400: "Malformed request", 401: "No token, or a bad one", 403: "Staff only",
          404: "Missing, or not yours", 409: "The object is in the wrong state for this",
          413: "The body is too large", 415: "Unsupported upload type",
          422: "Valid JSON but invalid values (fields names them)"}


STAFF_ONLY = "x-staff-only"  # an operation's extension: it answers 403 to other users


class WorkbenchAPI(NinjaAPI):
    """The API whose OpenAPI document lists every error status an operation can answer, each
    with the error schema, so a client generated from it handles them."""

    def get_openapi_schema(self, *, path_prefix: str | None = None,
                           path_params: dict[str, Any] | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                statuses = {401, 404, 422}  # auth, path ids and query values
                if "requestBody" in operation:
                    statuses |= {400, 413, 415}
                if method in ("post", "patch", "put", "delete"):
                    statuses.add(409)
                if operation.get(STAFF_ONLY):
                    statuses.add(403)
                responses = operation.setdefault("responses", {})
                for status in sorted(statuses):
                    responses.setdefault(str(status), {
                        "description": ERRORS[status], "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}})
        return schema


# /api/docs: Swagger UI from django-ninja's static files ("ninja" in INSTALLED_APPS), and no
# badge from the online spec validator, so the page asks nothing of another host.
api = WorkbenchAPI(title="RLHF workbench API", version="1",
                   auth=[BearerAuth(), BrowserSessionAuth()], urls_namespace="api",
                   parser=StrictParser(), docs=Swagger(settings={"validatorUrl": None}))


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


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    """Django's refusals of a request's body (too large, too many fields or files)."""
    if isinstance(exc, RequestDataTooBig):
        return _error(request, 413, "too_large", body_too_large_detail())
    return _error(request, 400, "bad_request", f"The request was refused: {exc}")


# pydantic names the member of a union each error is about (``dataset.int``); people do not.
_UNION_TAG = re.compile(r"int|str|float|bool|none|[\w-]+\[.*\]")


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    if any(tuple(err.get("loc", ()))[:1] == ("path",) for err in exc.errors):
        return _error(request, 404, "not_found", "No such object.")  # /api/runs/abc
    fields: dict[str, str] = {}
    unknown: list[str] = []
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "payload", "query", "form")
               and not _UNION_TAG.fullmatch(str(p))]
        loc = [p for i, p in enumerate(loc) if i == 0 or p != loc[i - 1]]  # file.file: file
        name = ".".join(loc) or "body"
        if err.get("type") == "extra_forbidden":
            unknown.append(name)
            fields[name] = "unknown field"
        elif name in fields:  # one member of a union after another: "int or str"
            fields[name] += " or " + err.get("msg", "invalid").lower()
        else:
            fields[name] = err.get("msg", "invalid")
    detail = f"Check these fields: {', '.join(fields)}."
    if unknown:
        detail = (f"Unknown fields: {', '.join(unknown)}; leave them out (this endpoint sets "
                  "them itself, or has no such setting). " + detail)
    return _error(request, 422, "invalid", detail, fields=fields)


api.add_router("/datasets", "webapp.datasets.api.router")
api.add_router("/", "webapp.runs.registry_api.router")
api.add_router("/", "webapp.workers_api.router")
api.add_router("/", "webapp.runs.api.router")
api.add_router("/labeling", "webapp.labeling.api.router")
api.add_router("/playground", "webapp.playground.api.router")
