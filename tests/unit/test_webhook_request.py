"""What a webhook request puts on the wire besides its body: the request target is the checked
URL's own text, and no header can carry a line break, whatever a client chose."""

import re
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.conf import UrlPolicy
from webhooks.signing import signature_header
from webhooks.ssrf import Destination, Target, url_parse
from webhooks.transport import post


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def to(path: str = "/hooks") -> Destination:
    target = Target(scheme="http", host="hooks.example.com", port=closed_port(), path=path)
    return Destination(target=target, address="127.0.0.1")


@given(
    secret=st.text(),
    timestamp=st.integers(min_value=0, max_value=2**40),
    body=st.binary(),
)
def test_the_signature_header_is_a_timestamp_and_a_hex_digest_whatever_the_input(
    secret, timestamp, body
):
    assert re.fullmatch(
        r"t=[0-9]+,v1=[0-9a-f]{64}",
        signature_header(secret=secret, timestamp=timestamp, body=body),
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Test": "a\r\nX-Injected: 1"},
        {"X-Test": "a\r\n folded"},  # obs-fold: http.client lets it through
        {"X-Test": "a\nb"},
        {"X-Test": "a\x00b"},
        {"X-Test": "a\u2028b"},
        {"X-Test": "café"},
        {"X-Te st": "a"},
        {"X-Test\r\nX-Injected": "1"},
    ],
)
def test_a_header_with_a_line_break_or_a_control_character_is_never_sent(headers):
    with pytest.raises(ValueError, match="header"):
        post(to(), body=b"{}", headers=headers, connect_timeout=1, timeout=2)


@pytest.mark.parametrize("path", ["/hooks\r\nX-Injected: 1", "/ho oks", "/hooks\u2028", "hooks"])
def test_a_request_target_that_is_not_a_checked_url_is_never_sent(path):
    with pytest.raises(ValueError, match="request target"):
        post(to(path), body=b"{}", headers={}, connect_timeout=1, timeout=2)


def test_the_request_target_is_the_urls_own_text():
    url = "https://hooks.example.com:8443/in/%7Euser;v=1?a=%20&b=c:d@e/"
    target = url_parse(url, policy=UrlPolicy())
    assert f"https://hooks.example.com:8443{target.path}" == url
