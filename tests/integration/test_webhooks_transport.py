"""The webhook HTTP transport against real sockets on loopback: it connects to the address the
SSRF guard checked (not to whatever the name resolves to now), keeps TLS verifying the URL's
host name, and gives up at its deadline however slowly a server answers."""

import socket
import ssl
import subprocess
import threading
import time

import pytest

from tests.support.receiver import WebhookReceiver
from tests.support.sink import free_port
from webhooks.ssrf import Destination, Target
from webhooks.transport import post

pytestmark = pytest.mark.integration


def destination(host: str, port: int, *, scheme: str = "http", address="127.0.0.1"):
    return Destination(Target(scheme=scheme, host=host, port=port, path="/hooks"), address=address)


@pytest.fixture
def receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def test_the_request_goes_to_the_pinned_address_whatever_the_host_name(receiver):
    port = int(receiver.url.split(":")[2].split("/")[0])
    # `.invalid` never resolves (RFC 6761): the request can only arrive through the pinned address.
    result = post(
        destination("hooks.mailhub.invalid", port),
        body=b"{}",
        headers={"Content-Type": "application/json"},
        connect_timeout=2,
        timeout=5,
    )

    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.mailhub.invalid:{port}"
    assert request.body == b"{}" and request.path == "/hooks"
    assert result.status_code == 401  # the receiver checked the (missing) signature


def test_a_refused_connection_is_reported_as_such():
    result = post(
        destination("127.0.0.1", free_port()), body=b"{}", headers={}, connect_timeout=2, timeout=5
    )
    assert result.status_code is None and result.error == "connection refused"
    assert not result.succeeded


def test_a_server_dribbling_its_answer_is_cut_off_at_the_deadline():
    """A byte every 0.2 s never trips a per-read timeout; only the overall deadline stops it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dribble():
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if stop.is_set():
                    return
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        result = post(
            destination("127.0.0.1", server.getsockname()[1]),
            body=b"{}",
            headers={},
            connect_timeout=2,
            timeout=1,
        )
    finally:
        stop.set()
        server.close()

    assert result.status_code is None
    assert result.error == "timed out after 1 s"
    assert result.duration_ms < 30_000  # 10 000 bytes at 0.2 s would take over half an hour


def test_https_verifies_the_certificate_for_the_url_host_not_the_pinned_address(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=hooks.mailhub.test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = socket.create_server(("127.0.0.1", 0))

    def handshake():
        connection, _ = server.accept()
        try:
            with context.wrap_socket(connection, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refuses the self-signed certificate

    thread = threading.Thread(target=handshake, daemon=True)
    thread.start()
    try:
        result = post(
            destination("hooks.mailhub.test", server.getsockname()[1], scheme="https"),
            body=b"{}",
            headers={},
            connect_timeout=2,
            timeout=5,
        )
    finally:
        thread.join(5)
        server.close()

    assert names == ["hooks.mailhub.test"]  # SNI names the URL's host, not 127.0.0.1
    assert result.status_code is None
    assert result.error.startswith("TLS error") and "CERTIFICATE_VERIFY_FAILED" in result.error
