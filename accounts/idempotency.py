"""Idempotency records: a retried request gets the first answer again, and nothing twice.

The record is inserted *first*, in the transaction that then creates the message. Two requests
with the same key at the same moment both try that insert; Postgres makes the second wait on the
unique index until the first commits, after which the second sees the stored answer and replays
it. If the first fails (any non-2xx answer, or an error), its transaction and record roll back
and the second proceeds as if it were first. So one key has exactly one effect, without a lock
held across requests and without a window between "check" and "create".

Records live at least ``MAILHUB_IDEMPOTENCY_TTL_HOURS`` (24 h minimum); ``idempotency_purge``
deletes expired ones, and an expired key is treated as new.

The HTTP side (the ``Idempotency-Key`` header, the decorator that views wear) is
``api.idempotency``; this module keeps the records and the one-key-one-effect rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from accounts.models import Client, IdempotencyRecord
from mailhub.errors import MailhubError

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


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
    *,
    client: Client,
    key: str,
    fingerprint: str,
    run: Callable[[], Answer],
    test_mode: bool = False,
) -> Answer:
    """Run ``run`` once per (client, mode, key): store its 2xx answer, or replay the stored one.

    The test-mode keys of a client have records of their own (``test_mode``): a key string
    already used while testing is new to the live keys, and the other way round.
    """
    if not _KEY.match(key):
        raise InvalidIdempotencyKey(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
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
                        test_mode=test_mode,
                        key=key,
                        request_hash=fingerprint,
                        response_status=0,  # set below, before anyone else can see the row
                        response_body={},
                        created_at=now,
                        expires_at=now + timedelta(hours=settings.MAILHUB_IDEMPOTENCY_TTL_HOURS),
                    )
            except IntegrityError:
                # The insert waited for the transaction holding this key; that one committed.
                existing = IdempotencyRecord.objects.filter(
                    client=client, test_mode=test_mode, key=key
                ).first()
                if existing is None:  # purged in between
                    continue
                if existing.expires_at <= now:
                    IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
                    continue
                if existing.request_hash != fingerprint:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used for a different request (method, path or "
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
            # DRF's encoder, the one answers are rendered with: a replay is the same JSON.
            record.response_body = json.loads(json.dumps(answer.body, cls=JSONEncoder))
            record.response_headers = answer.headers
            record.save(update_fields=["response_status", "response_body", "response_headers"])
            return answer
    raise IdempotencyKeyReused(
        "This Idempotency-Key is being replaced concurrently; retry.", code="idempotency_conflict"
    )


def idempotency_purge(*, now: datetime | None = None) -> int:
    """Delete expired records; return how many. For an operator's periodic purge."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
