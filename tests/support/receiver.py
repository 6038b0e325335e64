"""A real HTTP server on loopback that receives webhooks the way a client's would: it checks each
request's signature with the snippet the documentation tells clients to copy, answers, and keeps
what it got.

receiver.secret = secret          # the endpoint's, from its creation
receiver.fail_next(3)             # the next three requests get 500
receiver.hold()                   # requests wait, unanswered, until receiver.release()
receiver.wait_until(lambda r: len(r.events()) >= 4)
receiver.events()                 # events of the requests it accepted (2xx), in arrival order
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The documentation that holds the verification snippet clients copy.
DOCUMENTS = [ROOT / "README.md"]
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
SNIPPET_FUNCTION = "verify_mailhub_signature"

Verifier = Callable[..., bool]


def documented_verifier() -> Verifier:
    """The documented ``verify_mailhub_signature``, run exactly as written in the docs."""
    for document in DOCUMENTS:
        if not document.exists():
            continue
        for block in _PYTHON_BLOCK.findall(document.read_text()):
            if f"def {SNIPPET_FUNCTION}(" in block:
                namespace: dict = {}
                exec(compile(block, str(document), "exec"), namespace)
                return namespace[SNIPPET_FUNCTION]
    raise AssertionError(f"no documented {SNIPPET_FUNCTION} in {[str(d) for d in DOCUMENTS]}")


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_valid: bool
    answered: int

    @property
    def accepted(self) -> bool:
        return 200 <= self.answered < 300

    @property
    def events(self) -> list[dict]:
        return json.loads(self.body)["events"]


class WebhookReceiver:
    def __init__(self) -> None:
        self.secret = ""
        self.verify = documented_verifier()
        self.requests: list[ReceivedRequest] = []
        self.delay_seconds = 0.0
        self.response_body: bytes | None = None  # instead of the default short answer
        self._failures: deque[int] = deque()
        self._lock = threading.Condition()
        self._open = threading.Event()  # cleared by hold(): requests wait for it
        self._open.set()
        self.in_flight = 0  # requests received and not yet answered
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an IP address: bytes only for a Unix socket
        return f"http://{host}:{port}/hooks/mailhub"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    # -- scripting and reading, from the test's thread ---------------------------------------

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def hold(self) -> None:
        """A slow endpoint that the test controls: requests wait unanswered until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def events(self) -> list[dict]:
        """Events of every request answered 2xx, in the order they arrived."""
        with self._lock:
            return [event for r in self.requests if r.accepted for event in r.events]

    def wait_until(
        self, predicate: Callable[[WebhookReceiver], bool], *, timeout: float = 30.0, what=""
    ) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout} s waiting for {what or predicate}; "
                        f"received {len(self.requests)} request(s)"
                    )
                self._lock.wait(min(remaining, 0.5))

    # -- the server's threads ---------------------------------------------------------------

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        valid = self.verify(self.secret, body, headers.get("Mailhub-Signature", ""))
        with self._lock:
            delay = self.delay_seconds
            self.in_flight += 1
            self._lock.notify_all()
        self._open.wait(timeout=300)  # a forgotten release() must not hang the run forever
        if delay:
            time.sleep(delay)
        with self._lock:
            self.in_flight -= 1
        with self._lock:
            scripted = self._failures.popleft() if self._failures else None
            status = scripted or (204 if valid else 401)
            self.requests.append(ReceivedRequest(path, headers, body, valid, status))
            self._lock.notify_all()
            reply = self.response_body
        if reply is None:
            reply = b"" if status == 204 else f"answered {status} by the test".encode()
        return status, reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, reply = receiver._answer(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        return Handler
