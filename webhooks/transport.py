"""HTTP for webhooks: one POST to a pinned address, bounded in time, keeping only an excerpt.

The only module that opens sockets for webhooks. The standard library's ``http.client`` is used
because it lets the connection go to the address the SSRF guard checked while TLS still verifies
the certificate for the URL's host name (SNI and hostname check use ``host``, the socket uses
``address``). It never follows redirects, which is what a webhook client must do anyway.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from webhooks.ssrf import Destination

EXCERPT_BYTES = 512
EXCERPT_CHARS = 200

# What may go into the request line and the header block. http.client refuses a bare CR or LF
# but lets an obsolete line folding ("\r\n ") through, and fails on non-ASCII only with an
# encoding error; these are checked before any connection is opened.
_REQUEST_TARGET = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None  # None: no response (refused, timed out, TLS failure...)
    duration_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pinned(connection_class: type[http.client.HTTPConnection]):
    class Pinned(connection_class):  # type: ignore[misc, valid-type]
        """Connects to ``address`` whatever ``host`` resolves to now."""

        def __init__(self, *args, address: str, connect_timeout: float, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._address = address
            self._connect_timeout = connect_timeout
            self._create_connection = self._connect_pinned

        def _connect_pinned(self, _host_port, timeout, source_address=None) -> socket.socket:
            sock = socket.create_connection(
                (self._address, self.port), self._connect_timeout, source_address
            )
            sock.settimeout(timeout)
            return sock

    return Pinned


_PinnedHTTP = _pinned(http.client.HTTPConnection)
_PinnedHTTPS = _pinned(http.client.HTTPSConnection)


def post(
    destination: Destination,
    *,
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float,
    timeout: float,
) -> HttpResult:
    """POST ``body``; give up after ``timeout`` seconds in all, however the server dribbles.

    The request target is the checked URL's path and query as written (``webhooks.ssrf``
    refuses any URL it would have to change). Raises ``ValueError`` for a request target or a
    header that could break the request's framing: those are Mailhub's own bug, never the
    endpoint's failure.
    """
    target = destination.target
    _check_framing(target.path, headers)
    kwargs = {"address": destination.address, "connect_timeout": connect_timeout}
    if target.https:
        connection = _PinnedHTTPS(
            target.host,
            target.port,
            timeout=timeout,
            context=ssl.create_default_context(),
            **kwargs,
        )
    else:
        connection = _PinnedHTTP(target.host, target.port, timeout=timeout, **kwargs)
    # A socket timeout bounds each read, not the whole exchange: a server sending one byte every
    # few seconds would hold the worker for ever. The watchdog closes the socket at the deadline.
    expired = threading.Event()

    def watchdog() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would unwrap the
            # TLS object under the reading thread's feet.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(timeout, watchdog)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        connection.request(
            "POST", target.path, body=body, headers={**headers, "Connection": "close"}
        )
        response = connection.getresponse()
        excerpt = response.read(EXCERPT_BYTES)
        status_code = response.status
        error = ""
    except (OSError, http.client.HTTPException) as exc:
        status_code, excerpt = None, b""
        # The socket's own timeout equals the deadline: on a busy machine it may fire before
        # the watchdog does, and it is the same deadline.
        at_deadline = expired.is_set() or (
            isinstance(exc, TimeoutError) and time.monotonic() - started >= timeout
        )
        error = f"timed out after {timeout:g} s" if at_deadline else _describe(exc)
    finally:
        timer.cancel()
        connection.close()
    return HttpResult(
        status_code=status_code,
        duration_ms=int((time.monotonic() - started) * 1000),
        excerpt=excerpt.decode("utf-8", "replace").strip()[:EXCERPT_CHARS],
        error=error[:300],
    )


def _check_framing(path: str, headers: dict[str, str]) -> None:
    if not _REQUEST_TARGET.fullmatch(path):
        raise ValueError(f"not a request target from a checked URL: {path!r}")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"header {name!r} holds a line break or a control character")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP response: {type(exc).__name__} {exc}".strip()
    return f"{type(exc).__name__}: {exc}"
