"""Mailhub's errors as exceptions: every RFC 9457 problem the API answers becomes one of these.

    try:
        mailhub.send(...)
    except ValidationError as refused:      # 400: refused.errors names each field
        ...
    except RateLimited as limited:          # 429, after the client's own retries
        schedule_later(limited.retry_after)
    except MailhubError as error:           # anything else Mailhub (or the network) said no to
        log.warning("%s", error)            # one line: status, code, detail, request id

The class is chosen from the problem's ``code`` first (``idempotency_key_reused``), then from
the HTTP status; an answer that is not a problem document (a proxy's HTML 502 page) still gets
the class of its status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from mailhub_client.types import FieldError, Problem

__all__ = [
    "AuthenticationError",
    "Conflict",
    "IdempotencyKeyReused",
    "MailhubError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTooLarge",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "ValidationError",
    "error_from_answer",
]


class MailhubError(Exception):
    """Base of every error of this client.

    ``status`` is the HTTP status (``None`` when no answer came), ``code`` the problem's
    machine-readable code (``message_not_found``, ...), ``detail`` its human sentence, ``problem``
    the whole problem document and ``request_id`` the id that finds the request in Mailhub's log.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str = "error",
        problem: Problem | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.problem: Problem = problem if problem is not None else {}
        self.request_id = request_id

    def __str__(self) -> str:
        # One log line: what failed, why, and the id to quote.
        head = f"{self.status} {self.code}" if self.status is not None else self.code
        tail = f" (request_id {self.request_id})" if self.request_id else ""
        return f"{head}: {self.detail}{tail}"


class TransportError(MailhubError):
    """No answer from Mailhub: connection refused, timed out or dropped (after the retries).
    ``__cause__`` is httpx's exception."""


class ValidationError(MailhubError):
    """400: the request was refused; ``errors`` lists each field at fault (``field`` is ``None``
    for the request as a whole), e.g. ``{"field": "to[0]", "code": "invalid_address", ...}``."""

    @property
    def errors(self) -> list[FieldError]:
        return list(self.problem.get("errors", []))


class AuthenticationError(MailhubError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDenied(MailhubError):
    """403."""


class NotFound(MailhubError):
    """404: no such message, template, suppression or webhook (or another client's)."""


class Conflict(MailhubError):
    """409: e.g. ``template_exists``."""


class IdempotencyKeyReused(MailhubError):
    """422: this ``Idempotency-Key`` was used for a different request."""


class RequestTooLarge(MailhubError):
    """413: the request is larger than Mailhub accepts (``MAILHUB_MAX_REQUEST_BYTES``)."""


class RateLimited(MailhubError):
    """429: the API key's rate limit; ``retry_after`` is the seconds to wait, when Mailhub said."""

    @property
    def retry_after(self) -> float | None:
        value = self.problem.get("retry_after")
        return float(value) if isinstance(value, (int, float)) else None


class ServerError(MailhubError):
    """5xx: a fault on Mailhub's side (``request_id`` finds it in its log)."""


class ServiceUnavailable(ServerError):
    """503: e.g. ``database_unavailable``; the request may be retried."""


_BY_CODE: dict[str, type[MailhubError]] = {"idempotency_key_reused": IdempotencyKeyReused}
_BY_STATUS: dict[int, type[MailhubError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: RequestTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_from_answer(
    status: int,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> MailhubError:
    """The exception for an answer that is not a 2xx: its problem document, or what can be said
    of a body that is not one. ``retry_after`` (from the header) fills the problem's own when it
    has none."""
    problem = _problem_of(body)
    code = str(problem.get("code") or f"http_{status}")
    detail = str(problem.get("detail") or problem.get("title") or _excerpt(body, status))
    if retry_after is not None and "retry_after" not in problem:
        problem["retry_after"] = retry_after
    request_id = (headers or {}).get("x-request-id") or problem.get("request_id")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else MailhubError
    return cls(
        detail,
        status=status,
        code=code,
        problem=problem,
        request_id=str(request_id) if request_id else None,
    )


def _problem_of(body: bytes) -> Problem:
    try:
        document: Any = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    return cast(Problem, document)  # as Mailhub writes it; each read of a field checks it


def _excerpt(body: bytes, status: int) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())[:200]
    return text or f"HTTP {status} without a body"
