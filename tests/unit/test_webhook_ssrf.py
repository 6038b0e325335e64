"""The server-side request forgery guard: which webhook URLs and addresses may be called."""

import ipaddress

import pytest

from webhooks.conf import UrlPolicy
from webhooks.ssrf import UnsafeUrl, address_refusal, url_check, url_parse

STRICT = UrlPolicy()
LOOPBACK_OK = UrlPolicy(allow_http=True, allow_loopback=True)
PRIVATE_OK = UrlPolicy(allow_private=True)


def refusal(text: str, policy: UrlPolicy = STRICT) -> str | None:
    return address_refusal(ipaddress.ip_address(text), policy=policy)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # carrier-grade NAT: not globally routable
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a00:1::", "private"),  # 6to4 wrapping 10.0.0.1
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address, reason):
    assert reason in (refusal(address) or "")


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert refusal(address) is None


def test_allowing_loopback_allows_loopback_and_nothing_else():
    assert refusal("127.0.0.1", LOOPBACK_OK) is None
    assert refusal("::1", LOOPBACK_OK) is None
    assert refusal("10.0.0.1", LOOPBACK_OK) is not None
    assert refusal("169.254.169.254", LOOPBACK_OK) is not None


def test_allowing_private_addresses_never_allows_link_local_or_loopback():
    assert refusal("10.0.0.1", PRIVATE_OK) is None
    assert refusal("fd00::1", PRIVATE_OK) is None
    assert refusal("169.254.169.254", PRIVATE_OK) is not None
    assert refusal("127.0.0.1", PRIVATE_OK) is not None


def test_https_is_required_unless_http_is_allowed():
    with pytest.raises(UnsafeUrl, match="https"):
        url_parse("http://hooks.example.com/x", policy=STRICT)
    assert url_parse("http://hooks.example.com/x", policy=LOOPBACK_OK).port == 80


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "https://",
        "https:///path",
        "https://user:pass@hooks.example.com/",
        "https://hooks.example.com/#fragment",
        "https://hooks.example.com:99999/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
    ],
)
def test_urls_of_the_wrong_shape_are_refused(url):
    with pytest.raises(UnsafeUrl):
        url_parse(url, policy=LOOPBACK_OK)


def test_a_url_is_split_into_host_port_and_request_target():
    target = url_parse("https://Hooks.Example.com:8443/in?x=1&y=2", policy=STRICT)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert target.path == "/in?x=1&y=2"
    assert url_parse("https://hooks.example.com", policy=STRICT).path == "/"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://localhost/",  # a name, resolved: /etc/hosts says loopback
        "https://[::1]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/",
        "https://2130706433/",  # 127.0.0.1 written as one number
        "https://0x7f.1/",
    ],
)
def test_urls_that_resolve_to_forbidden_addresses_are_refused(url):
    with pytest.raises(UnsafeUrl, match="resolves to"):
        url_check(url, policy=STRICT)


def test_a_loopback_url_is_accepted_and_pinned_when_loopback_is_allowed():
    destination = url_check("http://127.0.0.1:8080/hooks", policy=LOOPBACK_OK)
    assert destination.address == "127.0.0.1"
    assert destination.target.host == "127.0.0.1" and destination.target.port == 8080


def test_a_refusal_explains_itself_and_names_the_url_field():
    with pytest.raises(UnsafeUrl) as caught:
        url_check("https://169.254.169.254/", policy=STRICT)
    assert "169.254.169.254" in caught.value.message and "link-local" in caught.value.message
    assert caught.value.code == "webhook_url_refused"
    assert caught.value.extra["errors"][0]["field"] == "url"
