"""Every 4xx in one shape: RFC 9457 problem details, with field errors listed.

{"type": "https://mailhub.dev/problems/validation_error", "title": "Invalid request",
 "status": 400, "code": "validation_error", "detail": "...",
 "errors": [{"field": "to[0]", "code": "invalid", "message": "..."}]}
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from deliveries.errors import MailhubError

PROBLEM_BASE = "https://mailhub.dev/problems/"

_TITLES = {
    400: "Invalid request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
}


def problem(
    *, status_code: int, code: str, detail: str, errors: list | None = None, **extra: Any
) -> dict:
    body = {
        "type": PROBLEM_BASE + code,
        "title": _TITLES.get(status_code, "Error"),
        "status": status_code,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def field_errors(detail: Any, path: str = "") -> list[dict]:
    """Flatten DRF's nested error structure into ``[{"field", "code", "message"}]``."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if key in ("non_field_errors",):
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            out.extend(field_errors(value, child))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail) for item in detail):
            return [
                {"field": path or None, "code": item.code, "message": str(item)} for item in detail
            ]
        out = []
        for index, item in enumerate(detail):
            if item:  # DRF puts an empty entry for every valid item of a list
                out.extend(field_errors(item, f"{path}[{index}]"))
        return out
    return [
        {"field": path or None, "code": getattr(detail, "code", "invalid"), "message": str(detail)}
    ]


def validation_problem(detail: Any, *, status_code: int = 400) -> dict:
    """The problem for DRF validation errors (also used per item of a batch)."""
    errors = field_errors(detail)
    return problem(
        status_code=status_code,
        code="validation_error",
        detail="; ".join(
            f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
        ),
        errors=errors,
    )


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, MailhubError):
        return Response(
            problem(status_code=exc.status, code=exc.code, detail=exc.message, **exc.extra),
            status=exc.status,
            content_type="application/problem+json",
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            problem(
                status_code=413,
                code="request_too_large",
                detail=f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            ),
            status=413,
            content_type="application/problem+json",
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        # Postgres unreachable (restarting, failing over): a clear 503 the client can retry,
        # not a 500. Whether the transaction committed is unknown when the connection died at
        # COMMIT itself; an Idempotency-Key makes the retry safe either way.
        return Response(
            problem(
                status_code=503,
                code="database_unavailable",
                detail="The database is unavailable right now; try again shortly.",
                title="Service unavailable",
            ),
            status=503,
            headers={"Retry-After": "5"},
            content_type="application/problem+json",
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = validation_problem(exc.detail, status_code=response.status_code)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = detail.code if isinstance(detail, exceptions.ErrorDetail) else "error"
        body = problem(status_code=response.status_code, code=code, detail=str(detail))
        if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            body["retry_after"] = getattr(exc, "wait", None)
    response.data = body
    response.content_type = "application/problem+json"
    return response
