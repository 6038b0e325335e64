"""What operators read: the waiting mail, RabbitMQ's queue depths, recent throughput, and the
same numbers in the Prometheus text format for ``GET /metrics``.

Why the Prometheus numbers come from the database, not from counters kept in processes:
Mailhub's work happens in web processes (accepting), in any number of Celery worker processes on
any number of machines (delivering) and in beat's dispatcher. prometheus-client's multiprocess
mode only adds up the processes of ONE machine that share one directory, loses a worker's counts
when the directory is wiped, and could only count what the code it instruments reports. Every
state change already writes an ``Event`` row in the transaction that made it, so the database
*is* a complete, cross-process, cross-machine record; ``/metrics`` reads it with bounded, indexed
queries:

- counters (``*_total``) count rows created since the start of the current UTC day
  (``mailhub_counters_start_time_seconds``; Prometheus treats the daily restart like a process
  restart).
  Each process keeps a running tally and on every scrape only reads the rows created since its
  previous scrape, through the ``(client, created_at)`` index of ``Event`` and the
  ``created_at`` index of ``Message``. Every process computes the same values, so it does not
  matter which web process a scrape reaches (the ``client`` label included: see
  ``_DailyTally`` for how its few named clients are chosen). Rows are counted once they are
  ``MAILHUB_METRICS_LAG_SECONDS`` old, so that a transaction that stamped its rows a moment
  before it committed is not missed.
- gauges (waiting mail) read only active deliveries, through the partial index ``delivery_due``.
- queue depths come from RabbitMQ (passive ``queue.declare``), worker pool state from a
  broadcast to the workers (Celery remote control).

Every number here is about mail that is sent: test-mode mail (``Message.test_mode``, settled by
the simulator) is left out of the counters, the gauges, the dashboard and ``mailq``, so that a
client testing bounces or timeouts never moves a bounce-rate alert or the oldest-waiting age,
and its simulated deliveries never hide live mail that is not going out. (RabbitMQ's queue
depths, read from the broker, do include its tasks.)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import amqp
from amqp.exceptions import AMQPError, ChannelError
from django.conf import settings
from django.db import connection
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, Greatest
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from kombu.exceptions import KombuError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from accounts.models import Client
from deliveries import conf
from deliveries.models import Delivery, Event, Message, Priority
from deliveries.states import ACTIVE, DeliveryStatus, MessageStatus
from domains.selectors import domain_state_counts
from mailhub.broker import broker_connection
from mailhub.http_metrics import CONTENT_TYPE, metrics_refusal

S = DeliveryStatus
PRIORITIES = [p.value for p in Priority]
#: The statuses `mailq` and the dashboard show, in that order.
WAITING_STATUSES = [S.QUEUED, S.SENDING, S.DEFERRED, S.SCHEDULED]

# -- counting without counting everything ----------------------------------------------------


def estimate_count(queryset: QuerySet) -> int:
    """The planner's estimate of how many rows the queryset returns; no row is read.

    As good as the table's statistics (autovacuum keeps them current); used where an exact
    ``COUNT(*)`` would read a million rows to print one number.
    """
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):  # a driver that does not decode json
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def count_or_estimate(queryset: QuerySet, *, exact_below: int = 10_000) -> tuple[int, bool]:
    """An exact count when the estimate says it is cheap, else the estimate; and whether exact."""
    estimate = estimate_count(queryset)
    if estimate < exact_below:
        return queryset.count(), True
    return estimate, False


# -- RabbitMQ --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int | None  # None: the queue does not exist (no worker ever declared it)
    consumers: int | None


@dataclass(frozen=True)
class BrokerState:
    reachable: bool
    queues: dict[str, QueueDepth]  # by priority
    error: str = ""


def broker_queue_depths(*, timeout: float | None = None) -> BrokerState:
    """Ready messages and consumers of each priority's queue, by passive ``queue.declare``.

    Reads ``CELERY_BROKER_URL`` at call time and connects once (to each node of a cluster, in
    turn), with a short timeout, so an unreachable broker costs the caller ``timeout`` seconds per
    node and never a retry loop.
    """
    timeout = timeout or settings.MAILHUB_READY_BROKER_TIMEOUT_SECONDS
    queues: dict[str, QueueDepth] = {}
    try:
        with broker_connection(timeout=timeout) as conn:
            for priority, name in settings.MAILHUB_QUEUES.items():
                # py-amqp's channel (the broker URL is always AMQP); kombu types it as the
                # transport-neutral StdChannel, which has no queue_declare.
                channel = cast(amqp.Channel, conn.channel())
                try:
                    declared = channel.queue_declare(queue=name, passive=True)
                    assert declared is not None  # None only for nowait=True
                    _, messages, consumers = declared
                    queues[priority] = QueueDepth(name, messages, consumers)
                except ChannelError:  # 404: the broker closed this channel, not the connection
                    queues[priority] = QueueDepth(name, None, None)
                finally:
                    _close_quietly(channel)
    except (KombuError, AMQPError, OSError) as exc:
        return BrokerState(reachable=False, queues={}, error=f"{type(exc).__name__}: {exc}")
    return BrokerState(reachable=True, queues=queues)


def _close_quietly(channel: Any) -> None:
    with contextlib.suppress(AMQPError, OSError):
        channel.close()


# -- what is waiting -------------------------------------------------------------------------


@dataclass
class PriorityQueueState:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WAITING_STATUSES, 0))
    next_retry_at: datetime | None = None  # earliest deferred delivery's next attempt
    next_release_at: datetime | None = None  # earliest scheduled delivery's send time
    oldest_waiting_since: datetime | None = None  # queued, sending or deferred
    broker: QueueDepth | None = None  # RabbitMQ's view of the priority's queue, when asked


@dataclass
class OldestWaiting:
    message_id: str
    delivery_id: int
    priority: str
    status: str
    address: str
    subject: str
    waiting_since: datetime
    attempts: int
    last_reply: str


@dataclass
class QueueOverview:
    at: datetime
    priorities: dict[str, PriorityQueueState]
    oldest: OldestWaiting | None

    @property
    def totals(self) -> dict[str, int]:
        return {
            status: sum(p.counts[status] for p in self.priorities.values())
            for status in WAITING_STATUSES
        }


def _waiting_since() -> Greatest:
    # A scheduled message waits from its send time, any other from its acceptance.
    return Greatest(
        F("message__created_at"), Coalesce(F("message__send_at"), F("message__created_at"))
    )


def _active_deliveries() -> QuerySet:
    # Exactly the predicate of the partial index `delivery_due`, so that only active rows are
    # read, however many finished ones the table holds; their messages' mode is read through the
    # join every caller makes anyway (for the priority).
    return Delivery.objects.filter(status__in=sorted(ACTIVE), message__test_mode=False)


def queue_overview(*, now: datetime | None = None) -> QueueOverview:
    """Per priority: how many deliveries are queued, sending, deferred and scheduled, when the
    next retry and release are due, and the delivery that has waited longest."""
    now = now or timezone.now()
    priorities = {priority: PriorityQueueState() for priority in PRIORITIES}
    rows = (
        _active_deliveries()
        .values("message__priority", "status")
        .annotate(n=Count("id"), due=Min("next_attempt_at"), since=Min(_waiting_since()))
        .order_by()
    )
    for row in rows:
        state = priorities.setdefault(row["message__priority"], PriorityQueueState())
        state.counts[row["status"]] = row["n"]
        if row["status"] == S.DEFERRED:
            state.next_retry_at = row["due"]
        elif row["status"] == S.SCHEDULED:
            state.next_release_at = row["due"]
        else:
            since = row["since"]
            if state.oldest_waiting_since is None or since < state.oldest_waiting_since:
                state.oldest_waiting_since = since
    return QueueOverview(at=now, priorities=priorities, oldest=_oldest_waiting())


def _oldest_waiting() -> OldestWaiting | None:
    rows = waiting_deliveries(limit=1)
    if not rows:
        return None
    row = rows[0]
    return OldestWaiting(
        message_id=str(row["message_id"]),
        delivery_id=row["id"],
        priority=row["message__priority"],
        status=row["status"],
        address=row["address"],
        subject=row["message__subject"],
        waiting_since=row["since"],
        attempts=row["attempts"],
        last_reply=row["last_reply"],
    )


def waiting_deliveries(*, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` longest-waiting deliveries (queued, sending, deferred), oldest first."""
    return list(
        _active_deliveries()
        .exclude(status=S.SCHEDULED)
        .annotate(since=_waiting_since())
        .order_by("since", "id")
        .values(
            "id",
            "message_id",
            "message__priority",
            "message__sender",
            "message__subject",
            "status",
            "address",
            "since",
            "attempts",
            "next_attempt_at",
            "last_reply",
        )[:limit]
    )


# -- the dashboard ---------------------------------------------------------------------------


@dataclass
class Dashboard:
    at: datetime
    windows: list[str]  # "last hour", "last day"
    messages_by_status: list[tuple[str, list[int]]]  # status -> messages accepted per window
    delivered: list[tuple[str, int, float]]  # window, deliveries delivered, per minute
    overview: QueueOverview
    broker: BrokerState


DASHBOARD_WINDOWS = {"last hour": timedelta(hours=1), "last day": timedelta(days=1)}


def _client_ids() -> list[int]:
    return list(Client.objects.order_by("id").values_list("id", flat=True))


def _events_between(start: datetime, end: datetime, client_ids: list[int]) -> QuerySet:
    # `client_id IN (...)` makes the range a scan of the (client, created_at) index per client
    # (there are few clients); without it Postgres would read every event.
    return Event.objects.filter(
        client_id__in=client_ids, created_at__gte=start, created_at__lt=end, test_mode=False
    )


def dashboard(*, now: datetime | None = None) -> Dashboard:
    """Messages accepted in the last hour and day by their status now, the delivery rate over
    the same windows, what waits per priority, and RabbitMQ's queue depths."""
    now = now or timezone.now()
    client_ids = _client_ids()
    by_status: dict[str, list[int]] = {status.value: [] for status in MessageStatus}
    delivered = []
    for label, window in DASHBOARD_WINDOWS.items():
        start = now - window
        rows = (
            Message.objects.filter(created_at__gte=start, created_at__lt=now, test_mode=False)
            .values("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = {row["status"]: row["n"] for row in rows}
        for status, column in by_status.items():
            column.append(counts.get(status, 0))
        count = _events_between(start, now, client_ids).filter(type=Event.Type.DELIVERED).count()
        delivered.append((label, count, count / (window.total_seconds() / 60)))
    overview = queue_overview(now=now)
    broker = broker_queue_depths()
    for priority, queue in broker.queues.items():
        overview.priorities[priority].broker = queue
    return Dashboard(
        at=now,
        windows=list(DASHBOARD_WINDOWS),
        messages_by_status=list(by_status.items()),
        delivered=delivered,
        overview=overview,
        broker=broker,
    )


# -- Prometheus ------------------------------------------------------------------------------

#: Accept-to-delivery latency buckets, in seconds: from "instant" to the default 1 h lifetime.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def smtp_class(code: int | None) -> str:
    if code is None:
        return "none"
    return f"{code // 100}xx"


@dataclass
class _Window:
    """Counts of what was created in one time window."""

    accepted: Counter = field(default_factory=Counter)  # (priority, client id) -> messages
    events: Counter = field(default_factory=Counter)  # (type, priority, client id) -> events
    replies: Counter = field(default_factory=Counter)  # smtp class -> replies
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_count: int = 0
    latency_sum: float = 0.0
    # client id -> when its first message or event of the window was created
    first_seen: dict[int, datetime] = field(default_factory=dict)

    def saw(self, client_id: int, at: datetime) -> None:
        if client_id not in self.first_seen or at < self.first_seen[client_id]:
            self.first_seen[client_id] = at

    def add(self, other: _Window) -> None:
        self.accepted.update(other.accepted)
        self.events.update(other.events)
        self.replies.update(other.replies)
        pairs = zip(self.latency_buckets, other.latency_buckets, strict=True)
        self.latency_buckets = [mine + theirs for mine, theirs in pairs]
        self.latency_count += other.latency_count
        self.latency_sum += other.latency_sum


#: Events that record an SMTP attempt's outcome. A `failed` event does only when it carries a
#: reply code (attempts used up); without one it may be an expiry, where no attempt was made.
_ATTEMPT_EVENTS = Q(type__in=[Event.Type.DELIVERED, Event.Type.DEFERRED, Event.Type.BOUNCED]) | Q(
    type=Event.Type.FAILED, smtp_code__isnull=False
)


def _count_window(start: datetime, end: datetime) -> _Window:
    window = _Window()
    for row in (
        Message.objects.filter(created_at__gte=start, created_at__lt=end, test_mode=False)
        .values("priority", "client_id")
        .annotate(n=Count("id"), first=Min("created_at"))
        .order_by()
    ):
        window.accepted[(row["priority"], row["client_id"])] = row["n"]
        window.saw(row["client_id"], row["first"])
    events = _events_between(start, end, _client_ids())
    for row in (
        events.values("type", "message__priority", "client_id")
        .annotate(n=Count("id"), first=Min("created_at"))
        .order_by()
    ):
        window.events[(row["type"], row["message__priority"], row["client_id"])] = row["n"]
        window.saw(row["client_id"], row["first"])
    for row in (
        events.filter(_ATTEMPT_EVENTS).values("smtp_code").annotate(n=Count("id")).order_by()
    ):
        window.replies[smtp_class(row["smtp_code"])] += row["n"]
    latency = ExpressionWrapper(F("created_at") - _waiting_since(), output_field=DurationField())
    buckets = {
        f"le_{index}": Count("id", filter=Q(latency__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(LATENCY_BUCKETS)
    }
    totals = (
        events.filter(type=Event.Type.DELIVERED)
        .annotate(latency=latency)
        .aggregate(count=Count("id"), total=Sum("latency"), **buckets)
    )
    window.latency_count = totals["count"]
    window.latency_sum = totals["total"].total_seconds() if totals["total"] else 0.0
    window.latency_buckets = [totals[f"le_{index}"] for index in range(len(LATENCY_BUCKETS))]
    return window


#: The ``client`` label of every client the per-client counters do not name.
OTHER_CLIENTS = "other"


def _busiest_clients(start: datetime, end: datetime, *, limit: int) -> list[int]:
    """The ``limit`` clients that had the most live mail accepted in [start, end), busiest first."""
    if limit <= 0:
        return []
    rows = (
        Message.objects.filter(created_at__gte=start, created_at__lt=end, test_mode=False)
        .values("client_id")
        .annotate(n=Count("id"))
        .order_by("-n", "client_id")[:limit]
    )
    return [row["client_id"] for row in rows]


class _DailyTally:
    """This process's running totals since the start of the UTC day, advanced on each scrape.

    The per-client counters name at most ``MAILHUB_METRICS_TOP_CLIENTS`` clients a day (the rest
    are ``client="other"``), chosen so that every process names the same ones whenever it
    counts, and a client's series never moves to another label within the day (a counter that
    went down would read as a restart): first the previous UTC day's busiest (counted over a
    closed past day: the same answer in every process), then, while places are left, the
    clients seen today in the order of their first message or event. A client is named from its
    very first row of the day or never that day, so the split does not depend on when a process
    happened to count. The set starts again with the counters, at the start of each UTC day.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.day_start: datetime | None = None
        self.counted_until: datetime | None = None
        self.totals = _Window()
        self.named: list[int] = []  # client ids, in the order they were named

    def advance(self, *, now: datetime, lag: timedelta) -> tuple[datetime, _Window, list[int]]:
        until = now - lag
        day_start = until.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        limit = conf.metrics_top_clients()
        with self._lock:
            if self.day_start != day_start or self.counted_until is None:
                self.day_start, self.counted_until, self.totals = day_start, day_start, _Window()
                self.named = _busiest_clients(day_start - timedelta(days=1), day_start, limit=limit)
            if until > self.counted_until:
                window = _count_window(self.counted_until, until)
                self._name_newcomers(window, limit=limit)
                self.totals.add(window)
                self.counted_until = until
            return day_start, self.totals, list(self.named)

    def _name_newcomers(self, window: _Window, *, limit: int) -> None:
        # While places are left, every client seen so far today has been named: one not named
        # yet is seen for the first time in this window, at its `first_seen`.
        places = limit - len(self.named)
        if places <= 0:
            return
        named = set(self.named)
        newcomers = sorted(
            (seen, client_id)
            for client_id, seen in window.first_seen.items()
            if client_id not in named
        )
        self.named += [client_id for _, client_id in newcomers[:places]]


_tally = _DailyTally()


def _client_labels(named: list[int]) -> dict[int, str]:
    """The ``client`` label of each named client: its name now (a client deleted since it was
    named keeps a series of its own, by id, so that its counts do not jump into "other")."""
    names = dict(Client.objects.filter(id__in=named).values_list("id", "name"))
    return {client_id: names.get(client_id, f"#{client_id}") for client_id in named}


def _workers_state(timeout: float) -> Mapping[str, Mapping[str, Any]] | None:
    """Each worker's ``stats`` reply (pool size, busy processes, tasks run), or None on error."""
    from mailhub.celery import app

    try:
        return app.control.inspect(timeout=timeout).stats() or {}
    except (KombuError, AMQPError, OSError):
        return None


class MailhubCollector:
    """Builds every metric family at scrape time (a prometheus-client custom collector)."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterable[Any]:
        now = self.now or timezone.now()
        lag = timedelta(seconds=settings.MAILHUB_METRICS_LAG_SECONDS)
        # The broadcast to the workers is nearly all waiting: how many workers will answer is
        # unknown, so it ends only when MAILHUB_METRICS_INSPECT_TIMEOUT_SECONDS pass without a
        # reply. It waits in a thread while this one reads Postgres and RabbitMQ.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-inspect") as pool:
            workers = pool.submit(_workers_state, settings.MAILHUB_METRICS_INSPECT_TIMEOUT_SECONDS)
            day_start, totals, named = _tally.advance(now=now, lag=lag)
            yield from self._counters(totals, day_start.timestamp(), _client_labels(named))
            yield from self._waiting(queue_overview(now=now), now)
            yield from self._broker(broker_queue_depths())
            yield from self._sending_domains(domain_state_counts())
            yield from self._workers(workers.result())

    @staticmethod
    def _counters(totals: _Window, created: float, labels: Mapping[int, str]) -> Iterable[Any]:
        start = GaugeMetricFamily(
            "mailhub_counters_start_time_seconds",
            "When the mailhub_*_total counters last started from zero (the UTC day's start).",
        )
        start.add_metric([], created)
        yield start
        # Each label once, even a client's name that is "other" or another's "#id".
        clients = list(dict.fromkeys([*labels.values(), OTHER_CLIENTS]))
        accepted_by = Counter[tuple[str, str]]()
        for (priority, client_id), n in totals.accepted.items():
            accepted_by[(priority, labels.get(client_id, OTHER_CLIENTS))] += n
        accepted = CounterMetricFamily(
            "mailhub_messages_accepted",
            "Messages accepted (API, email backend, bulk_send), since the start of the UTC day, "
            'by priority and client (MAILHUB_METRICS_TOP_CLIENTS named, the rest "other").',
            labels=["priority", "client"],
        )
        for client in clients:
            for priority in PRIORITIES:
                accepted.add_metric([priority, client], accepted_by[(priority, client)])
        yield accepted
        events_by = Counter[tuple[str, str, str]]()
        for (event_type, priority, client_id), n in totals.events.items():
            events_by[(event_type, priority, labels.get(client_id, OTHER_CLIENTS))] += n
        events = CounterMetricFamily(
            "mailhub_delivery_events",
            "Delivery events by type (accepted, delivered, deferred, bounced, failed, ...), "
            "priority and client, one per recipient, since the start of the UTC day.",
            labels=["type", "priority", "client"],
        )
        for client in clients:
            for event_type in Event.Type:
                for priority in PRIORITIES:
                    value = events_by[(event_type.value, priority, client)]
                    events.add_metric([event_type.value, priority, client], value)
        yield events
        replies = CounterMetricFamily(
            "mailhub_smtp_attempts",
            "Finished SMTP attempts by the class of the server's reply (2xx, 4xx, 5xx; none: "
            "timeout, refused or dropped connection, or a worker lost mid-attempt).",
            labels=["smtp_class"],
        )
        for reply_class in ("2xx", "4xx", "5xx", "none"):
            replies.add_metric([reply_class], totals.replies[reply_class])
        yield replies
        latency = HistogramMetricFamily(
            "mailhub_delivery_latency_seconds",
            "From acceptance (or the scheduled send time) to delivery, per delivered recipient.",
        )
        latency.add_metric(
            [],
            [
                *zip(map(str, LATENCY_BUCKETS), totals.latency_buckets, strict=True),
                ("+Inf", totals.latency_count),
            ],
            sum_value=totals.latency_sum,
        )
        yield latency

    @staticmethod
    def _waiting(overview: QueueOverview, now: datetime) -> Iterable[Any]:
        waiting = GaugeMetricFamily(
            "mailhub_deliveries_waiting",
            "Deliveries not yet final, by status and priority.",
            labels=["status", "priority"],
        )
        oldest = GaugeMetricFamily(
            "mailhub_oldest_waiting_seconds",
            "Age of the longest-waiting queued, sending or deferred delivery (0 when none).",
            labels=["priority"],
        )
        for priority, state in overview.priorities.items():
            for status, count in state.counts.items():
                waiting.add_metric([str(status), priority], count)
            since = state.oldest_waiting_since
            oldest.add_metric([priority], (now - since).total_seconds() if since else 0.0)
        yield waiting
        yield oldest

    @staticmethod
    def _sending_domains(counts: Mapping[str, int]) -> Iterable[Any]:
        # `failing` domains stop being usable when their grace period ends: worth an alert.
        domains = GaugeMetricFamily(
            "mailhub_sending_domains",
            "Clients' sending domains by state (pending, verified, failing, suspended).",
            labels=["state"],
        )
        for state, count in counts.items():
            domains.add_metric([state], count)
        yield domains

    @staticmethod
    def _broker(broker: BrokerState) -> Iterable[Any]:
        up = GaugeMetricFamily("mailhub_broker_up", "1 if RabbitMQ answered this scrape.")
        up.add_metric([], 1 if broker.reachable else 0)
        yield up
        depth = GaugeMetricFamily(
            "mailhub_queue_messages",
            "Ready messages in each priority's RabbitMQ queue.",
            labels=["queue", "priority"],
        )
        consumers = GaugeMetricFamily(
            "mailhub_queue_consumers",
            "Consumers (worker processes' channels) on each priority's RabbitMQ queue.",
            labels=["queue", "priority"],
        )
        for priority, queue in broker.queues.items():
            depth.add_metric([queue.name, priority], queue.messages or 0)
            consumers.add_metric([queue.name, priority], queue.consumers or 0)
        yield depth
        yield consumers

    @staticmethod
    def _workers(stats: Mapping[str, Mapping[str, Any]] | None) -> Iterable[Any]:
        count = GaugeMetricFamily(
            "mailhub_workers", "Celery workers that answered the scrape's broadcast."
        )
        count.add_metric([], len(stats or {}))
        yield count
        processes = GaugeMetricFamily(
            "mailhub_worker_pool_processes", "Pool processes of each worker.", labels=["worker"]
        )
        busy = GaugeMetricFamily(
            "mailhub_worker_pool_busy",
            "Pool processes of each worker running a task now.",
            labels=["worker"],
        )
        tasks = CounterMetricFamily(
            "mailhub_worker_tasks",
            "Tasks each worker has run since it started.",
            labels=["worker"],
        )
        for worker, stat in sorted((stats or {}).items()):
            pool = stat.get("pool") or {}
            processes.add_metric([worker], len(pool.get("processes") or []))
            inqueues = (pool.get("writes") or {}).get("inqueues") or {}
            busy.add_metric([worker], inqueues.get("active", 0))
            tasks.add_metric([worker], sum((stat.get("total") or {}).values()))
        yield processes
        yield busy
        yield tasks


def metrics_render(*, now: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MailhubCollector(now=now))
    return generate_latest(registry)


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text; with MAILHUB_METRICS_TOKEN set, only for its bearer.

    The token is checked before anything is read: a refused request costs no query, no broker
    connection and no broadcast to the workers.
    """
    return metrics_refusal(request) or HttpResponse(metrics_render(), content_type=CONTENT_TYPE)
