"""The one error shape of the API: ``{"error", "detail"}`` plus ``fields`` or ``rows``.

Services raise :class:`ServiceError` subclasses; the API turns them into JSON responses and the
pages into form errors, so both speak with the same words.
"""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, fields: dict[str, str] | None = None,
                 rows: list[int] | None = None, code: str | None = None,
                 status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields
        self.rows = rows
        if code:
            self.code = code
        if status:
            self.status = status

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.fields:
            body["fields"] = self.fields
        if self.rows:
            body["rows"] = self.rows
        return body


class Invalid(ServiceError):
    """Well-formed input whose values are wrong (422)."""

    status = 422
    code = "invalid"


class Forbidden(ServiceError):
    """Allowed to staff users only (never for another user's object: that is a 404)."""

    status = 403
    code = "forbidden"


class WrongState(ServiceError):
    status = 409
    code = "wrong_state"


class TooLarge(ServiceError):
    status = 413
    code = "too_large"


class Unsupported(ServiceError):
    status = 415
    code = "unsupported_type"
