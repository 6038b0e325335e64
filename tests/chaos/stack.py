"""What a chaos scenario runs and breaks, and how it is settled.

`ChaosStack` is one scenario's Mailhub: worker processes (and, when asked, a gunicorn API) on
queues of its own, against the test database. `Feeder` keeps POSTing to that API from a thread.
`settle()` waits until every accepted message is final, checks the invariant and records the
scenario's row of the report that the session prints at the end (`REPORT`).

The services are broken for real: `rabbitmq_stopped()` and `postgres_restarted()` act on the
machine's RabbitMQ and PostgreSQL, and always bring them back, whatever happened meanwhile.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import connection
from django.db.models import Max
from django.test import override_settings
from django.utils import timezone

from accounts.models import Client
from deliveries.models import Attempt, Delivery, Message
from deliveries.services import MessageDraft, Recipient, messages_accept
from deliveries.states import ACTIVE, DeliveryStatus
from tests.builders import Actor, message_payload
from tests.integration.conftest import WORKER_ENV
from tests.support.api_server import ApiServer
from tests.support.processes import as_root
from tests.support.sink import SmtpSink
from tests.support.workers import ROOT, WorkerProcess, database_url, delete_queues

S = DeliveryStatus
PRIORITIES = ("high", "normal", "low")
# Every message body is this long: a realistic transactional mail, small enough to go fast.
BODY = "Your order has shipped. " * 80


@dataclass
class Row:
    """One line of the report: what was broken and what became of the mail."""

    fault: str
    messages: int
    recipients: int
    delivered: int
    bounced: int
    failed: int
    lost: int
    duplicates: int
    recover_seconds: float | None  # from the end of the fault to the last delivery final
    # Attempts whose outcome was never recorded (their worker died, or could not write it) and
    # that the dispatcher took back when their lease ended: the only source of duplicates.
    unrecorded_attempts: int = 0
    # Recipients whose copies did not all carry the same Message-ID (must be 0).
    message_id_changes: int = 0
    notes: list[str] = field(default_factory=list)


REPORT: list[Row] = []


class ChaosStack:
    """Workers (and an API) consuming and publishing to queues no other stack uses: queues of a
    prefix of their own on the machine's broker or, when ``env`` names a CELERY_BROKER_URL, the
    unprefixed queues of the broker the scenario brought (and takes away itself)."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.own_broker = "CELERY_BROKER_URL" in env
        self.prefix = "" if self.own_broker else f"chaos-{name}-{uuid.uuid4().hex[:6]}."
        self.queues = {p: f"{self.prefix}mail.{p}" for p in PRIORITIES}
        self.log_dir = Path(os.environ.get("MAILHUB_TEST_LOG_DIR", ROOT / "var" / "test-logs"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **WORKER_ENV,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "MAILHUB_QUEUE_PREFIX": self.prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            # The feeders post far faster than the default per-key limit allows.
            "MAILHUB_API_RATE_LIMIT_PER_MINUTE": "1000000",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.workers: list[WorkerProcess] = []
        self.apis: list[ApiServer] = []

    def start_worker(
        self,
        *,
        queues: Sequence[str] = PRIORITIES,
        concurrency: int = 2,
        beat: bool = False,
        name: str = "",
    ) -> WorkerProcess:
        """A worker consuming these priorities and the dispatcher's ticks; ``beat`` runs the
        clock in it (one per stack, as in production)."""
        worker = WorkerProcess(
            f"chaos-{self.name}-{name or len(self.workers)}",
            [*(self.queues[p] for p in queues), f"{self.prefix}mailhub.dispatch"],
            env=self.env,
            log_dir=self.log_dir,
            concurrency=concurrency,
            beat=beat,
        ).start()
        self.workers.append(worker)
        return worker

    def start_api(self) -> ApiServer:
        api = ApiServer(f"chaos-{self.name}", env=self.env, log_dir=self.log_dir).start()
        self.apis.append(api)
        return api

    def accept(
        self,
        client: Client,
        count: int,
        *,
        tag: str,
        priority: str = "normal",
        recipients: int = 1,
        first: int = 0,
    ) -> list[Message]:
        """Accept ``count`` messages through the service, as the API does, published to this
        stack's queues; recipient addresses are unique: ``{tag}{n}-{r}@example.com``."""
        drafts = [
            MessageDraft(
                sender="Shop <orders@shop.test>",
                recipients=[
                    Recipient(address=f"{tag}{n}-{r}@example.com") for r in range(recipients)
                ],
                subject=f"{tag} {n}",
                text=BODY,
                priority=priority,
            )
            for n in range(first, first + count)
        ]
        accepted = []
        # Accepting here stands for this stack's API: its queues, and its republish delay
        # (which the rows carry from the start).
        overrides: dict[str, object] = {"MAILHUB_QUEUES": self.queues}
        if "MAILHUB_REPUBLISH_AFTER_SECONDS" in self.env:
            overrides["MAILHUB_REPUBLISH_AFTER_SECONDS"] = float(
                self.env["MAILHUB_REPUBLISH_AFTER_SECONDS"]
            )
        with override_settings(**overrides):
            for start in range(0, len(drafts), 250):
                accepted += messages_accept(client=client, drafts=drafts[start : start + 250])
        return accepted

    def stop(self) -> None:
        for api in self.apis:
            api.stop()
        for worker in self.workers:
            worker.stop()
        if not self.own_broker:
            delete_queues(self.prefix)


@contextmanager
def chaos_stack(name: str, **env: str) -> Iterator[ChaosStack]:
    stack = ChaosStack(name, env)
    try:
        yield stack
    finally:
        stack.stop()


@contextmanager
def sinks(count: int = 1) -> Iterator[list[SmtpSink]]:
    started: list[SmtpSink] = []
    try:
        for _ in range(count):
            started.append(SmtpSink().start())
        yield started
    finally:
        for sink in started:
            # A sink the test already stopped (a relay that died) has no thread left.
            if getattr(sink._controller, "_thread", None) is not None:
                sink.stop()


# -- the API, from a client's side ---------------------------------------------------------------


@dataclass
class Answer:
    index: int  # the request's recipient is {tag}-api{index}@example.com
    status: int | None  # None: no HTTP answer at all
    body: dict
    content_type: str
    seconds: float


class Feeder(threading.Thread):
    """POSTs one message after another to the API, at most ``rate`` a second, until stopped (or
    ``limit`` were sent); every request names a recipient of its own, so its fate can be looked
    up afterwards."""

    def __init__(
        self, api: ApiServer, *, key: str, tag: str, rate: float, limit: int | None = None
    ) -> None:
        super().__init__(daemon=True, name=f"feeder-{tag}")
        self.api = api
        self.key = key
        self.tag = tag
        self.interval = 1 / rate
        self.limit = limit
        self.answers: list[Answer] = []
        self._stop_event = threading.Event()

    def address(self, index: int) -> str:
        return f"{self.tag}-api{index}@example.com"

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)

    def run(self) -> None:
        connection_ = self.api.connect(timeout=30)
        index = 0
        next_at = time.monotonic()
        while not self._stop_event.is_set() and (self.limit is None or index < self.limit):
            next_at += self.interval
            answer = self._post(connection_, index)
            if answer.status is None:
                connection_.close()
                connection_ = self.api.connect(timeout=30)
            self.answers.append(answer)
            index += 1
            time.sleep(max(0.0, next_at - time.monotonic()))
        connection_.close()

    def _post(self, connection_: http.client.HTTPConnection, index: int) -> Answer:
        payload = message_payload(
            to=[self.address(index)],
            subject=f"{self.tag} api {index}",
            text=BODY,
            priority=PRIORITIES[index % 3],
        )
        started = time.monotonic()
        try:
            connection_.request(
                "POST",
                "/api/v1/messages",
                body=json.dumps(payload).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.key}",
                },
            )
            response = connection_.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            return Answer(index, None, {}, "", time.monotonic() - started)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"unparsed": raw[:200].decode(errors="replace")}
        return Answer(
            index,
            response.status,
            body,
            response.getheader("Content-Type", ""),
            time.monotonic() - started,
        )

    def accepted_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(a.body["id"]) for a in self.answers if a.status == 202]

    def refused(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 202]


def is_problem(answer: Answer) -> bool:
    """A clear failure: an error status with an RFC 9457 problem body naming it."""
    return (
        answer.status is not None
        and answer.status >= 400
        and answer.content_type.startswith("application/problem+json")
        and answer.body.get("status") == answer.status
        and bool(answer.body.get("code"))
    )


def requests_summary(feeder: Feeder) -> str:
    statuses = Counter("no answer" if a.status is None else str(a.status) for a in feeder.answers)
    slowest = max((a.seconds for a in feeder.answers), default=0.0)
    listed = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    return f"{len(feeder.answers)} POSTs ({listed}), slowest answer {slowest:.1f} s"


def outage_run(
    *,
    actor: Actor,
    name: str,
    fault: str,
    inject: Callable[[], None],
    env: dict[str, str],
    preload: int,
    rate: float,
    after_seconds: float = 5,
) -> tuple[Row, Feeder]:
    """A stack with an API, ``preload`` messages in flight and a feeder POSTing at ``rate``;
    ``inject()`` breaks something and returns once it is repaired; the feeder goes on for
    ``after_seconds``, then everything is settled. Every 202 counts as accepted."""
    with sinks() as [sink], chaos_stack(name, MAILHUB_SMTP_URL=sink.url, **env) as stack:
        # 20 ms per message: the preloaded mail is still being sent when the fault strikes.
        sink.delay_seconds = 0.02
        stack.start_worker(name="a")
        stack.start_worker(beat=True, name="b")
        feeder = Feeder(stack.start_api(), key=actor.key, tag=name, rate=rate)
        feeder.start()
        preloaded = [m.id for m in stack.accept(actor.client, preload, tag=name)]
        sink.wait_for(preload // 4, timeout=120)
        try:
            inject()
            fault_ended = timezone.now()
            time.sleep(after_seconds)
        finally:
            feeder.stop()
        row = settle(
            fault=fault,
            client=actor.client,
            sinks=[sink],
            fault_ended=fault_ended,
            accepted_ids=[*preloaded, *feeder.accepted_ids()],
            notes=[requests_summary(feeder)],
        )
    return row, feeder


def refused_requests_left_no_trace(feeder: Feeder) -> list[str]:
    """For each request not answered 202, what is wrong with it: an answer that is not a
    problem document, or a row it left behind that did not end delivered."""
    wrong = []
    for answer in feeder.refused():
        if not is_problem(answer):
            wrong.append(f"request {answer.index}: {answer.status} {answer.body!r:.200}")
        rows = Delivery.objects.filter(address=feeder.address(answer.index))
        if rows.exclude(status=S.DELIVERED).exists():
            wrong.append(f"request {answer.index} left {list(rows.values_list('status'))}")
    return wrong


# -- the invariant ---------------------------------------------------------------------------------


def wait_final(client: Client, *, timeout: float) -> int:
    """Wait until none of the client's deliveries is active; return how many still are."""
    deadline = time.monotonic() + timeout
    while True:
        active = Delivery.objects.filter(message__client=client, status__in=ACTIVE).count()
        if not active or time.monotonic() > deadline:
            return active
        time.sleep(0.5)


def settle(
    *,
    fault: str,
    client: Client,
    sinks: Iterable[SmtpSink],
    fault_ended: datetime | None,
    timeout: float = 300,
    accepted_ids: Iterable[uuid.UUID] = (),
    notes: Sequence[str] = (),
) -> Row:
    """Wait for every accepted message to end, count what became of it, record the row.

    Lost is what the promise forbids: a delivery still not final after ``timeout``, a delivery
    recorded `delivered` that no SMTP server received, or an accepted id with no row at all.
    A duplicate is any extra copy a recipient received (each recipient address is unique).
    """
    still_active = wait_final(client, timeout=timeout)
    # Attempts abandoned past their lease could still be talking to a server: let them land
    # before counting copies.
    time.sleep(2)
    deliveries = Delivery.objects.filter(message__client=client)
    statuses = Counter(deliveries.values_list("status", flat=True))
    delivered = set(deliveries.filter(status=S.DELIVERED).values_list("address", flat=True))
    received: Counter[str] = Counter()
    message_ids: dict[str, set[str]] = {}
    for sink in sinks:
        for message in sink.received:
            message_id = message.parsed["Message-ID"]
            for rcpt in message.rcpt_tos:
                received[rcpt.lower()] += 1
                message_ids.setdefault(rcpt.lower(), set()).add(message_id)
    never_received = {address for address in delivered if address.lower() not in received}
    accepted = set(accepted_ids)
    missing = accepted - set(Message.objects.filter(id__in=accepted).values_list("id", flat=True))
    last_final = deliveries.exclude(status__in=ACTIVE).aggregate(last=Max("updated_at"))["last"]
    recover = None
    if fault_ended is not None and last_final is not None:
        recover = max(0.0, (last_final - fault_ended).total_seconds())
    lost_attempts = Attempt.objects.filter(
        delivery__message__client=client, outcome=Attempt.Outcome.LOST
    ).count()
    row = Row(
        fault=fault,
        messages=Message.objects.filter(client=client).count(),
        recipients=sum(statuses.values()),
        delivered=statuses[S.DELIVERED],
        bounced=statuses[S.BOUNCED],
        failed=statuses[S.FAILED],
        lost=still_active + len(never_received) + len(missing),
        duplicates=sum(count - 1 for count in received.values()),
        recover_seconds=recover,
        unrecorded_attempts=lost_attempts,
        message_id_changes=sum(len(ids) > 1 for ids in message_ids.values()),
        notes=list(notes),
    )
    if lost_attempts:
        row.notes.append(
            f"{lost_attempts} attempts never recorded (worker dead or database gone), "
            "taken back when their lease ended (outcome `lost`)"
        )
    if still_active:
        row.notes.append(f"not final after {timeout:.0f} s: {dict(statuses)}")
    if never_received:
        row.notes.append(f"delivered but never received: {sorted(never_received)[:5]}")
    if missing:
        row.notes.append(f"answered 202 but no row: {sorted(map(str, missing))[:5]}")
    REPORT.append(row)
    print(f"\nchaos: {format_row(row)}")
    return row


# -- the report ----------------------------------------------------------------------------------

HEADER = (
    "fault",
    "messages",
    "delivered",
    "bounced",
    "failed",
    "lost",
    "duplicates",
    "time to recover",
)


def _cells(row: Row) -> list[str]:
    messages = str(row.messages)
    if row.recipients != row.messages:
        messages += f" ({row.recipients} rcpts)"
    recover = "—" if row.recover_seconds is None else f"{row.recover_seconds:.1f} s"
    return [
        row.fault,
        messages,
        str(row.delivered),
        str(row.bounced),
        str(row.failed),
        str(row.lost),
        str(row.duplicates),
        recover,
    ]


def format_row(row: Row) -> str:
    return " | ".join(f"{name}: {cell}" for name, cell in zip(HEADER, _cells(row), strict=True))


def report_markdown(rows: Sequence[Row]) -> str:
    """The table (markdown, readable as plain text too), then each row's notes."""
    table = [list(HEADER), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(table[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [line(cells) for cells in table[1:]]
    notes = [f"- {row.fault}: {note}" for row in rows for note in row.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


# -- breaking the machine's services -------------------------------------------------------------


def _run(command: list[str], *, timeout: float = 120) -> None:
    subprocess.run(as_root(command), check=True, capture_output=True, timeout=timeout)


def rabbitmq_up() -> None:
    _run(["rabbitmqctl", "start_app"])
    _run(["rabbitmqctl", "await_startup", "--timeout", "120"], timeout=150)


@contextmanager
def rabbitmq_stopped() -> Iterator[None]:
    """RabbitMQ's application stopped (the Erlang node stays up) for the body of the block."""
    try:
        _run(["rabbitmqctl", "stop_app"])
        yield
    finally:
        rabbitmq_up()


def postgres_cluster() -> tuple[str, str]:
    [version] = os.listdir("/etc/postgresql")
    return version, "main"


def postgres_ready(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ready = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-t", "2"], capture_output=True, timeout=10
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL not ready after {timeout} s: {ready.stdout!r}")
        time.sleep(0.5)


def postgres_restart() -> None:
    """Restart the cluster (fast shutdown: every connection is cut), then wait until it
    answers; started again if the restart left it down."""
    version, cluster = postgres_cluster()
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster]
    try:
        _run([*command, "restart"])
    finally:
        try:
            postgres_ready(timeout=30)
        except RuntimeError:
            subprocess.run(as_root([*command, "start"]), capture_output=True, timeout=120)
            postgres_ready()
        # This process's connection died with the server; the next query opens a new one.
        connection.close()
