"""Every error of the API in one shape: RFC 9457 problem details, with field errors listed.

{"type": "https://mailhub.dev/problems/validation_error", "title": "Invalid request",
 "status": 400, "code": "validation_error", "detail": "...",
 "errors": [{"field": "to[0]", "code": "invalid", "message": "..."}]}

DRF's exception handler (``problem_exception_handler``) renders the 4xx of API views; Django's
error handlers (``bad_request`` ... ``server_error``, named in ``mailhub/urls.py``) render what
happens outside them under /api/; ``api.middleware`` turns an unhandled exception of a view
into a 500 problem carrying the request id that its log line carries too.
"""

from __future__ import annotations

import logging
import sys
import uuid
from types import TracebackType
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from api.schema import PROBLEM_MEDIA_TYPE
from deliveries.templating import TemplateProblem
from mailhub.errors import MailhubError

PROBLEM_BASE = "https://mailhub.dev/problems/"
# Where Django writes its own "Internal Server Error" lines, so that alerting on it still works.
logger = logging.getLogger("django.request")

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
    500: "Internal server error",
    503: "Service unavailable",
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


def _summary(errors: list[dict]) -> str:
    return "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
    )


def validation_summary(detail: Any) -> str:
    """DRF validation errors as one line, ``field: message; field: message``: the ``detail`` of
    their problem, for entry points that answer in text (the email backend, ``bulk_send``)."""
    return _summary(field_errors(detail))


def validation_problem(detail: Any, *, status_code: int = 400) -> dict:
    """The problem for DRF validation errors (also used per item of a batch)."""
    errors = field_errors(detail)
    return problem(
        status_code=status_code, code="validation_error", detail=_summary(errors), errors=errors
    )


def template_problem_detail(exc: TemplateProblem) -> dict[str, list[exceptions.ErrorDetail]]:
    """A template's problems as DRF's validation errors, by the field of the request at fault:
    a part of the template being saved, or the ``template`` or ``context`` of mail being sent.
    The exception handler answers with it; a serializer raises it inside its validation."""
    return {
        field: [exceptions.ErrorDetail(message, code=code) for code, message in errors]
        for field, errors in exc.by_input().items()
    }


def problem_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, TemplateProblem):
        return Response(
            validation_problem(template_problem_detail(exc)),
            status=exc.status,
            content_type=PROBLEM_MEDIA_TYPE,
        )
    if isinstance(exc, MailhubError):
        return Response(
            problem(status_code=exc.status, code=exc.code, detail=exc.message, **exc.extra),
            status=exc.status,
            content_type=PROBLEM_MEDIA_TYPE,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            problem(
                status_code=413,
                code="request_too_large",
                detail=f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            ),
            status=413,
            content_type=PROBLEM_MEDIA_TYPE,
        )
    if isinstance(exc, (SuspiciousOperation, BadRequest)):
        # Django's own refusals of a request (too many parameters, ...), met inside a view.
        return Response(_bad_request_problem(), status=400, content_type=PROBLEM_MEDIA_TYPE)
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
            content_type=PROBLEM_MEDIA_TYPE,
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = validation_problem(exc.detail, status_code=response.status_code)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        # An ErrorDetail made without a code has None.
        code = (detail.code if isinstance(detail, exceptions.ErrorDetail) else None) or "error"
        body = problem(status_code=response.status_code, code=code, detail=str(detail))
        if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
            body["retry_after"] = getattr(exc, "wait", None)
    response.data = body
    response.content_type = PROBLEM_MEDIA_TYPE
    return response


# -- outside DRF's views ---------------------------------------------------------------------------


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def problem_response(body: dict) -> JsonResponse:
    return JsonResponse(body, status=body["status"], content_type=PROBLEM_MEDIA_TYPE)


def _bad_request_problem() -> dict:
    # Django's messages for these may name settings or echo a Host header: say less.
    detail = "The request was refused (malformed, or too many parameters)."
    return problem(status_code=400, code="bad_request", detail=detail)


def server_error_response(
    request: HttpRequest,
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | tuple,
) -> JsonResponse:
    """The 500 problem for an unhandled exception; its traceback is logged with the same id.

    The answer says nothing about the failure itself (that stays in the log): only the id to
    quote, which finds the log line.
    """
    # A failure before api.middleware.RequestIdMiddleware ran gets an id here.
    request_id = getattr(request, "request_id", None) or uuid.uuid4().hex
    logger.error(
        "Internal Server Error: %s %s (request_id=%s)",
        request.method,
        request.path,
        request_id,
        exc_info=exc_info if exc_info and exc_info[0] else None,
        extra={"status_code": 500, "request": request, "request_id": request_id},
    )
    response = problem_response(
        problem(
            status_code=500,
            code="internal_error",
            detail="The server failed to answer this request; quote the request_id when "
            "reporting it.",
            request_id=request_id,
        )
    )
    # Django logs a 500 again (without the id) unless told this one is logged already.
    cast(_LoggedResponse, response)._has_been_logged = True
    return response


class _LoggedResponse(JsonResponse):
    """A response whose failure is logged already. Never instantiated: the flag Django's
    ``log_response`` reads is private, so its stubs leave it out; a cast names it."""

    _has_been_logged: bool


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: Django's refusals (a Host not allowed, ...) before any view."""
    if is_api(request):
        return problem_response(_bad_request_problem())
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler403``."""
    if is_api(request):
        detail = "You do not have permission to perform this action."
        return problem_response(problem(status_code=403, code="permission_denied", detail=detail))
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: Django's 404 for pages; a problem for anything under /api/ (a mistyped id
    too)."""
    if is_api(request):
        detail = "No such endpoint or object."
        return problem_response(problem(status_code=404, code="not_found", detail=detail))
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an exception outside any view (in a middleware, say)."""
    if is_api(request):
        return server_error_response(request, sys.exc_info())
    return defaults.server_error(request)
