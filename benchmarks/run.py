"""Mailhub's benchmark: the real stack on loopback, one run, one table.

    ./scripts/bench [--messages 10000] [--skip-million] [--soak SECONDS] [--profile DIR]
    ./scripts/bench --peers-only [--messages 10000] [--rounds 3]
    ./scripts/bench --retention-only [--retention-rows 5000000] [--retention-days 10]

It starts everything it needs (``benchmarks.stack``): a scratch Postgres database, RabbitMQ
queues under a random prefix, an aiosmtpd sink in a process of its own, Celery workers shaped
like the Procfile's (a pool for `mail.high`, a general pool with beat, the webhook pool) and the
API under gunicorn with deploy/gunicorn.conf.py. Then, one phase after the other, each waiting
until the mail of the one before is delivered:

1. raw limit: plain smtplib into the same sink over 1 and 4 reused connections;
2. single accept: POST /api/v1/messages from 32 kept-alive connections;
2a. SMTP submission: up to 2,000 messages over 8 STARTTLS connections with AUTH (the `submission`
   process), beside the single accepts' rate;
2b. the API alone: the same single sends, then N messages in batches, with every worker
   process stopped (SIGSTOP), so that the API and Postgres have the CPUs to themselves; then
   the workers resume and deliver that backlog, timed (delivery without the API competing);
3. end to end: N messages in batches of 500 (POST /api/v1/messages/batch), timed from the
   first accept to the last arrival at the sink; latencies from Postgres
   (Delivery.delivered_at - Message.created_at);
4. `high` behind a backlog: 5,000 `low` messages, then 50 `high` ones;
4a. retries: 2,000 messages while the sink answers 2 % of RCPT commands with 451: every one
   delivered once, and each retry's wait held to the backoff policy (its distribution printed);
5. (unless --skip-peers) the peer comparison (``benchmarks.peer_phases``): Mailhub beside
   django-post-office, started beside the stack (``benchmarks.peer``), the same N into the same
   sink: drain, enqueue and enqueue → last delivered, with the ratios issue 15 asks for;
6. (--soak) a steady rate for SECONDS, memory sampled throughout;
7. the whole run's accounting: lost (accepted, not final) and duplicated (a Message-ID that
   reached the sink twice), post_office's too;
8. (unless --skip-million) the dispatcher's tick with nothing due, before and after a million
   finished or far-future rows, and the plan of its due query;
9. (unless --skip-retention) retention (``benchmarks.retention``): ``--retention-rows`` history
   rows over ``--retention-days`` days, one day removed row by row and one by dropping its
   partitions, each timed with the WAL it wrote.

``--peers-only`` runs the warm-up, the peer comparison and the accounting alone (a few minutes);
``--retention-only`` the retention phase alone, on a database of its own, with no stack.
Progress goes to stderr, the tables to stdout, the whole run as JSON to
``var/bench/<UTC time>.json`` (``python -m benchmarks.charts`` draws it). Ctrl-C or an error
stops every process started and drops the databases. Targets are the issues' (#7, #15);
figures are this machine's.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import load, report, submission
from benchmarks.peer import PostOfficePeer
from benchmarks.peer_phases import PeerComparison
from benchmarks.procs import (
    ProcessSampler,
    cpu_between,
    machine,
    pids_named,
    process_trees,
    stopped,
)
from benchmarks.profiles import Recorder, format_summary, summarize
from benchmarks.stack import DEFAULT_DATABASE_URL, Sizing, Stack, say
from benchmarks.stats import Spread, Target, percentile, rate, ratio, spread
from benchmarks.table import Row, format_table, heading
from benchmarks.versus import compare, format_comparison, median_figures
from tests.support.workers import ROOT

MIB = 1024 * 1024
SINGLE_PATH = "/api/v1/messages"
BATCH_PATH = "/api/v1/messages/batch"
CEILING_PATH = "/healthz"
BATCH_SIZE = 500
ALONE = ("api", "postgres", "rabbitmq", "load generator")  # what runs while the workers stop
PROFILE_RATE = 50  # Hz: enough samples for a phase of seconds, little load on two cores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__.split("\n\n")[0].strip()
    )
    parser.add_argument("--messages", type=int, default=10_000, help="N (default 10000)")
    parser.add_argument(
        "--single", type=int, help="single-message requests (default: N, at most 5000)"
    )
    parser.add_argument("--clients", type=int, default=32, help="connections for single sends")
    parser.add_argument("--batch-clients", type=int, default=4, help="connections for batches")
    parser.add_argument("--backlog", type=int, default=5000, help="low messages queued first")
    parser.add_argument("--high", type=int, default=50, help="high messages sent behind them")
    parser.add_argument(
        "--retry-messages",
        type=int,
        default=2000,
        help="messages of the retry phase, 2 %% of whose RCPTs get 451 (0: no retry phase)",
    )
    parser.add_argument(
        "--domains", type=int, default=1, help="recipient domains mail is spread over (default 1)"
    )
    parser.add_argument("--skip-million", action="store_true", help="skip the dispatcher part")
    parser.add_argument(
        "--peers-only",
        action="store_true",
        help="only the comparison with django-post-office (and the accounting)",
    )
    parser.add_argument("--skip-peers", action="store_true", help="no peer comparison")
    parser.add_argument(
        "--rounds", type=int, default=1, help="peer comparison rounds; medians shown (default 1)"
    )
    parser.add_argument(
        "--peer-concurrency",
        type=int,
        help="post_office's worker pool (default: Mailhub's general pool, --general-concurrency)",
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        default=ROOT / "var" / "bench",
        help="where the run's JSON goes (default var/bench)",
    )
    parser.add_argument(
        "--retention-only",
        action="store_true",
        help="only the retention phase: a day of history by row deletion and by partition drop",
    )
    parser.add_argument("--skip-retention", action="store_true", help="no retention phase")
    parser.add_argument(
        "--retention-rows",
        type=int,
        default=5_000_000,
        metavar="N",
        help="history rows written for the retention phase (default 5000000)",
    )
    parser.add_argument(
        "--retention-days",
        type=int,
        default=10,
        metavar="D",
        help="days they are spread over (default 10)",
    )
    parser.add_argument("--million", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=int, default=50, help="dispatcher ticks timed each time")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="soak length")
    parser.add_argument(
        "--soak-rate", type=float, default=20, help="msgs/s during the soak (default 20)"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the API and workers")
    parser.add_argument("--high-concurrency", type=int, default=Sizing.high)
    parser.add_argument("--general-concurrency", type=int, default=Sizing.general)
    parser.add_argument("--webhooks-concurrency", type=int, default=Sizing.webhooks)
    parser.add_argument("--api-workers", type=int, help="default: deploy/gunicorn.conf.py's")
    parser.add_argument("--api-threads", type=int, help="default: deploy/gunicorn.conf.py's")
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a temporary dir)")
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the run's database for inspection"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000:
        parser.error("--messages must be between 1 and 1000000")
    if args.single is None:
        args.single = min(args.messages, 5000)
    if args.domains < 1:
        parser.error("--domains is at least 1")
    if args.soak < 0 or args.soak > 24 * 3600:
        parser.error("--soak is between 0 and 86400 seconds")
    if args.peers_only and args.skip_peers:
        parser.error("--peers-only and --skip-peers exclude each other")
    if not 1 <= args.rounds <= 9:
        parser.error("--rounds is between 1 and 9")
    if args.retention_only and (args.peers_only or args.skip_retention):
        parser.error("--retention-only excludes --peers-only and --skip-retention")
    if not 1000 <= args.retention_rows <= 100_000_000:
        parser.error("--retention-rows is between 1000 and 100000000")
    if not 2 <= args.retention_days <= 90:
        parser.error("--retention-days is between 2 and 90")
    if args.peer_concurrency is None:
        args.peer_concurrency = args.general_concurrency
    return args


#: The share of RCPT commands the sink answers 451 in the retry phase (issue 15's "2 %").
RETRY_FAULT_SHARE = 0.02
#: Seconds a worker may take to pick up a republished task, on top of the dispatcher's tick.
RETRY_TAKE_SECONDS = 5.0


def budget(count: int) -> float:
    """How long to wait for ``count`` messages to arrive before calling the rest lost."""
    return 60 + count / 20


# -- what Postgres says --------------------------------------------------------------------------


def _deliveries(phase: str):
    from deliveries.models import Delivery

    return Delivery.objects.filter(address__startswith=f"{phase}-")


def wait_final(phase: str, expected: int, *, timeout: float) -> int:
    """Wait until ``expected`` deliveries of ``phase`` are final in Postgres; return how many
    are."""
    from django.db.models import Count, Q

    from deliveries.states import FINAL

    deadline = time.monotonic() + timeout
    while True:
        counts = _deliveries(phase).aggregate(final=Count("id", filter=Q(status__in=sorted(FINAL))))
        if counts["final"] >= expected or time.monotonic() >= deadline:
            return counts["final"]
        time.sleep(0.2)


def delivered_latencies(phase: str) -> list[float]:
    """Seconds from accept (Message.created_at) to delivered (Delivery.delivered_at)."""
    from django.db.models import F

    from deliveries.states import DeliveryStatus

    rows = (
        _deliveries(phase)
        .filter(status=DeliveryStatus.DELIVERED)
        .annotate(latency=F("delivered_at") - F("message__created_at"))
        .values_list("latency", flat=True)
    )
    return [latency.total_seconds() for latency in rows]


def sink_latencies(phase: str, arrivals: dict[str, float]) -> list[float]:
    """Seconds from accept (Message.created_at) to the first arrival at the sink."""
    from deliveries.models import Message

    rows = Message.objects.filter(deliveries__address__startswith=f"{phase}-").values_list(
        "message_id", "created_at"
    )
    return [arrivals[mid] - created.timestamp() for mid, created in rows if mid in arrivals]


# -- CPU by process group ------------------------------------------------------------------------


def process_groups(stack: Stack, peer: PostOfficePeer | None) -> dict[str, list[int]]:
    """Every process whose memory or CPU the benchmark reports, by group."""
    roots = {name: root for name, root in stack.process_groups().items() if root is not None}
    groups = process_trees(roots)
    groups["postgres"] = stack.postgres_backends()
    groups["rabbitmq"] = pids_named("beam.smp")
    groups["load generator"] = [os.getpid()]
    if peer is not None:
        groups.update(peer.process_groups())
    return groups


def postgres_groups(stack: Stack, peer: PostOfficePeer | None) -> dict[str, list[int]]:
    """The Postgres backends alone, which come and go: read often (ProcessSampler's fast)."""
    groups = {"postgres": stack.postgres_backends()}
    if peer is not None:
        groups["postgres peer"] = stack.postgres_backends(peer.database)
    return groups


def cpu_rows(
    before: dict, after: dict, count: int, unit: str, *, only: tuple[str, ...] = ()
) -> list[Row]:
    used = cpu_between(before, after)
    used["workers"] = sum(seconds for name, seconds in used.items() if name.startswith("worker"))
    labels = {
        "api": "API (gunicorn processes)",
        "workers": "Celery workers (all pools, beat)",
        "postgres": "Postgres backends of the run's database",
        "rabbitmq": "RabbitMQ (the whole broker, shared)",
        "sink": "SMTP sink",
        "load generator": "load generator (this process)",
    }
    return [
        Row(f"CPU: {label}", used.get(name, 0) * 1000 / max(count, 1), unit)
        for name, label in labels.items()
        if not only or name in only
    ]


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Accounting:
    accepted: int = 0
    phases: dict[str, int] = field(default_factory=dict)  # phase -> messages accepted

    def add(self, phase: str, accepted: int) -> None:
        self.accepted += accepted
        self.phases[phase] = self.phases.get(phase, 0) + accepted


def spread_rows(label: str, values: list[float], *, scale: float, unit: str) -> list[Row]:
    measured: Spread | None = spread(values)
    if measured is None:
        return [Row(f"{label} p50 / p95 / p99", "none measured", unit)]
    return [
        Row(f"{label} p50", measured.p50 * scale, unit),
        Row(f"{label} p95", measured.p95 * scale, unit),
        Row(f"{label} p99", measured.p99 * scale, unit),
    ]


def single_accept_rows(result: load.HttpResult) -> list[Row]:
    """Rate, latencies and refusals of single sends, against issue 7's targets."""
    latencies = result.latencies
    return [
        Row("rate", rate(result.requests, result.seconds), "req/s", Target(">=", 1000)),
        *spread_rows("latency", latencies, scale=1000, unit="ms")[:2],
        Row(
            "latency p99",
            percentile(latencies, 99) * 1000 if latencies else None,
            "ms",
            Target("<=", 100),
        ),
        Row(
            "requests not answered 202",
            result.requests - result.statuses.get(202, 0),
            "requests",
            Target("==", 0),
        ),
    ]


def batch_accept_rows(result: load.HttpResult) -> list[Row]:
    """Message rate and request latencies of batches, against issue 7's target."""
    return [
        Row("rate", rate(result.accepted, result.seconds), "msgs/s", Target(">=", 5000)),
        *spread_rows("request latency", result.latencies, scale=1000, unit="ms")[:2],
    ]


def raw_ratio_row(measured: float | None, raw4: float | None, target: Target | None) -> Row:
    share = ratio(measured, raw4)
    percent = share * 100 if share is not None else None
    return Row("ratio to the raw 4-connection rate", percent, "%", target)


class Benchmark:
    def __init__(
        self, stack: Stack, args: argparse.Namespace, peer: PostOfficePeer | None = None
    ) -> None:
        self.stack = stack
        self.args = args
        self.peer = peer
        self.comparison: PeerComparison | None = None
        self.soak_started: float | None = None
        self.rows: list[Row] = []
        self.accounting = Accounting()
        self.key = ""
        self.port = 0
        self.profiles: list[str] = []
        self.sampler: ProcessSampler | None = None
        self.raw4_rate: float | None = None
        self.single_rate: float | None = None
        self.batch_available = True
        self.mail = load.Mail(domains=args.domains)

    # -- helpers ----------------------------------------------------------------------------

    @property
    def sampling(self) -> ProcessSampler:
        """The sampler, running from the start of ``run`` to the memory rows."""
        assert self.sampler is not None, "run() starts the sampler"
        return self.sampler

    def post(self, phase: str, count: int, *, clients: int, **kwargs) -> load.HttpResult:
        result = load.post_all(port=self.port, key=self.key, count=count, clients=clients, **kwargs)
        self.accounting.add(phase, result.accepted)
        return result

    def send_batches(self, phase: str, count: int, *, priority: str = "normal"):
        if not self.batch_available:
            # Without a batch endpoint the same messages go one request each.
            return self.post(
                phase,
                count,
                clients=self.args.clients,
                path=SINGLE_PATH,
                bodies=lambda i: self.mail.message(phase, i, priority=priority),
            )
        return self.post(
            phase,
            math.ceil(count / BATCH_SIZE),
            clients=self.args.batch_clients,
            path=BATCH_PATH,
            bodies=lambda b: self.mail.batch(
                phase, b * BATCH_SIZE, min(BATCH_SIZE, count - b * BATCH_SIZE), priority=priority
            ),
            accepted=load.accepted_batch,
        )

    def profiled(self, phase: str, groups: list[str], work: Callable[[], object]):
        """Run ``work`` under py-spy (when --profile) for each named process group."""
        if self.args.profile is None:
            return work()
        self.args.profile.mkdir(parents=True, exist_ok=True)
        roots = self.stack.process_groups()
        recorders = {
            group: Recorder(
                pid=pid,
                output=self.args.profile / f"{phase}-{group.replace(' ', '-')}.txt",
                rate=PROFILE_RATE,
            ).start()
            for group in groups
            if (pid := roots.get(group))
        }
        try:
            return work()
        finally:
            for group, recorder in recorders.items():
                summary = summarize(recorder.stop())
                self.profiles.append(
                    format_summary(f"{group}, {phase} phase", summary, rate=PROFILE_RATE)
                )

    def wait_delivered(self, phase: str, expected: int) -> dict:
        arrived = self.stack.sink.wait_for(phase, expected, timeout=budget(expected), progress=True)
        if arrived["distinct"] < expected:
            say(f"{phase}: only {arrived['distinct']} of {expected} reached the sink in time")
        # The row says `delivered` a moment after the sink's 250 (one commit later).
        wait_final(phase, expected, timeout=30)
        return arrived

    # -- phases -----------------------------------------------------------------------------

    def run(self) -> None:
        self.key = self.stack.api_key()
        assert self.stack.api is not None, "the stack is started"
        self.port = self.stack.api.port
        self.sampler = ProcessSampler(
            lambda: process_groups(self.stack, self.peer),
            fast=lambda: postgres_groups(self.stack, self.peer),
        ).start()
        self.warm_up()
        if not self.args.peers_only:
            self.raw_limit()
            self.single_accept()
            self.smtp_submission()
            self.api_alone()
            self.end_to_end()
            self.high_behind_backlog()
            self.retries()
        if self.peer is not None:
            self.comparison = PeerComparison(self, self.peer)
            self.comparison.run(self.args.rounds)
        if self.args.soak and not self.args.peers_only:
            self.soak()
        self.sampler.stop()
        self.memory_rows()
        self.correctness()

    def warm_up(self) -> None:
        """Every gunicorn worker and pool process loads its code and opens its connections
        before anything is timed; whether the batch endpoint exists is found out here."""
        say("warming up")
        self.post(
            "warm",
            200,
            clients=self.args.clients,
            path=SINGLE_PATH,
            bodies=lambda i: self.mail.message("warm", i),
        )
        probe = self.post(
            "warm",
            1,
            clients=1,
            path=BATCH_PATH,
            bodies=lambda _: self.mail.batch("warm", 200, 10),
            accepted=load.accepted_batch,
        )
        self.batch_available = probe.statuses.get(404, 0) == 0 and probe.accepted > 0
        self.wait_delivered("warm", self.accounting.phases.get("warm", 0))

    def raw_limit(self) -> None:
        count = self.args.messages
        self.rows.append(heading("Raw limit: plain smtplib into the same sink, no DB or queue"))
        for connections in (1, 4):
            say(f"raw limit over {connections} connection(s): {count:,} messages")
            before = self.sampling.mark()
            result = load.smtp_blast(
                port=self.stack.sink.port,
                mail=self.mail,
                phase=f"raw{connections}",
                count=count,
                connections=connections,
            )
            measured = rate(result.sent, result.seconds)
            if connections == 4:
                self.raw4_rate = measured
            label = "1 connection" if connections == 1 else "4 connections, 4 threads"
            self.rows.append(Row(label, measured, "msgs/s"))
            if result.failed:
                self.rows.append(Row(f"{label}: refused by the sink", result.failed, "msgs"))
        # The two processes involved, for the last blast: which one is the limit.
        used = cpu_between(before, self.sampling.mark())
        for name, label in (("sink", "SMTP sink"), ("load generator", "load generator (smtplib)")):
            self.rows.append(Row(f"CPU: {label}", used.get(name, 0) * 1000 / count, "ms/msg"))

    def single_accept(self) -> None:
        count, clients = self.args.single, self.args.clients
        say(f"single-message accept: {count:,} requests from {clients} connections")
        before = self.sampling.mark()
        result = self.profiled(
            "single",
            ["api", "worker general"],
            lambda: self.post(
                "single",
                count,
                clients=clients,
                path=SINGLE_PATH,
                bodies=lambda i: self.mail.message("single", i),
            ),
        )
        after = self.sampling.mark()
        self.single_rate = rate(result.accepted, result.seconds)
        self.wait_delivered("single", result.accepted)
        failures = result.requests - result.statuses.get(202, 0)
        # The floor under any request on this machine: the same server and load generator, a
        # request that does no work (answered by the first middleware, no database).
        say(f"the same server doing nothing: GET {CEILING_PATH} {count:,} times")
        ceiling = self.post(
            "ceiling",
            count,
            clients=clients,
            path=CEILING_PATH,
            method="GET",
            bodies=lambda i: {},
            accepted=lambda status, payload: 0,
        )
        self.rows += [
            heading(
                f"API single-message accept: POST {SINGLE_PATH}, {clients} connections, "
                f"{count:,} requests"
            ),
            *single_accept_rows(result),
            Row(
                f"for scale: GET {CEILING_PATH}, no work, rate",
                rate(ceiling.requests, ceiling.seconds),
                "req/s",
            ),
            Row(
                f"for scale: GET {CEILING_PATH}, no work, p99",
                percentile(ceiling.latencies, 99) * 1000 if ceiling.latencies else None,
                "ms",
            ),
            *spread_rows(
                "accept→delivered at this rate", delivered_latencies("single"), scale=1, unit="s"
            ),
            *cpu_rows(before, after, result.requests, "ms/request"),
        ]
        if failures:
            say(f"single: statuses {dict(result.statuses)}, errors {dict(result.errors)}")

    def smtp_submission(self) -> None:
        """Messages accepted over SMTP submission (8 connections, STARTTLS, AUTH), then delivered
        like any other phase's; the rate beside the API's single accepts."""
        count = min(self.args.messages, 2000)
        result = submission.measure(self.stack, mail=self.mail, phase="smtp", count=count)
        self.accounting.add("smtp", result.accepted)
        self.wait_delivered("smtp", result.accepted)
        self.rows += submission.rows(result, api_rate=self.single_rate)

    @contextlib.contextmanager
    def workers_paused(self):
        """Every worker process (pools and beat) stopped with SIGSTOP until the block ends:
        what the API accepts meanwhile waits, committed, in Postgres and RabbitMQ."""
        roots = {
            name: pid
            for name, pid in self.stack.process_groups().items()
            if name.startswith("worker") and pid is not None
        }
        with stopped([pid for tree in process_trees(roots).values() for pid in tree]):
            yield

    def api_alone(self) -> None:
        """The accept rates with the API and Postgres alone on the CPUs; then the delivery of
        what was accepted, with the workers alone."""
        count, clients = self.args.single, self.args.clients
        batched = self.args.messages if self.batch_available else 0
        say(f"the API alone: {count:,} single sends, {batched:,} in batches, workers stopped")
        with self.workers_paused():
            before = self.sampling.mark()
            single = self.profiled(
                "apisingle",
                ["api"],
                lambda: self.post(
                    "apisingle",
                    count,
                    clients=clients,
                    path=SINGLE_PATH,
                    bodies=lambda i: self.mail.message("apisingle", i),
                ),
            )
            after_single = self.sampling.mark()
            batch = (
                self.profiled("apibatch", ["api"], lambda: self.send_batches("apibatch", batched))
                if batched
                else None
            )
            after_batch = self.sampling.mark()
        say("the workers resume and deliver what the API accepted alone")
        resumed = time.time()
        self.wait_delivered("apisingle", single.accepted)
        arrived = self.wait_delivered("apibatch", batch.accepted) if batch else {"last": None}
        delivered = self.sampling.mark()
        backlog = single.accepted + (batch.accepted if batch else 0)
        last = max(
            filter(None, [self.stack.sink.summary("apisingle")["last"], arrived["last"]]),
            default=None,
        )
        drain = rate(backlog, last - resumed) if last else None
        self.rows += [
            heading(
                f"The API alone (every worker stopped): POST {SINGLE_PATH}, {clients} "
                f"connections, {count:,} requests"
            ),
            *single_accept_rows(single),
            *cpu_rows(before, after_single, single.requests, "ms/request", only=ALONE),
        ]
        if batch is not None:
            self.rows += [
                heading(
                    f"The API alone: POST {BATCH_PATH}, {BATCH_SIZE} per request, "
                    f"{self.args.batch_clients} connections, {batched:,} messages"
                ),
                *batch_accept_rows(batch),
                *cpu_rows(after_single, after_batch, batch.accepted, "ms/msg", only=ALONE),
            ]
        self.rows += [
            heading(f"The workers alone: delivering those {backlog:,} queued messages"),
            Row("rate", drain, "msgs/s"),
            raw_ratio_row(drain, self.raw4_rate, None),
            *cpu_rows(after_batch, delivered, backlog, "ms/msg"),
        ]

    def end_to_end(self) -> None:
        count = self.args.messages
        how = f"batches of {BATCH_SIZE}" if self.batch_available else "single requests"
        say(f"end to end: {count:,} messages in {how}")
        before = self.sampling.mark()

        def accept_and_deliver() -> tuple[load.HttpResult, dict]:
            sent = self.send_batches("e2e", count)
            return sent, self.wait_delivered("e2e", sent.accepted)

        result, arrived = self.profiled("e2e", ["api", "worker general"], accept_and_deliver)
        after = self.sampling.mark()
        from deliveries.states import DeliveryStatus

        delivered_rows = _deliveries("e2e").filter(status=DeliveryStatus.DELIVERED).count()
        end_to_end = (
            rate(arrived["distinct"], arrived["last"] - result.started) if arrived["last"] else None
        )
        if self.batch_available:
            self.rows += [
                heading(
                    f"API batch accept: POST {BATCH_PATH}, {BATCH_SIZE} per request, "
                    f"{self.args.batch_clients} connections, while delivering"
                ),
                *batch_accept_rows(result),
            ]
        else:
            self.rows += [
                heading(f"API batch accept: POST {BATCH_PATH}"),
                Row("rate", "missing", "", Target(">=", 5000), wanted="endpoint absent"),
            ]
        self.rows += [
            heading(f"End to end: {count:,} messages, first accept → last arrival at the sink"),
            Row("rate", end_to_end, "msgs/s"),
            raw_ratio_row(end_to_end, self.raw4_rate, Target(">=", 75)),
            Row("delivered rows in Postgres", delivered_rows, "rows", Target("==", count)),
            *spread_rows("accept→delivered", delivered_latencies("e2e"), scale=1, unit="s"),
            *cpu_rows(before, after, arrived["distinct"], "ms/msg"),
        ]

    def high_behind_backlog(self) -> None:
        backlog, high = min(self.args.backlog, self.args.messages), self.args.high
        say(f"high behind a backlog: {backlog:,} low, then {high} high")
        self.send_batches("low", backlog, priority="low")
        self.post(
            "high",
            high,
            clients=1,
            path=SINGLE_PATH,
            bodies=lambda i: self.mail.message("high", i, priority="high"),
        )
        self.wait_delivered("high", self.accounting.phases.get("high", 0))
        self.wait_delivered("low", self.accounting.phases.get("low", 0))
        high_arrivals = self.stack.sink.arrivals("high")
        last_high = max(high_arrivals.values(), default=None)
        low_after = (
            sum(1 for t in self.stack.sink.arrivals("low").values() if t > last_high)
            if last_high
            else None
        )
        at_sink = sink_latencies("high", high_arrivals)
        in_postgres = delivered_latencies("high")
        self.rows += [
            heading(f"`high` behind a backlog: {backlog:,} `low` queued, then {high} `high`"),
            Row(
                "high accept→sink p95",
                percentile(at_sink, 95) if at_sink else None,
                "s",
                Target("<", 5),
            ),
            Row("high accept→sink max", max(at_sink, default=None), "s"),
            Row(
                "high accept→delivered p95 (Postgres)",
                percentile(in_postgres, 95) if in_postgres else None,
                "s",
            ),
            Row("low still to deliver when the last high arrived", low_after, "msgs"),
        ]

    def retries(self) -> None:
        """2 % of RCPT commands answered 451: the deferred deliveries wait out the backoff and
        are delivered by a later attempt; nothing is lost or sent twice, and every wait is the
        policy's plus at most the dispatcher's share (a tick and the time to take the task)."""
        from django.conf import settings

        from benchmarks.retries import AttemptTimes, retry_waits
        from deliveries import conf
        from deliveries.models import Attempt
        from tests.support.sink import RCPT_451

        count = self.args.retry_messages
        if count <= 0:
            return
        policy = conf.retry_policy()
        # Up to three deferrals of one delivery (2 % each) fit in the wait.
        backoff = sum(
            policy.delay(attempt, rand=lambda: 0.0).total_seconds() for attempt in (1, 2, 3)
        )
        say(f"retries: {count:,} messages, {RETRY_FAULT_SHARE:.0%} of RCPT commands answered 451")
        self.stack.sink.fail_share([RCPT_451], RETRY_FAULT_SHARE)
        try:
            self.send_batches("retry", count)
            arrived = self.stack.sink.wait_for(
                "retry", count, timeout=budget(count) + backoff, progress=True
            )
        finally:
            injected = self.stack.sink.fail_share([]).get(RCPT_451, 0)
        wait_final("retry", count, timeout=30)
        times = [
            AttemptTimes(*row)
            for row in Attempt.objects.filter(delivery__address__startswith="retry-").values_list(
                "delivery_id", "number", "started_at", "duration_ms"
            )
        ]
        waits = retry_waits(times, policy)
        # The dispatcher's share: up to a tick until the row is found due, and the time for a
        # worker to take the task it publishes.
        slack = settings.MAILHUB_DISPATCH_INTERVAL_SECONDS + RETRY_TAKE_SECONDS
        outside = sum(1 for wait in waits if not wait.within(slack))
        first = [wait.seconds for wait in waits if wait.after_attempt == 1]
        lowest, highest = (waits[0].lowest, waits[0].highest) if waits else (None, None)
        self.rows += [
            heading(f"Retries: {count:,} messages, {RETRY_FAULT_SHARE:.0%} of RCPTs answered 451"),
            Row("RCPT commands answered 451", injected, "cmds"),
            Row(
                "delivered (distinct at the sink)", arrived["distinct"], "msgs", Target("==", count)
            ),
            Row("retries (a later attempt after a deferral)", len(waits), "attempts"),
            *spread_rows("wait before the 2nd attempt", first, scale=1, unit="s"),
            Row(
                "policy's wait before the 2nd attempt",
                f"{lowest:g}-{highest:g}" if waits else "none",
                "s",
            ),
            Row(
                f"waits outside the policy (+{slack:g} s for the dispatcher)",
                outside,
                "waits",
                Target("==", 0),
            ),
        ]

    def soak(self) -> None:
        seconds, per_second = self.args.soak, self.args.soak_rate
        count = int(seconds * per_second)
        say(f"soak: {count:,} messages at {per_second:g}/s for {seconds:g} s")
        started = self.soak_started = time.monotonic()
        self.post(
            "soak",
            count,
            clients=8,
            path=SINGLE_PATH,
            bodies=lambda i: self.mail.message("soak", i),
            per_second=per_second,
        )
        self.wait_delivered("soak", self.accounting.phases.get("soak", 0))
        samples = [totals for at, totals in self.sampling.series if at >= started]
        # The first tenth warms up (pool processes reach their working set); flat is judged
        # from there to the end.
        steady = samples[len(samples) // 10 :] or samples
        self.rows.append(
            heading(
                f"Soak: {seconds:g} s at {per_second:g} msgs/s, "
                f"RSS sampled every {self.sampling.interval:g} s"
            )
        )
        for group in ("worker general", "worker high", "api"):
            values = [totals[group] for totals in steady if group in totals]
            if not values:
                continue
            first, last, peak = values[0], values[-1], max(values)
            self.rows += [
                Row(
                    f"{group}: RSS first / last / max",
                    f"{first / MIB:,.0f} / {last / MIB:,.0f} / {peak / MIB:,.0f}",
                    "MiB",
                ),
                Row(
                    f"{group}: growth first → last",
                    (last - first) * 100 / first,
                    "%",
                    Target("<=", 10),
                ),
            ]

    def memory_rows(self) -> None:
        self.rows.append(heading("Peak RSS during the run (the sum counts shared pages twice)"))
        for group, peak in self.sampling.peaks.items():
            if not group.startswith(("worker", "api", "peer worker")):
                continue
            self.rows += [
                Row(f"{group}: largest process", peak.largest_process / MIB, "MiB"),
                Row(f"{group}: all {peak.processes} processes", peak.largest_total / MIB, "MiB"),
            ]

    def correctness(self) -> None:
        from deliveries.models import Delivery, Message
        from deliveries.states import ACTIVE, DeliveryStatus

        sink = self.stack.sink.duplicates()
        in_postgres = Message.objects.filter(client__name="bench").count()
        waiting = Delivery.objects.filter(status__in=sorted(ACTIVE)).count()
        missing = max(self.accounting.accepted - in_postgres, 0)
        unsent = Delivery.objects.exclude(status=DeliveryStatus.DELIVERED).count() - waiting
        without_attempt = (
            Delivery.objects.filter(status=DeliveryStatus.DELIVERED)
            .exclude(attempt_set__outcome="delivered")
            .count()
        )
        self.rows += [
            heading("Correctness, the whole run"),
            Row("messages accepted (API, email backend)", self.accounting.accepted, "msgs"),
            Row("lost: accepted but not final", waiting + missing, "msgs", Target("==", 0)),
            Row(
                "duplicated: a Message-ID at the sink twice",
                sink["duplicates"],
                "msgs",
                Target("==", 0),
            ),
            Row("final but not delivered (bounced, failed ...)", unsent, "msgs", Target("==", 0)),
            Row(
                "delivered without a delivered attempt row",
                without_attempt,
                "rows",
                Target("==", 0),
            ),
        ]
        if self.comparison is not None:
            peer = self.comparison.correctness()
            self.rows += [
                Row("post_office: emails queued by send_many", peer["accepted"], "msgs"),
                Row("post_office: queued but not sent", peer["lost"], "msgs", Target("==", 0)),
            ]
        if sink["duplicates"]:
            say(f"duplicated Message-IDs, e.g. {sink['examples']}")

    def soak_series(self) -> dict | None:
        """RSS of every group at each sample of the soak, seconds from its start."""
        if self.soak_started is None or self.sampler is None:
            return None
        return {
            "interval": self.sampler.interval,
            "samples": [
                {"t": round(at - self.soak_started, 3), "rss": totals}
                for at, totals in self.sampler.series
                if at >= self.soak_started
            ],
        }

    def compared(self):
        """The peer comparison's figures: each round's, their medians, the ratios (none when
        they cannot be worked out: the rounds still go into the JSON)."""
        if self.comparison is None:
            return [], None, []
        rounds = self.comparison.rounds
        try:
            median = median_figures(rounds)
            return rounds, median, compare(median)
        except Exception as exc:  # the measured rounds are worth keeping whatever failed here
            say(f"the peer comparison's medians failed ({exc!r}); its rounds are in the JSON")
            return rounds, None, []

    def dispatcher(self) -> None:
        """After the stack stopped: no beat ticks in between, nothing else on the database."""
        from accounts.models import Client
        from benchmarks.dispatcher import due_query_plan, seed_finished, tick_seconds
        from deliveries.models import Delivery

        repeats, extra = self.args.ticks, self.args.million
        rows_before = Delivery.objects.count()
        say(f"dispatcher: {repeats} empty ticks over {rows_before:,} rows")
        before = tick_seconds(repeats=repeats)
        say(f"dispatcher: inserting {extra:,} finished or far-future rows")
        started = time.monotonic()
        seed_finished(client_id=Client.objects.get(name="bench").id, count=extra)
        say(f"dispatcher: inserted in {time.monotonic() - started:.0f} s; {repeats} ticks again")
        after = tick_seconds(repeats=repeats)
        plan = due_query_plan()
        say("the due query's plan after the insert:\n    " + plan.replace("\n", "\n    "))
        median_before, median_after = percentile(before, 50), percentile(after, 50)
        self.rows += [
            heading(f"Dispatcher tick with nothing due, median of {repeats}"),
            Row(f"over {rows_before:,} rows", median_before * 1000, "ms"),
            Row(f"with {extra:,} finished or far-future rows more", median_after * 1000, "ms"),
            Row("ratio", ratio(median_after, median_before), "x", Target("<", 2)),
            Row(
                "due query reads the partial index delivery_due",
                "yes" if "delivery_due" in plan else "no",
                "",
                wanted="yes",
                ok="delivery_due" in plan,
            ),
        ]

    def retention(self) -> None:
        """After the stack stopped (or alone): nothing else writes to the database."""
        from accounts.services import client_get_or_create
        from benchmarks import retention

        rows, days = self.args.retention_rows, self.args.retention_days
        result = retention.run(
            client_id=client_get_or_create(name="bench").id, rows=rows, days=days
        )
        mib = 1024 * 1024
        by_rows, vacuum, by_drop = result.by_rows, result.vacuum, result.by_drop
        self.rows += [
            heading(
                f"Retention: one day of history ({result.day_rows:,} rows of events and attempts)"
                f" out of {rows:,} over {days} days, written in {result.seed_seconds:.0f} s"
            ),
            Row("row by row (batches of 5,000): time", by_rows.seconds, "s"),
            Row("row by row: WAL written", by_rows.wal_bytes / mib, "MiB"),
            Row("then VACUUM of that day's partitions: time", vacuum.seconds, "s"),
            Row("then VACUUM: WAL written", vacuum.wal_bytes / mib, "MiB"),
            Row(f"partition drop (purge), {by_drop.rows:,} rows: time", by_drop.seconds, "s"),
            Row("partition drop: WAL written", by_drop.wal_bytes / mib, "MiB"),
            Row("time, row by row / drop", ratio(by_rows.seconds, by_drop.seconds), "x"),
            Row("WAL, row by row / drop", ratio(by_rows.wal_bytes, by_drop.wal_bytes), "x"),
            Row(
                "a checkpoint came between the seed and the measures",
                "yes" if result.checkpointed else "no",
                "",
                wanted="yes (old pages: whole-page images in the WAL)",
                ok=result.checkpointed,
            ),
        ]


# -- the report ----------------------------------------------------------------------------------


def git_commit() -> tuple[str, bool]:
    """The checked-out commit (short), and whether tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - fixed arguments
            ["git", *args],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit, bool(git("status", "--porcelain", "--untracked-files=no"))


def git_version() -> str:
    commit, dirty = git_commit()
    return f"{commit} (with uncommitted changes)" if dirty else commit


def header(
    stack: Stack,
    args: argparse.Namespace,
    load_at_start: tuple[float, ...],
    peer: PostOfficePeer | None = None,
) -> str:
    from django.db import connection

    from mailhub.celery import app

    box = machine()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1)
        rabbit = broker.connection.server_properties.get("version", "?")
    api = stack.process_groups()["api"]
    api_workers = len(process_trees({"api": api})["api"]) - 1 if api else 0
    # Without --api-threads gunicorn takes its configuration's value, as read here.
    configured = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["threads"]
    threads = args.api_threads or f"{configured} (gunicorn.conf.py's)"
    sizing = stack.sizing
    peer_line = (
        [
            f"Peer, same machine, Postgres server, RabbitMQ and sink: django-post-office "
            f"{peer.version}, Celery worker {peer.concurrency} processes + beat, "
            f"THREADS_PER_PROCESS 20, BATCH_SIZE 1000; rounds {args.rounds} (medians shown)"
        ]
        if peer is not None
        else []
    )
    return "\n".join(
        [
            f"Mailhub benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {git_version()}",
            f"Machine: {box.cpus} CPUs ({box.cpu_model}), {box.memory_bytes / 2**30:.1f} GiB, "
            f"Linux {box.kernel}, Python {box.python}, PostgreSQL {postgres}, RabbitMQ {rabbit}",
            "Load average at start: " + " ".join(f"{value:.2f}" for value in load_at_start),
            f"Stack, all on this machine: API gunicorn {api_workers} worker processes x "
            f"{threads} threads; Celery pools (processes): high {sizing.high}, general "
            f"{sizing.general} + beat, webhooks {sizing.webhooks}; aiosmtpd sink on its own",
            *peer_line,
            f"Messages: N = {args.messages:,}, 1 recipient at {args.domains} domain(s), "
            f"~2 KB text; single-accept requests {args.single:,}",
        ]
    )


def retention_header(load_at_start: tuple[float, ...]) -> str:
    from django.db import connection

    box = machine()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return "\n".join(
        [
            f"Mailhub benchmark, retention only, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"commit {git_version()}",
            f"Machine: {box.cpus} CPUs ({box.cpu_model}), {box.memory_bytes / 2**30:.1f} GiB, "
            f"Linux {box.kernel}, Python {box.python}, PostgreSQL {postgres}",
            "Load average at start: " + " ".join(f"{value:.2f}" for value in load_at_start),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    load_at_start = os.getloadavg()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="mailhub-bench-"))
    stack = Stack(
        database_url=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        sizing=Sizing(
            high=args.high_concurrency,
            general=args.general_concurrency,
            webhooks=args.webhooks_concurrency,
            api_workers=args.api_workers,
            api_threads=args.api_threads,
        ),
        log_dir=log_dir,
    )
    stack.keep_database = args.keep_database
    peer = (
        None
        if args.skip_peers or args.retention_only
        else PostOfficePeer(stack, concurrency=args.peer_concurrency, log_dir=log_dir)
    )
    say(f"logs in {log_dir}; load average {load_at_start[0]:.2f}")
    benchmark = Benchmark(stack, args, peer)
    top = ""
    peer_info: dict | None = None
    try:
        if args.retention_only:
            stack.start_database()
            top = retention_header(load_at_start)
            benchmark.retention()
        else:
            stack.start()
            if peer is not None:
                peer.start()
                peer_info = {
                    "name": "django-post-office",
                    "version": peer.version,
                    "settings": peer.settings(),
                    "concurrency": peer.concurrency,
                }
            top = header(stack, args, load_at_start, peer)
            benchmark.run()
            if peer is not None:
                peer.close()
            stack.stop_processes()
            if not args.skip_million and not args.peers_only:
                benchmark.dispatcher()
            if not args.skip_retention and not args.peers_only:
                benchmark.retention()
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        raise SystemExit(130) from None
    except Exception:
        if benchmark.rows:
            say("failed; what was measured before:\n" + format_table(benchmark.rows))
        raise
    finally:
        if benchmark.sampler is not None:
            benchmark.sampler.stop()  # it reads the database that is about to be dropped
        if peer is not None:
            peer.close()
        stack.close()
    if args.profile:
        top += f"\n(profiled with py-spy at {PROFILE_RATE} Hz: figures somewhat lower than without)"
    load_at_end = os.getloadavg()
    print(top)
    print(f"Load average at the end: {' '.join(f'{v:.2f}' for v in load_at_end)}")
    print()
    print(format_table(benchmark.rows))
    rounds, median, compared = benchmark.compared()
    if compared:
        took = benchmark.comparison.seconds if benchmark.comparison else 0
        print()
        print(
            format_comparison(
                compared,
                title=(
                    f"Mailhub (shipped defaults) beside django-post-office, N = "
                    f"{args.messages:,}, median of {len(rounds)} round(s), {took:.0f} s; "
                    "ratio = Mailhub / post_office"
                ),
            )
        )
    if benchmark.profiles:
        print()
        print("\n\n".join(benchmark.profiles))
    commit, dirty = git_commit()
    path = report.write(
        report.document(
            started=started,
            finished=datetime.now(UTC),
            commit=commit,
            dirty=dirty,
            machine=machine(),
            options={
                name: str(value) if isinstance(value, Path) else value
                for name, value in vars(args).items()
            },
            load={"start": load_at_start, "end": load_at_end},
            rows=benchmark.rows,
            peer=peer_info,
            rounds=rounds,
            median=median,
            compared=compared,
            soak=benchmark.soak_series(),
        ),
        args.json_dir,
        started,
    )
    say(f"the run as JSON: {path} (charts: python -m benchmarks.charts {path} --out docs/bench)")
