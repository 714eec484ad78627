"""Refuse oversized uploads before Django reads the body into temporary files; compress the
API's JSON."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.gzip import GZipMiddleware

# Room for the multipart envelope and the small form fields beside the file.
_MULTIPART_SLACK = 64 * 1024


class UploadLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
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
                if not request.path.startswith("/api/"):  # a page: no JSON for people
                    return HttpResponse(detail, status=413, content_type="text/plain")
                return JsonResponse({"error": "too_large", "detail": detail}, status=413)
        return self.get_response(request)


class ApiGZipMiddleware(GZipMiddleware):
    """Compress the API's JSON (a compare answer of ten long runs is megabytes of digits that
    shrink to a third). Pages are left alone: they carry the CSRF token, which compression
    beside reflected input would expose (BREACH); the API's answers carry no secret."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.path.startswith("/api/") or response.streaming:
            return response
        return super().process_response(request, response)
