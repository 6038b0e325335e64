"""Puts due work on RabbitMQ. Postgres already holds every row, so a failed publish loses nothing:
the row stays ``queued`` and the dispatcher publishes it again after
``MAILHUB_REPUBLISH_AFTER_SECONDS``."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from uuid import UUID

from amqp.exceptions import AMQPError, MessageNacked
from celery.utils.saferepr import saferepr
from django.conf import settings
from kombu.exceptions import KombuError

from deliveries import conf
from mailhub.celery import app

logger = logging.getLogger(__name__)

DELIVER_TASK = "deliveries.tasks.deliver_messages"


Routed = tuple[str, str, int]  # message id, queue, messages per task


def _route(messages: Iterable[tuple[UUID | str, str]]) -> list[Routed]:
    """Resolve queue and task size now, in the caller: the settings are the caller's."""
    size = settings.MAILHUB_TASK_BATCH_SIZE
    queues: dict[str, str] = {}  # once per priority, not per message: settings reads add up
    routed = []
    for message_id, priority in messages:
        queue = queues.get(priority)
        if queue is None:
            queue = queues[priority] = conf.queue_for(priority)
        routed.append((str(message_id), queue, size))
    return routed


def messages_publish(*, messages: Iterable[tuple[UUID | str, str]]) -> int:
    """Publish delivery tasks for ``(message_id, priority)`` pairs; return how many messages."""
    return _publish(_route(messages))


def _argsrepr(chunk: list[str]) -> str:
    """What Celery's saferepr writes for Flower: the plain repr, made at C speed, while it fits
    Celery's limit (saferepr took a fifth of a publish's CPU: 650 -> 540 us per task); past it,
    saferepr's shortened text, once per task."""
    text = repr([chunk])
    if len(text) <= app.amqp.argsrepr_maxsize:
        return text
    return saferepr([chunk], app.amqp.argsrepr_maxsize)


def _publish(routed: list[Routed]) -> int:
    """Messages of one queue travel in tasks of up to ``MAILHUB_TASK_BATCH_SIZE``, so that a
    worker claims, sends and records them together. Stops at the first failure: the broker is
    then most likely down, and every further try would only make the caller wait for the same
    answer."""
    by_queue: dict[tuple[str, int], list[str]] = defaultdict(list)
    for message_id, queue, size in routed:
        by_queue[queue, size].append(message_id)
    published = 0
    try:
        with app.producer_or_acquire() as producer:
            for (queue, size), ids in by_queue.items():
                for start in range(0, len(ids), size):
                    chunk = ids[start : start + size]
                    app.send_task(
                        DELIVER_TASK,
                        args=[chunk],
                        queue=queue,
                        producer=producer,
                        argsrepr=_argsrepr(chunk),
                        kwargsrepr="{}",
                    )
                    published += len(chunk)
    except (KombuError, AMQPError, MessageNacked, OSError) as exc:
        logger.warning(
            "publish failed after %d message(s) (%s); the dispatcher will publish the rest",
            published,
            exc,
        )
    return published


class PublishCoalescer:
    """Publishes from one background thread per process, in batches, instead of in the caller.

    Accepting mail needs its rows committed, not its task confirmed by RabbitMQ: a publish lost
    here (the process dies, the broker is down) leaves the rows `queued` and the dispatcher
    publishes them after ``MAILHUB_REPUBLISH_AFTER_SECONDS``. So an API request hands its
    messages over and answers at once; messages accepted by concurrent requests within
    ``linger`` seconds go out together, in fewer tasks, which also spares the workers: a worker's
    cost is mostly per task. A full task's worth goes out at once, without waiting the rest of
    the linger.
    """

    def __init__(self, publish=None, *, linger: float = 0.02) -> None:
        self._publish = publish or _publish
        self._linger = linger
        self._lock = threading.Lock()
        self._pending: list[Routed] = []
        self._wakeup = threading.Event()
        self._full = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        # Held while a batch is being published: at exit, the batch the background thread has
        # taken is waited for, not cut off with the thread (the mail would wait for the
        # dispatcher's republish).
        self._in_flight = threading.Lock()

    def after_fork(self) -> None:
        # A lock held by another thread at the fork stays held in the child, with no thread to
        # release it.
        self._lock = threading.Lock()
        self._in_flight = threading.Lock()

    def add(self, routed: Iterable[Routed]) -> None:
        with self._lock:
            self._pending.extend(routed)
            if self._pending and len(self._pending) >= self._pending[0][2]:
                self._full.set()
            # A forked process (gunicorn, Celery prefork) inherits the object, not the thread.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="mailhub-publisher", daemon=True
                )
                self._thread.start()
        self._wakeup.set()

    def flush(self) -> int:
        """Publish what is waiting, in the caller's thread; return how many messages."""
        with self._in_flight:
            with self._lock:
                batch, self._pending = self._pending, []
            return self._publish(batch) if batch else 0

    def close(self, *, timeout: float = 5.0) -> None:
        """At exit: wait (up to ``timeout``) for a publish under way, then publish the rest."""
        if not self._in_flight.acquire(timeout=timeout):
            return  # a publish is stuck (the broker away?): its rows wait for the dispatcher
        try:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._publish(batch)
        finally:
            self._in_flight.release()

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._full.wait(self._linger)
            self._wakeup.clear()
            self._full.clear()
            self.flush()


_coalescer = PublishCoalescer()
atexit.register(_coalescer.close)
os.register_at_fork(after_in_child=_coalescer.after_fork)


def messages_publish_soon(*, messages: Iterable[tuple[UUID | str, str]]) -> None:
    """Publish in the background, within milliseconds (see ``PublishCoalescer``)."""
    _coalescer.add(_route(messages))
