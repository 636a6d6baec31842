"""Errors the service answers as JSON: each names the field or setting, the value and the fix."""

from __future__ import annotations


class BackendError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class BadContext(BackendError):
    status, code = 422, "bad_context"


class TooManyPrompts(BackendError):
    status, code = 422, "too_many_prompts"


class UnknownLabel(BackendError):
    status, code = 422, "unknown_label"


class ImageSourceRefused(BackendError):
    status, code = 422, "image_source_refused"


class ImageUnreachable(BackendError):
    status, code = 502, "image_unreachable"


class ImageTooLarge(BackendError):
    status, code = 413, "image_too_large"


class ImageNotDecodable(BackendError):
    status, code = 415, "image_not_decodable"


class WeightsError(BackendError):
    """The model weights are missing, unreadable or fail their checksum."""

    status, code = 503, "model_unavailable"
