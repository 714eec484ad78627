"""Request guards that hold for every route, so no view has to remember them: oversized
uploads are refused before Django spools them, ids in paths are canonical integers, JSON
bodies under ``/api/`` are parsed strictly (:mod:`webapp.strictjson`), every error the API
answers is JSON, and the API's JSON is compressed."""
from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.gzip import GZipMiddleware

from webapp import strictjson
from webapp.ids import is_canonical_id, looks_like_a_number

Handler = Callable[[HttpRequest], HttpResponse]

# Room for the multipart envelope and the small form fields beside the file.
_MULTIPART_SLACK = 64 * 1024
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def json_error(status: int, error: str, detail: str, **extra: object) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail, **extra}, status=status)


def body_too_large_detail() -> str:
    return (f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes, the "
            "most this server reads (RLHF_REQUEST_MAX_BYTES); send files as multipart uploads.")


class UploadLimitMiddleware:
    def __init__(self, get_response: Handler):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.content_type == "multipart/form-data":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.UPLOAD_MAX_BYTES + _MULTIPART_SLACK
            if length > limit:
                detail = (f"The upload is {length} bytes; this server accepts files up to "
                          f"{settings.UPLOAD_MAX_BYTES} bytes (RLHF_UPLOAD_MAX_BYTES).")
                if not _is_api(request):  # a page: no JSON for people
                    return HttpResponse(detail, status=413, content_type="text/plain")
                return json_error(413, "too_large", detail)
        return self.get_response(request)


class CanonicalIdMiddleware:
    """A path segment that looks like a number but is not a canonical id (``+1``, ``1.0``,
    ``1_0``, `` 1``, ``01``, ``9223372036854775808``) names no object: 404 on every route,
    the API's and the pages', before any converter or validator reads it leniently. A
    segment with a control character (``1%00``) is no id either."""

    def __init__(self, get_response: Handler):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            for segment in path.split("/"):
                if not segment or is_canonical_id(segment):
                    continue
                if looks_like_a_number(segment) or not segment.isprintable():
                    raise Http404("No such object.")
        return self.get_response(request)


class StrictJsonBodyMiddleware:
    """Parse an API request's JSON body strictly before the API framework reads it; a body
    that is too large, not JSON, too deeply nested, or holds NaN, infinities, 65-bit
    integers, broken Unicode or repeated keys is answered here. The parsed value is kept on
    the request for :class:`webapp.api.StrictParser`."""

    def __init__(self, get_response: Handler):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (_is_api(request) and request.method in _BODY_METHODS
                and request.content_type not in _FORM_TYPES):
            try:
                body = request.body
            except RequestDataTooBig:
                return json_error(413, "too_large", body_too_large_detail())
            if body.strip():
                try:
                    request.json_body = strictjson.loads(  # type: ignore[attr-defined]
                        body, max_depth=settings.JSON_MAX_DEPTH)
                except strictjson.JsonProblem as exc:
                    code = "bad_request" if exc.status == 400 else "invalid"
                    extra = {"fields": exc.fields} if exc.fields else {}
                    return json_error(exc.status, code, exc.detail, **extra)
        return self.get_response(request)


class ApiErrorsAsJsonMiddleware:
    """Every error under ``/api/`` is ``{"error", "detail"}`` JSON, also the ones made outside
    the API's own handlers (a 405 from the router, a 400 for a disallowed host)."""

    def __init__(self, get_response: Handler):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (not _is_api(request) or response.status_code < 400
                or response.get("Content-Type", "").startswith("application/json")):
            return response
        try:
            phrase = HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = "Error"
        detail = f"{phrase}."
        if response.status_code == 405 and response.has_header("Allow"):
            detail = f"{request.method} is not allowed here; use {response['Allow']}."
        replacement = json_error(response.status_code, phrase.lower().replace(" ", "_"), detail)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if response.has_header(header):
                replacement[header] = response[header]
        return replacement


class ApiGZipMiddleware(GZipMiddleware):
    """Compress the API's JSON (a compare answer of ten long runs is megabytes of digits that
    shrink to a third). Pages are left alone: they carry the CSRF token, which compression
    beside reflected input would expose (BREACH); the API's answers carry no secret."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.path.startswith("/api/") or response.streaming:
            return response
        return super().process_response(request, response)
