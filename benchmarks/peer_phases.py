"""The peer comparison (issue 15): Mailhub and django-post-office, the same N messages into
the same sink, one phase after the other, each waiting until the mail of the one before is
delivered. A round is six phases:

1. ``drain``, Mailhub: every worker process stopped (SIGSTOP), N messages through the Django
   email backend (``api.backends.MailhubBackend``) in calls of 100 — the *enqueue rate* —;
   then the workers resume and deliver that backlog alone, timed from the resume to the last
   arrival at the sink — the *drain rate*;
2. ``drain``, post_office: the same with its worker stopped and ``send_many`` of 100;
3. ``backend``, Mailhub: N through the email backend with the workers running, first call to
   last arrival;
4. ``send_many``, post_office: the same through ``send_many`` and its Celery delivery;
5. ``batch``, Mailhub: N through ``POST /api/v1/messages/batch`` (500 per request, as the rest
   of the benchmark sends batches), first request to last arrival;
6. ``signed``, Mailhub: the drain of 1. again with every message DKIM-signed (the bench domain's
   rsa-sha256 key active). post_office signs nothing, so phases 1-5 send the same unsigned
   mail from both; this one shows what signing costs.

CPU is counted from ``/proc`` between the start and the end of each phase (for a drain, from the
resume), per group: the worker processes (Mailhub: every pool and beat; post_office: its worker,
pool and beat) and the Postgres backends of the system's own database; the enqueueing
process's own CPU comes from ``getrusage`` in that process. Rounds after the first repeat the
six phases; the table shows each figure's median.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks.enqueue import Enqueued
from benchmarks.peer import PostOfficePeer, finish_enqueue, start_enqueue
from benchmarks.procs import cpu_between
from benchmarks.stack import say
from benchmarks.stats import rate
from benchmarks.versus import MAILHUB, PEER, Figures

if TYPE_CHECKING:
    import subprocess

    from benchmarks.run import Benchmark

WARM = 200
GROUPS = {
    MAILHUB: lambda name: name.startswith("worker") or name == "postgres",
    PEER: lambda name: name in ("peer worker", "postgres peer"),
}


def budget(count: int) -> float:
    """How long to wait for ``count`` messages to arrive before calling the rest lost."""
    return 60 + count / 20


@dataclass
class PeerComparison:
    benchmark: Benchmark
    peer: PostOfficePeer
    rounds: list[Figures] = field(default_factory=list)
    peer_accepted: int = 0
    seconds: float = 0.0  # how long the rounds took, warm-up included

    @property
    def count(self) -> int:
        return self.benchmark.args.messages

    def run(self, rounds: int) -> None:
        began = time.monotonic()
        self.warm_up()
        for number in range(1, rounds + 1):
            say(f"peer comparison, round {number} of {rounds}: N = {self.count:,}")
            figures: Figures = {"drain": {}}
            figures["drain"][MAILHUB] = self.mailhub_drain(f"mhdrain{number}")
            figures["drain"][PEER] = self.post_office_drain(f"podrain{number}")
            figures["backend"] = {MAILHUB: self.mailhub_backend(f"mhbackend{number}")}
            figures["send_many"] = {PEER: self.post_office_send_many(f"posendmany{number}")}
            figures["batch"] = {MAILHUB: self.mailhub_batch(f"mhbatch{number}")}
            figures["signed"] = {MAILHUB: self.mailhub_signed_drain(f"mhsigned{number}")}
            self.rounds.append(figures)
        self.seconds = time.monotonic() - began

    # -- helpers ----------------------------------------------------------------------------

    def enqueue_mailhub(self, phase: str, count: int) -> subprocess.Popen:
        env = {**self.benchmark.stack.environment(), "MAILHUB_EMAIL_BACKEND_CLIENT": "bench"}
        return start_enqueue(MAILHUB, env, phase, count, domains=self.benchmark.args.domains)

    def enqueue_post_office(self, phase: str, count: int) -> subprocess.Popen:
        return self.peer.enqueue(phase, count, domains=self.benchmark.args.domains)

    def enqueued(self, system: str, phase: str, process: subprocess.Popen) -> Enqueued:
        result = finish_enqueue(process)
        if system == MAILHUB:
            self.benchmark.accounting.add(phase, result.accepted)
        else:
            self.peer_accepted += result.accepted
        if result.accepted < self.count and not phase.endswith("warm"):
            say(f"{phase}: only {result.accepted} of {self.count} accepted")
        return result

    def wait_arrived(
        self, phase: str, expected: int, process: subprocess.Popen | None = None
    ) -> dict:
        def sender_alive() -> None:
            if process is not None and process.poll() not in (None, 0):
                raise RuntimeError(f"{phase}: the enqueueing process failed")

        arrived = self.benchmark.stack.sink.wait_for(
            phase, expected, timeout=budget(expected), progress=True, check=sender_alive
        )
        if arrived["distinct"] < expected:
            say(f"{phase}: only {arrived['distinct']} of {expected} reached the sink in time")
        return arrived

    def wait_final(self, system: str, phase: str, expected: int) -> dict[str, int]:
        """Wait (30 s at most) until the system's own rows say every message is final: a row
        is written a moment after the sink's 250 (post_office: after its whole batch)."""
        deadline = time.monotonic() + 30
        while True:
            if system == MAILHUB:
                from benchmarks.run import wait_final

                final = wait_final(phase, expected, timeout=max(deadline - time.monotonic(), 0))
                return {"final": final}
            statuses = self.peer.statuses(phase)
            done = statuses.get("sent", 0) + statuses.get("failed", 0)
            if done >= expected or time.monotonic() >= deadline:
                return statuses
            time.sleep(0.2)

    def cpu(self, system: str, before: dict, after: dict, delivered: int) -> dict:
        used = cpu_between(before, after)
        counted = sum(seconds for name, seconds in used.items() if GROUPS[system](name))
        return {
            "cpu_ms_per_msg": counted * 1000 / delivered if delivered else None,
            "cpu_seconds": {name: round(seconds, 4) for name, seconds in used.items()},
        }

    def settle(
        self,
        system: str,
        phase: str,
        enqueued: Enqueued,
        arrived: dict,
        *,
        start: float,
        before: dict,
        client: str | None = None,
    ) -> dict:
        """Once the rows are final, the phase's figures: ``start`` is when its clock started,
        ``before`` the CPU then; ``client``, the group whose CPU the enqueueing was (default:
        the enqueueing process's own)."""
        final = self.wait_final(system, phase, enqueued.accepted)
        after = self.mark()
        if client is not None:
            used = cpu_between(before, after).get(client, 0.0)
            enqueued = dataclasses.replace(enqueued, cpu_seconds=used)
        delivered = arrived["distinct"]
        seconds = arrived["last"] - start if arrived["last"] else None
        return {
            "messages": self.count,
            "accepted": enqueued.accepted,
            "delivered": delivered,
            "enqueue_seconds": enqueued.seconds,
            "enqueue_rate": rate(enqueued.accepted, enqueued.seconds),
            "client_cpu_ms_per_msg": enqueued.cpu_seconds * 1000 / max(enqueued.accepted, 1),
            "seconds": seconds,
            "rate": rate(delivered, seconds) if seconds else None,
            **self.cpu(system, before, after, delivered),
            "final": final,
        }

    def mark(self) -> dict:
        return self.benchmark.sampling.mark()

    # -- phases -----------------------------------------------------------------------------

    def warm_up(self) -> None:
        """post_office's worker and the backend's path carry some mail before anything is
        timed (the rest of the stack was warmed by the benchmark)."""
        say(f"peer comparison: warming up both with {WARM} messages")
        for system, phase in ((PEER, "powarm"), (MAILHUB, "mhwarm")):
            enqueue = self.enqueue_post_office if system == PEER else self.enqueue_mailhub
            process = enqueue(phase, WARM)
            result = self.enqueued(system, phase, process)
            self.wait_arrived(phase, result.accepted, process)
            self.wait_final(system, phase, result.accepted)

    def drain(self, system: str, phase: str, paused: Callable, enqueue: Callable) -> dict:
        with paused():
            process = enqueue(phase, self.count)
            enqueued = self.enqueued(system, phase, process)
            say(f"{phase}: {enqueued.accepted:,} enqueued in {enqueued.seconds:.1f} s, workers on")
            before = self.mark()
            resumed = time.time()
        arrived = self.wait_arrived(phase, enqueued.accepted)
        return self.settle(system, phase, enqueued, arrived, start=resumed, before=before)

    def mailhub_drain(self, phase: str) -> dict:
        say(f"{phase}: Mailhub's workers stopped; {self.count:,} through the email backend")
        return self.drain(MAILHUB, phase, self.benchmark.workers_paused, self.enqueue_mailhub)

    def mailhub_signed_drain(self, phase: str) -> dict:
        say(f"{phase}: the drain again, every message DKIM-signed (rsa-sha256, 2048 bits)")
        with self.benchmark.stack.dkim_signed():
            return self.mailhub_drain(phase)

    def post_office_drain(self, phase: str) -> dict:
        say(f"{phase}: post_office's worker stopped; {self.count:,} through send_many")
        return self.drain(PEER, phase, self.peer.paused, self.enqueue_post_office)

    def end_to_end(self, system: str, phase: str, process: subprocess.Popen, before: dict) -> dict:
        arrived = self.wait_arrived(phase, self.count, process)
        enqueued = self.enqueued(system, phase, process)
        return self.settle(system, phase, enqueued, arrived, start=enqueued.started, before=before)

    def mailhub_backend(self, phase: str) -> dict:
        say(f"{phase}: {self.count:,} through Mailhub's email backend, workers running")
        before = self.mark()
        return self.end_to_end(MAILHUB, phase, self.enqueue_mailhub(phase, self.count), before)

    def post_office_send_many(self, phase: str) -> dict:
        say(f"{phase}: {self.count:,} through post_office's send_many, its worker running")
        before = self.mark()
        return self.end_to_end(PEER, phase, self.enqueue_post_office(phase, self.count), before)

    def mailhub_batch(self, phase: str) -> dict:
        say(f"{phase}: {self.count:,} through POST /api/v1/messages/batch, workers running")
        before = self.mark()
        sent = self.benchmark.send_batches(phase, self.count)
        arrived = self.wait_arrived(phase, sent.accepted)
        enqueued = Enqueued(sent.accepted, sent.requests, sent.started, sent.finished, 0.0)
        # The API's processes did the enqueueing work; the load generator only sent JSON.
        return self.settle(
            MAILHUB, phase, enqueued, arrived, start=sent.started, before=before, client="api"
        )

    # -- accounting -------------------------------------------------------------------------

    def correctness(self) -> dict[str, int]:
        """post_office's emails of the whole comparison by status, and how many it lost."""
        totals = self.peer.statuses()
        totals["accepted"] = self.peer_accepted
        totals["lost"] = self.peer_accepted - totals.get("sent", 0)
        return totals
