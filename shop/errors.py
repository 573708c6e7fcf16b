"""Domain errors shared by every component and both sides of a hop.

Every error has a stable ``code`` (the ``error`` field of the JSON body) and an HTTP
``status``. The routes turn an error into ``{"error": code, "detail": text}``; the client
stubs turn that body back into the same class, so a caller cannot tell whether the
component it called was local or remote.
"""
from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Base of every error a component may raise on purpose."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500
    _by_code: ClassVar[dict[str, type["DomainError"]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        DomainError._by_code[cls.code] = cls

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code

    def to_json(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}

    @staticmethod
    def from_json(status: int, body: object) -> "DomainError":
        """Rebuild the error a remote component raised from its JSON body."""
        code = body.get("error") if isinstance(body, dict) else None
        detail = body.get("detail", "") if isinstance(body, dict) else ""
        cls = DomainError._by_code.get(code or "")
        if cls is None:
            return RemoteError(f"HTTP {status}: {code or 'no error code'}: {detail}")
        return cls(str(detail))


class InvalidRequest(DomainError):
    """Malformed input: not JSON, a missing field, a field of the wrong type."""

    code = "invalid_request"
    status = 400


class InvalidValue(DomainError):
    """Well-formed input whose value the domain refuses (negative amount, bad name)."""

    code = "invalid_value"
    status = 422


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    """A service credential was missing or wrong on an internal endpoint."""

    code = "forbidden"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class Unavailable(DomainError):
    """A component could not be reached (connection refused, reset, timed out), or a hop
    refused to call it (circuit open, bulkhead full).

    ``retry_after_s``: when a retry may succeed (the 503's ``Retry-After``); ``retryable``:
    the call failed before the component could act on it, so an idempotent one may be
    sent again; ``never_sent``: the request never reached it (another replica may take it).
    A 503 for a call that is not idempotent and was sent is "unknown", not "failed"."""

    code = "unavailable"
    status = 503

    def __init__(self, detail: str = "", *, retry_after_s: float | None = None,
                 retryable: bool = False, never_sent: bool = False) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.retryable = retryable
        self.never_sent = never_sent


class RemoteError(DomainError):
    """A remote component answered with an error this side does not know."""

    code = "remote_error"
    status = 502
