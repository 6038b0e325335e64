"""Two rules of the HTTP layer that hold for every request, whichever view answers it.

``RequestIdMiddleware``: every request has an id, echoed in ``X-Request-ID``; an unhandled
exception of a view under /api/ is a 500 problem carrying that id, and the log line with the
traceback carries it too. ``NulCharacterMiddleware``: a NUL in the path or the query string of
an /api/ URL is a 400 problem before any view, lookup or filter can hand it to Postgres (whose
text types cannot hold one).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import cast

from django.core import signals
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from api.errors import is_api, problem, problem_response, server_error_response
from api.request import ApiRequest

HEADER = "X-Request-ID"
# What tracing systems send (UUIDs, hex trace ids, W3C/AWS-style ids); anything else, a line
# break or a megabyte of it, is hostile and replaced rather than logged or echoed.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")
# The exceptions Django itself answers with a 4xx (through handler400/403/404, problems here).
_DJANGO_4XX = (Http404, PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)

NUL_ERROR = {
    "code": "null_characters_not_allowed",
    "message": "Null characters are not allowed.",
}


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get(HEADER, "")
        request_id = offered if _SANE_ID.fullmatch(offered) else uuid.uuid4().hex
        cast(ApiRequest, request).request_id = request_id
        response = self.get_response(request)
        response[HEADER] = request_id
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Here rather than only in handler500: it answers a problem with DEBUG on too.
        if not is_api(request) or isinstance(exception, _DJANGO_4XX):
            return None
        # What Django does for an exception it handles itself (error reporters listen).
        signals.got_request_exception.send(sender=None, request=request)
        return server_error_response(request, (type(exception), exception, exception.__traceback__))


class NulCharacterMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api(request):
            errors = _nul_errors(request)
            if errors:
                detail = "; ".join(f"{e['field'] or 'URL'}: {e['message']}" for e in errors)
                return problem_response(
                    problem(status_code=400, code="validation_error", detail=detail, errors=errors)
                )
        return self.get_response(request)


def _nul_errors(request: HttpRequest) -> list[dict]:
    errors = []
    if "\x00" in request.path_info:
        errors.append({"field": None, **NUL_ERROR})
    for name, values in request.GET.lists():
        if "\x00" in name:
            errors.append({"field": None, **NUL_ERROR})
        elif any("\x00" in value for value in values):
            errors.append({"field": name, **NUL_ERROR})
    return errors
