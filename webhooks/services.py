"""Writes: webhook endpoints, the fan-out of events, and sending them.

How an event reaches an endpoint:
1. ``deliveries.services`` writes the ``Event`` in the transaction of the change it reports;
   already fanned out if its client has no enabled endpoint (``Client.wants_events``, which the
   endpoint services below keep), as then there is nobody to tell.
2. ``events_fan_out`` (each tick) reads events not yet fanned out, writes one ``Notification``
   per endpoint that wants each, and marks the events fanned out: one transaction, so an event
   is handed on exactly once and never lost.
3. ``endpoints_dispatch`` claims each endpoint that has pending notifications and is not
   waiting out a backoff, and publishes one delivery task for it.
4. ``endpoint_deliver`` (that task) POSTs the endpoint's pending notifications in order, up to
   ``MAILHUB_WEBHOOK_MAX_BATCH`` per request, until none are left, a request fails (the endpoint
   then backs off as a whole) or its time budget is spent.

At least once: a notification is marked delivered only after a 2xx, so a worker dying between
the response and the write sends it again; receivers de-duplicate by event id.
"""

from __future__ import annotations

import enum
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Event
from webhooks import conf, transport
from webhooks.models import (
    DISABLED_FIELDS,
    EVENT_TYPES,
    HEALTH_FIELDS,
    Endpoint,
    Notification,
    WebhookAttempt,
)
from webhooks.publisher import endpoints_publish
from webhooks.selectors import events_with_message
from webhooks.serializers import EventDocumentSerializer
from webhooks.signing import SIGNATURE_HEADER, secret_generate, signature_header
from webhooks.ssrf import UnsafeUrl, url_check
from webhooks.transport import HttpResult

logger = logging.getLogger(__name__)

USER_AGENT = "Mailhub-Webhooks/1"
# Any constant will do; it only has to be the same for every process sharing the database.
_FANOUT_LOCK = 0x57484B53  # "WHKS"


class _Unset(enum.Enum):
    """An argument not given: the field stays as it is."""

    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET


# -- endpoints -------------------------------------------------------------------------------


def endpoint_create(
    *,
    client: Client,
    url: str,
    event_types: list[str] | None = None,
    description: str = "",
    enabled: bool = True,
) -> tuple[Endpoint, str]:
    """Create an endpoint; return it with its signing secret (shown to the client only once).

    Raises ``UnsafeUrl`` for a URL a webhook may not call (see ``webhooks.ssrf``).
    """
    url = url.strip()
    url_check(url, policy=conf.url_policy())
    secret = secret_generate()
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            client=client,
            url=url,
            event_types=_event_types(event_types),
            description=description,
            secret=secret,
            enabled=enabled,
        )
        if enabled:
            _client_wants_events(client_id=client.id)
    return endpoint, secret


def endpoint_update(
    *,
    endpoint: Endpoint,
    url: str | _Unset = _UNSET,
    event_types: list[str] | _Unset = _UNSET,
    description: str | _Unset = _UNSET,
    enabled: bool | _Unset = _UNSET,
) -> Endpoint:
    """Change what is given. A new URL is checked and tried at once, even while backing off;
    enabling an endpoint forgets its failures."""
    fields: set[str] = set()
    if url is not _UNSET and url.strip() != endpoint.url:
        url = url.strip()
        url_check(url, policy=conf.url_policy())
        endpoint.url, endpoint.retry_at = url, None
        fields |= {"url", "retry_at"}
    if event_types is not _UNSET:
        endpoint.event_types = _event_types(event_types)
        fields.add("event_types")
    if description is not _UNSET:
        endpoint.description = description
        fields.add("description")
    if fields:
        endpoint.save(update_fields=[*fields, "updated_at"])
    if enabled is True and not endpoint.enabled:
        endpoint_enable(endpoint=endpoint)
    elif enabled is False and endpoint.enabled:
        endpoint_disable(endpoint=endpoint, reason="Disabled by the client.")
    return endpoint


def endpoint_enable(*, endpoint: Endpoint) -> bool:
    """Enable an endpoint with a clean slate; return False if it already was enabled.

    Events it was owed before it was disabled are sent if still within the retry horizon;
    events that happened while it was disabled were never fanned out to it (see the event log).
    """
    changes = {
        "enabled": True,
        "disabled_at": None,
        "disabled_reason": "",
        "consecutive_failures": 0,
        "failing_since": None,
        "retry_at": None,
        "updated_at": timezone.now(),
    }
    with transaction.atomic():
        moved = Endpoint.objects.filter(id=endpoint.id, enabled=False).update(**changes)
        if moved:
            _client_wants_events(client_id=endpoint.client_id)
    if moved:
        for name, value in changes.items():
            setattr(endpoint, name, value)
    return bool(moved)


def endpoint_disable(*, endpoint: Endpoint, reason: str) -> bool:
    """Disable an endpoint, keeping the reason for the admin; return False if it already was."""
    now = timezone.now()
    changes = {"enabled": False, "disabled_at": now, "disabled_reason": reason, "updated_at": now}
    with transaction.atomic():
        moved = Endpoint.objects.filter(id=endpoint.id, enabled=True).update(**changes)
        if moved:
            _client_wants_events_recount(client_id=endpoint.client_id)
    if moved:
        for name, value in changes.items():
            setattr(endpoint, name, value)
    return bool(moved)


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete an endpoint with what it was owed and its attempt log."""
    with transaction.atomic():
        endpoint.delete()
        _client_wants_events_recount(client_id=endpoint.client_id)


# A client's `wants_events` (see ``accounts.models.Client``) is set in the transaction that
# creates or enables an endpoint, so that every event written after it commits is fanned out. It
# is cleared only by a recount that locks the client's row before it looks at the endpoints, in
# a later statement: whichever of a recount and a creation takes the row second sees the other's
# endpoint, or sets the flag after it. Both lock the endpoint first, then the client.


def _client_wants_events(*, client_id: int) -> None:
    # Unconditional (not `WHERE NOT wants_events`): the row lock is what orders it after a
    # recount under way.
    Client.objects.filter(id=client_id).update(wants_events=True)


def _client_wants_events_recount(*, client_id: int) -> None:
    with transaction.atomic():
        list(Client.objects.select_for_update().filter(id=client_id).values_list("id"))
        wants = Endpoint.objects.filter(client_id=client_id, enabled=True).exists()
        Client.objects.filter(id=client_id).update(wants_events=wants)


def clients_wanting_events_mark() -> int:
    """Set `wants_events` for every client with an enabled endpoint it is not set for; return
    how many. Each tick: an endpoint enabled some other way (the previous release while a
    deployment migrates, a shell) is fanned out to from then on. Only ever sets the flag, so it
    needs no lock."""
    enabled = Endpoint.objects.filter(client_id=OuterRef("pk"), enabled=True)
    return Client.objects.filter(Exists(enabled), wants_events=False).update(wants_events=True)


def _event_types(event_types: list[str] | _Unset | None) -> list[str]:
    if event_types is None or event_types is _UNSET:
        return list(EVENT_TYPES)
    unknown = set(event_types) - set(EVENT_TYPES)
    if unknown or not event_types:
        raise ValueError(f"unknown or no event types: {sorted(unknown)}")
    return [t for t in EVENT_TYPES if t in set(event_types)]


# -- fan-out and dispatch (the beat tick) ------------------------------------------------------


@dataclass
class TickReport:
    events: int = 0  # events fanned out
    notifications: int = 0  # notifications written for them
    published: int = 0  # endpoints handed to a delivery task
    clients_marked: int = 0  # clients found with an enabled endpoint but not `wants_events`


def webhooks_tick() -> TickReport:
    """One beat tick: fan new events out, then publish every endpoint that is due."""
    report = TickReport()
    report.clients_marked = clients_wanting_events_mark()
    limit = conf.fanout_batch()
    # A burst is caught up in several short transactions, for at most one interval: the next
    # tick goes on from there, and endpoints are not kept waiting for the whole burst.
    deadline = time.monotonic() + conf.interval()
    while True:
        events, notifications = events_fan_out(limit=limit)
        report.events += events
        report.notifications += notifications
        if events < limit or time.monotonic() >= deadline:
            break
    report.published = endpoints_dispatch()
    return report


def events_fan_out(*, limit: int) -> tuple[int, int]:
    """Hand up to ``limit`` events to the endpoints that want them; return (events, notifications).

    One fan-out at a time (an advisory lock): two running side by side would interleave their
    notifications and an endpoint could get a recipient's `delivered` before its `deferred`.
    """
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_FANOUT_LOCK])
            if not cursor.fetchone()[0]:
                return 0, 0
        # The partial index `event_fanout_due` holds only these rows. Ordered by time, so each
        # endpoint's notifications (and so its requests) follow the order things happened in.
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(fanned_out=False)
            .order_by("created_at", "id")
            .values_list("id", "client_id", "type", "created_at")[:limit]
        )
        if not events:
            return 0, 0
        wanted: dict[int, list[tuple[UUID, set[str]]]] = {}
        for endpoint_id, client_id, types in Endpoint.objects.filter(
            client_id__in={client_id for _, client_id, _, _ in events}, enabled=True
        ).values_list("id", "client_id", "event_types"):
            wanted.setdefault(client_id, []).append((endpoint_id, set(types)))
        notifications = [
            Notification(endpoint_id=endpoint_id, event_id=event_id, created_at=now)
            for event_id, client_id, event_type, _ in events
            for endpoint_id, types in wanted.get(client_id, ())
            if event_type in types
        ]
        Notification.objects.bulk_create(notifications, ignore_conflicts=True)
        # The batch's time span too: the update reads only the partitions of those days.
        Event.objects.filter(
            id__in=[event_id for event_id, _, _, _ in events],
            created_at__gte=events[0][3],
            created_at__lte=events[-1][3],
        ).update(fanned_out=True)
    return len(events), len(notifications)


def endpoints_dispatch() -> int:
    """Claim every endpoint with events pending that is neither backing off nor claimed, and
    publish a delivery task for each; return how many were published."""
    now = timezone.now()
    pending = Notification.objects.filter(
        endpoint_id=OuterRef("pk"), status=Notification.Status.PENDING
    )
    with transaction.atomic():
        due = list(
            Endpoint.objects.select_for_update(skip_locked=True)
            .filter(enabled=True)
            .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
            .filter(Exists(pending))
            .only("id")
        )
        if not due:
            return 0
        # Long enough for the task to wait in the queue; it extends the claim while it sends.
        until = now + conf.republish_after()
        claims: list[tuple[UUID, UUID]] = []
        for endpoint in due:
            claim = uuid.uuid4()
            endpoint.claim, endpoint.claimed_until = claim, until
            claims.append((endpoint.id, claim))
        Endpoint.objects.bulk_update(due, ["claim", "claimed_until"])
    return endpoints_publish(claims=claims)


# -- sending ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    notification_ids: list[int]
    event_ids: list[UUID]
    url: str
    secret: str = field(repr=False)
    body: bytes


@dataclass
class DeliverReport:
    requests: int = 0
    events_delivered: int = 0
    failed: bool = False


def endpoint_deliver(
    *, endpoint_id: UUID | str, claim: UUID | str, task_id: str = ""
) -> DeliverReport:
    """Send an endpoint's pending events, oldest first, while this task holds its claim.

    Stops at the first failed request: the endpoint backs off as a whole, so its later events
    never overtake the ones that failed. Safe to run twice: a task whose claim was replaced
    (it was published again after a lost publish or a dead worker) sends nothing.
    """
    report = DeliverReport()
    started = time.monotonic()
    while time.monotonic() - started < conf.task_budget():
        batch = _batch_take(endpoint_id=endpoint_id, claim=claim)
        if batch is None:
            return report
        started_at = timezone.now()
        result = _send(batch)
        report.requests += 1
        go_on = _attempt_record(
            endpoint_id=endpoint_id,
            claim=claim,
            batch=batch,
            result=result,
            started_at=started_at,
            task_id=task_id,
        )
        if result.succeeded:
            report.events_delivered += len(batch.event_ids)
        else:
            report.failed = True
        if not go_on:
            return report
    # Budget spent with events left: let go, and the next tick publishes the endpoint again.
    _claim_release(endpoint_id=endpoint_id, claim=claim)
    return report


def _batch_take(*, endpoint_id: UUID | str, claim: UUID | str) -> _Batch | None:
    """The next events to send, if this task still holds the claim; the claim is extended."""
    now = timezone.now()
    with transaction.atomic():
        endpoint = (
            Endpoint.objects.select_for_update()
            .filter(id=endpoint_id, claim=claim)
            .only("id", "url", "secret", "enabled")
            .first()
        )
        if endpoint is None:
            return None  # deleted, or claimed by another task since
        pending = Notification.objects.filter(
            endpoint_id=endpoint_id, status=Notification.Status.PENDING
        )
        pending.filter(created_at__lt=now - conf.retry_horizon()).update(
            status=Notification.Status.ABANDONED
        )
        rows = (
            list(pending.order_by("id").values_list("id", "event_id")[: conf.max_batch()])
            if endpoint.enabled
            else []
        )
        if not rows:
            Endpoint.objects.filter(id=endpoint_id).update(claim=None, claimed_until=None)
            return None
        Endpoint.objects.filter(id=endpoint_id).update(claimed_until=now + conf.send_lease())
    event_ids = [event_id for _, event_id in rows]
    return _Batch(
        notification_ids=[notification_id for notification_id, _ in rows],
        event_ids=event_ids,
        url=endpoint.url,
        secret=endpoint.secret,
        body=webhook_body(event_ids=event_ids),
    )


def webhook_body(*, event_ids: list[UUID]) -> bytes:
    """The JSON document POSTed for these events, in the order given."""
    events = {event.id: event for event in events_with_message().filter(id__in=event_ids)}
    in_order = [events[event_id] for event_id in event_ids if event_id in events]
    documents = EventDocumentSerializer(in_order, many=True).data
    return json.dumps(
        {"events": documents}, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False
    ).encode()


def _send(batch: _Batch) -> HttpResult:
    """Check the URL again (DNS may have changed since it was saved), then POST to the very
    address that was checked."""
    try:
        destination = url_check(batch.url, policy=conf.url_policy())
    except UnsafeUrl as exc:
        return HttpResult(status_code=None, duration_ms=0, error=f"refused: {exc.message}")
    timestamp = int(time.time())
    signed = signature_header(secret=batch.secret, timestamp=timestamp, body=batch.body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signed,
    }
    return transport.post(
        destination,
        body=batch.body,
        headers=headers,
        connect_timeout=conf.connect_timeout(),
        timeout=conf.timeout(),
    )


def _attempt_record(
    *,
    endpoint_id: UUID | str,
    claim: UUID | str,
    batch: _Batch,
    result: HttpResult,
    started_at: datetime,
    task_id: str,
) -> bool:
    """Log the request, settle its notifications and the endpoint's health, in one transaction.

    Returns whether to go on sending: the request succeeded and the claim is still ours.
    """
    now = timezone.now()
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().filter(id=endpoint_id).first()
        if endpoint is None:
            return False  # deleted while the request was under way
        WebhookAttempt.objects.create(
            endpoint=endpoint,
            started_at=started_at,
            duration_ms=result.duration_ms,
            event_ids=batch.event_ids,
            status_code=result.status_code,
            succeeded=result.succeeded,
            error=result.error or ("" if result.succeeded else f"HTTP {result.status_code}"),
            response_excerpt=result.excerpt,
            task_id=task_id,
        )
        notifications = Notification.objects.filter(id__in=batch.notification_ids)
        was_enabled = endpoint.enabled
        if result.succeeded:
            notifications.update(
                attempts=F("attempts") + 1,
                status=Notification.Status.DELIVERED,
                delivered_at=now,
            )
            _endpoint_succeeded(endpoint, now=now)
        else:
            notifications.update(attempts=F("attempts") + 1)
            _endpoint_failed(endpoint, result=result, now=now, started_at=started_at)
        ours = str(endpoint.claim) == str(claim)
        if ours and not result.succeeded:
            endpoint.claim, endpoint.claimed_until = None, None
        endpoint.save(update_fields=_HEALTH_FIELDS)
        if was_enabled and not endpoint.enabled:  # disabled by this failure
            _client_wants_events_recount(client_id=endpoint.client_id)
        return result.succeeded and ours


_HEALTH_FIELDS = [*HEALTH_FIELDS, "enabled", *DISABLED_FIELDS, "claim", "claimed_until"]


def _endpoint_succeeded(endpoint: Endpoint, *, now: datetime) -> None:
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None
    endpoint.retry_at = None
    endpoint.last_success_at = now


def _endpoint_failed(
    endpoint: Endpoint, *, result: HttpResult, now: datetime, started_at: datetime
) -> None:
    """Back off, and disable an endpoint that has failed every request for too long."""
    error = result.error or f"HTTP {result.status_code}"
    if result.excerpt:
        error = f"{error}: {result.excerpt}"
    endpoint.consecutive_failures += 1
    endpoint.failing_since = endpoint.failing_since or started_at
    endpoint.retry_at = now + conf.retry_policy().delay(endpoint.consecutive_failures)
    endpoint.last_failure_at = now
    endpoint.last_error = error[:300]
    if endpoint.enabled and now - endpoint.failing_since >= conf.disable_after():
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"Disabled automatically: all {endpoint.consecutive_failures} requests since "
            f"{endpoint.failing_since:%Y-%m-%d %H:%M:%S} UTC failed. Last: {error}"
        )[:1000]
        logger.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)


def _claim_release(*, endpoint_id: UUID | str, claim: UUID | str) -> None:
    Endpoint.objects.filter(id=endpoint_id, claim=claim).update(claim=None, claimed_until=None)


# -- retention -------------------------------------------------------------------------------


def webhook_attempts_purge(*, before: datetime, batch_size: int = 5000) -> int:
    """Delete the log of requests started before ``before``, ``batch_size`` rows a transaction;
    return how many. Endpoint by endpoint, so that each batch is a range of the index
    ``webhook_attempt_recent`` rather than a read of the whole log."""
    deleted = 0
    for endpoint_id in Endpoint.objects.order_by("id").values_list("id", flat=True):
        old = WebhookAttempt.objects.filter(endpoint_id=endpoint_id, started_at__lt=before)
        while True:
            with transaction.atomic():
                ids = list(old.values_list("id", flat=True)[:batch_size])
                if not ids:
                    break
                deleted += WebhookAttempt.objects.filter(id__in=ids).delete()[0]
    return deleted
