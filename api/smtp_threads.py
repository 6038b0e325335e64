"""What Mailhub's SMTP servers (``submission``, ``bounces``) share: their work is synchronous
Django (ORM, transactions), so it runs in a small pool of threads, each with its own database
connection, looked after as Django looks after a request's (``close_old_connections`` before
and after each job); and a stopping server lets the work in flight finish, so that each client
gets its reply and does not send the same mail again."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from typing import TypeVar

from aiosmtpd.controller import Controller
from django.db import close_old_connections

T = TypeVar("T")


class ThreadedHandler:
    """Base of an aiosmtpd handler whose jobs run in ``threads`` threads (``run``)."""

    def __init__(self, *, threads: int, name: str) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=name
        )
        #: Jobs whose client waits for their reply right now (a stopping server waits for them).
        self.in_flight = 0

    async def run(self, job: Callable[[], T]) -> T:
        """``job`` in one of the threads, its database connection managed as for a request."""

        def managed() -> T:
            close_old_connections()
            try:
                return job()
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self.executor, managed)


class DrainingController(Controller):
    """A Controller (the server on its own event loop in a thread: ``start``, ``stop``) whose
    ``stop_gracefully`` waits for the jobs of its ``ThreadedHandler``."""

    handler: ThreadedHandler
    #: How long ``stop_gracefully`` waits for the jobs in flight, by default.
    drain_seconds = 20.0

    def stop_gracefully(self, *, drain_seconds: float | None = None) -> None:
        """Stop accepting connections, let the jobs in flight finish (``drain_seconds`` at
        most), so that each client gets its reply and does not send the same mail again, then
        stop the server and its threads."""
        if drain_seconds is None:
            drain_seconds = self.drain_seconds
        server = self.server
        if server is not None:
            self.loop.call_soon_threadsafe(server.close)
        deadline = time.monotonic() + drain_seconds
        while self.handler.in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        self.stop()
        self.handler.executor.shutdown(wait=True)
