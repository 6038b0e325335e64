"""``Idempotency-Key`` on the API: a view method wearing ``idempotent`` runs once per key.

The records and the rule that one key has exactly one effect are ``accounts.idempotency``; this
module reads the header, hands the view's answer over for keeping and marks a replay.
"""

from __future__ import annotations

from functools import wraps

from rest_framework.response import Response

from accounts.idempotency import Answer, idempotent_run, request_fingerprint

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers worth replaying; the rest (dates, lengths) belong to the new response.
_KEPT_HEADERS = ("Location",)


def idempotent(handler):
    """Make a view method honour ``Idempotency-Key`` (views stay unaware of it otherwise)."""

    @wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)

        def run() -> Answer:
            response = handler(view, request, *args, **kwargs)
            headers = {name: response[name] for name in _KEPT_HEADERS if response.has_header(name)}
            return Answer(status=response.status_code, body=response.data, headers=headers)

        answer = idempotent_run(
            client=request.client,
            test_mode=request.test_mode,
            key=key,
            fingerprint=request_fingerprint(
                method=request.method, path=request.path, body=request.data
            ),
            run=run,
        )
        headers = dict(answer.headers)
        if answer.replayed:
            headers[REPLAYED_HEADER] = "true"
        return Response(answer.body, status=answer.status, headers=headers)

    return wrapper
