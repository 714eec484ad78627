"""Refuse oversized uploads before Django reads the body into temporary files."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

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
