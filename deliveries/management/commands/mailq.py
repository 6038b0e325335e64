import json
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from deliveries.management.commands._common import EXIT_PARTIAL
from deliveries.metrics import (
    WAITING_STATUSES,
    BrokerState,
    QueueOverview,
    broker_queue_depths,
    queue_overview,
    waiting_deliveries,
)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    return _span((now - moment).total_seconds()) + " ago"


def _in(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    return "now" if seconds <= 0 else "in " + _span(seconds)


def _span(seconds: float) -> str:
    """2h05m, 3d04h, 7m12s, 40s: two units are enough to read an age at a glance."""
    seconds = int(seconds)
    for size, unit, smaller, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}{(seconds % size) // smaller:02d}{small_unit}"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class Command(BaseCommand):
    help = (
        "Show the mail queue, like Postfix's `postqueue -p`: per priority the deliveries "
        "queued, sending, deferred (with the next retry) and scheduled (with the next release); "
        "the ready messages and consumers of each RabbitMQ queue; the oldest waiting message. "
        "Exit codes: 0 shown; 1 error (database unreachable); 2 usage; 3 shown, but RabbitMQ did "
        "not answer (its columns are empty)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Machine-readable output."
        )
        parser.add_argument(
            "--list",
            dest="list_count",
            type=int,
            default=0,
            metavar="N",
            help="Also list the N longest-waiting deliveries, oldest first.",
        )
        parser.add_argument(
            "--broker-timeout",
            type=float,
            default=2.0,
            metavar="SECONDS",
            help="How long to wait for RabbitMQ (default 2).",
        )

    def handle(self, *args, as_json: bool, list_count: int, broker_timeout: float, **options):
        now = timezone.now()
        overview = queue_overview(now=now)
        broker = broker_queue_depths(timeout=broker_timeout)
        waiting = waiting_deliveries(limit=list_count) if list_count > 0 else []
        if as_json:
            self.stdout.write(self._json(overview, broker, waiting))
        else:
            self.stdout.write(self._table(overview, broker, waiting, now))
        if not broker.reachable:
            raise CommandError(f"RabbitMQ did not answer: {broker.error}", returncode=EXIT_PARTIAL)

    def _json(self, overview: QueueOverview, broker: BrokerState, waiting: list) -> str:
        priorities = {}
        for priority, state in overview.priorities.items():
            queue = broker.queues.get(priority)
            priorities[priority] = {
                **{str(status): state.counts[status] for status in WAITING_STATUSES},
                "next_retry_at": _iso(state.next_retry_at),
                "next_release_at": _iso(state.next_release_at),
                "oldest_waiting_since": _iso(state.oldest_waiting_since),
                "rabbitmq": None
                if queue is None
                else {"queue": queue.name, "ready": queue.messages, "consumers": queue.consumers},
            }
        oldest = overview.oldest
        body = {
            "at": overview.at.isoformat(),
            "priorities": priorities,
            "totals": {str(k): v for k, v in overview.totals.items()},
            "rabbitmq": {"reachable": broker.reachable, "error": broker.error or None},
            "oldest_waiting": None
            if oldest is None
            else {
                "message_id": oldest.message_id,
                "delivery_id": oldest.delivery_id,
                "priority": oldest.priority,
                "status": oldest.status,
                "recipient": oldest.address,
                "subject": oldest.subject,
                "waiting_since": oldest.waiting_since.isoformat(),
                "attempts": oldest.attempts,
                "last_reply": oldest.last_reply,
            },
            "waiting": [
                {
                    "delivery_id": row["id"],
                    "message_id": str(row["message_id"]),
                    "priority": row["message__priority"],
                    "sender": row["message__sender"],
                    "recipient": row["address"],
                    "status": row["status"],
                    "waiting_since": _iso(row["since"]),
                    "attempts": row["attempts"],
                    "next_attempt_at": _iso(row["next_attempt_at"]),
                    "last_reply": row["last_reply"],
                }
                for row in waiting
            ],
        }
        return json.dumps(body, indent=2)

    def _table(
        self, overview: QueueOverview, broker: BrokerState, waiting: list, now: datetime
    ) -> str:
        lines = [f"Mailhub queue at {now:%Y-%m-%d %H:%M:%S} UTC", ""]
        header = (
            f"{'priority':<9}{'queued':>8}{'sending':>9}{'deferred':>10}  {'next retry':<12}"
            f"{'scheduled':>10}  {'next release':<13}{'rabbitmq':>9}{'consumers':>11}"
            f"  {'oldest waiting':<14}"
        )
        lines.append(header)
        for priority, state in overview.priorities.items():
            queue = broker.queues.get(priority)
            ready = (
                "?" if queue is None else ("absent" if queue.messages is None else queue.messages)
            )
            consumers = "?" if queue is None or queue.consumers is None else queue.consumers
            lines.append(
                f"{priority:<9}{state.counts['queued']:>8}{state.counts['sending']:>9}"
                f"{state.counts['deferred']:>10}  {_in(state.next_retry_at, now):<12}"
                f"{state.counts['scheduled']:>10}  {_in(state.next_release_at, now):<13}"
                f"{ready!s:>9}{consumers!s:>11}  {_ago(state.oldest_waiting_since, now):<14}"
            )
        totals = overview.totals
        lines.append(
            f"{'total':<9}{totals['queued']:>8}{totals['sending']:>9}{totals['deferred']:>10}"
            f"  {'':<12}{totals['scheduled']:>10}"
        )
        lines.append("")
        if not broker.reachable:
            lines.append(f"RabbitMQ did not answer: {broker.error}")
        oldest = overview.oldest
        if oldest is None:
            lines.append("Nothing is waiting.")
        else:
            lines.append(
                f"Oldest waiting: message {oldest.message_id} ({oldest.priority}, "
                f"{oldest.status}, {oldest.attempts} attempt(s)) to {oldest.address}, "
                f"waiting for {_span((now - oldest.waiting_since).total_seconds())}: "
                f"{oldest.subject!r}"
            )
            if oldest.last_reply:
                lines.append(f"  last reply: {oldest.last_reply}")
        if waiting:
            lines += [
                "",
                f"{'delivery':>10}  {'message':<36}  {'status':<9}{'tries':>5}  "
                f"{'waiting':<12}{'recipient'}",
            ]
            for row in waiting:
                lines.append(
                    f"{row['id']:>10}  {row['message_id']!s:<36}  {row['status']:<9}"
                    f"{row['attempts']:>5}  {_ago(row['since'], now):<12}{row['address']}"
                )
                if row["last_reply"]:
                    lines.append(f"{'':>12}{row['last_reply']}")
        return "\n".join(lines)
