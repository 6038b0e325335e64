"""``Idempotency-Key``: a retried request gets the first answer again, and nothing twice.

The record is inserted *first*, in the transaction that then creates the message. Two requests
with the same key at the same moment both try that insert; Postgres makes the second wait on the
unique index until the first commits, after which the second sees the stored answer and replays
it. If the first fails (any non-2xx answer, or an error), its transaction and record roll back
and the second proceeds as if it were first. So one key has exactly one effect, without a lock
held across requests and without a window between "check" and "create".

Records live at least ``MAILHUB_IDEMPOTENCY_TTL_HOURS`` (24 h minimum); ``idempotency_purge``
deletes expired ones, and an expired key is treated as new.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from api.models import Client, IdempotencyRecord
from mailhub.errors import MailhubError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
# Response headers worth replaying; the rest (dates, lengths) belong to the new response.
_KEPT_HEADERS = ("Location",)


class InvalidIdempotencyKey(MailhubError):
    status = 400


class IdempotencyKeyReused(MailhubError):
    status = 422


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the request; the JSON body canonicalised, so key order does not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), cls=JSONEncoder)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def idempotent_run(
    *, client: Client, key: str, fingerprint: str, run: Callable[[], Answer]
) -> Answer:
    """Run ``run`` once per (client, key): store its 2xx answer, or replay the stored one."""
    if not _KEY.match(key):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to 255 printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    now = timezone.now()
    # Twice at most: the second round follows the removal of an expired record with this key.
    for _ in range(2):
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        client=client,
                        key=key,
                        request_hash=fingerprint,
                        response_status=0,  # set below, before anyone else can see the row
                        response_body={},
                        created_at=now,
                        expires_at=now + timedelta(hours=settings.MAILHUB_IDEMPOTENCY_TTL_HOURS),
                    )
            except IntegrityError:
                # The insert waited for the transaction holding this key; that one committed.
                existing = IdempotencyRecord.objects.filter(client=client, key=key).first()
                if existing is None:  # purged in between
                    continue
                if existing.expires_at <= now:
                    IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
                    continue
                if existing.request_hash != fingerprint:
                    raise IdempotencyKeyReused(
                        f"This {HEADER} was used for a different request (method, path or "
                        "body); use a new key for a new request.",
                        code="idempotency_key_reused",
                    ) from None
                return Answer(
                    status=existing.response_status,
                    body=existing.response_body,
                    headers=existing.response_headers,
                    replayed=True,
                )
            answer = run()
            if not 200 <= answer.status < 300:
                # Nothing was created; forget the key so that a corrected request can use it.
                transaction.set_rollback(True)
                return answer
            record.response_status = answer.status
            record.response_body = json.loads(json.dumps(answer.body, cls=JSONEncoder))
            record.response_headers = answer.headers
            record.save(update_fields=["response_status", "response_body", "response_headers"])
            return answer
    raise IdempotencyKeyReused(
        f"This {HEADER} is being replaced concurrently; retry.", code="idempotency_conflict"
    )


def idempotency_purge(*, now: datetime | None = None) -> int:
    """Delete expired records; return how many. For an operator's periodic purge."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


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
