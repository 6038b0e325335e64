"""The shape of a webhook URL (``webhooks.ssrf.url_parse``), before any address is resolved:
no control character or white space anywhere, a real port, http(s) only, a bounded length,
and whatever is accepted is the very text that is requested."""

import unicodedata
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from webhooks.conf import UrlPolicy
from webhooks.ssrf import MAX_URL_LENGTH, UnsafeUrl, url_parse

HTTP_OK = UrlPolicy(allow_http=True)
STRICT = UrlPolicy()

#: Characters that must never be in a stored webhook URL: line breaks in every form
#: `str.splitlines()` knows, other controls, white space, invisible format characters, and
#: non-ASCII (which would have to be encoded before it could go into a request line).
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1c",
    "\x7f",
    " ",
    "\x85",
    "\xa0",
    "\u1680",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u202e",
    "\u3000",
    "\ufeff",
    "\udc80",
    "ü",
    "\U0001f600",
]


def is_hostile(char: str) -> bool:
    return (
        char.isspace()
        or unicodedata.category(char)[0] in {"C", "Z"}
        or not char.isascii()
        or len(char.splitlines()) > 1
    )


# -- examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize(
    "template",
    [
        "https://hooks.example.com/in{}jected",  # path
        "https://hooks.example.com/in?a=1{}b",  # query
        "https://ho{}oks.example.com/in",  # host
        "https://hooks.example.com{}/in",  # between host and path
        "https://hooks.example.com:84{}43/in",  # port
        "https://us{}er:pw@hooks.example.com/in",  # userinfo
        "{}https://hooks.example.com/in",  # before
        "https://hooks.example.com/in{}",  # after
    ],
)
def test_a_control_character_or_white_space_anywhere_is_refused(template, hostile):
    with pytest.raises(UnsafeUrl) as refused:
        url_parse(template.format(hostile), policy=HTTP_OK)
    # The reason names the character by its code point, never by the raw character.
    assert hostile == " " or hostile not in refused.value.message


def test_the_refusal_names_the_character_and_where_it_is():
    with pytest.raises(UnsafeUrl, match=r"U\+000D.*character 27"):
        url_parse("https://hooks.example.com/\r\nX-Injected: 1", policy=STRICT)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://hooks.example.com:0/in", "port"),
        ("https://hooks.example.com:65536/in", "port"),
        ("https://hooks.example.com:99999/in", "port"),
        ("https://hooks.example.com:/in", "port"),
        ("https://hooks.example.com:-1/in", "port"),
        ("https://hooks.example.com:+443/in", "port"),
        ("https://hooks.example.com:0x1bb/in", "port"),
        ("https://hooks.example.com:443:443/in", "port"),
        ("https://[2001:db8::1]:0/in", "port"),
        ("ftp://hooks.example.com/", "http"),
        ("javascript:alert(1)", "http"),
        ("file:///etc/passwd", "http"),
        ("HTTPS://hooks.example.com/", "lower case"),
        ("https:hooks.example.com/", "//"),
        ("https:/hooks.example.com/", "//"),
        ("https://", "host"),
        ("https:///in", "host"),
        ("https://:443/in", "host"),
        ("https://hooks..example.com/", "host"),
        ("https://-hooks.example.com/", "host"),
        ("https://hooks.exa%6dple.com/", "host"),
        ("https://hooks.example.com\\@evil.example/", "character"),
        ("https://[::1%25eth0]/", "host"),
        ("https://[not-an-address]/", "host"),
        ("https://[2001:db8::1/", "host"),
        ("https://user:pass@hooks.example.com/", "Credentials"),
        ("https://user@hooks.example.com/", "Credentials"),
        ("https://@hooks.example.com/", "Credentials"),
        ("https://hooks.example.com/#fragment", "fragment"),
        ("https://hooks.example.com/#", "fragment"),
        ("https://hooks.example.com/in?", "empty query"),
        ("https://hooks.example.com/in%zz", "percent"),
        ("https://hooks.example.com/in%4", "percent"),
        ('https://hooks.example.com/"quoted"', "character"),
        ("https://hooks.example.com/<script>", "character"),
        ("https://hooks.example.com/{x}|^`", "character"),
        ("https://" + "a" * 64 + ".example.com/", "host"),
        ("https://hooks.example.com/" + "x" * MAX_URL_LENGTH, "longer"),
    ],
)
def test_urls_of_a_forbidden_shape_are_refused_with_a_reason(url, reason):
    with pytest.raises(UnsafeUrl, match=reason):
        url_parse(url, policy=HTTP_OK)


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://hooks.example.com", "hooks.example.com", 443, "/"),
        ("https://hooks.example.com/", "hooks.example.com", 443, "/"),
        ("http://hooks.example.com/in", "hooks.example.com", 80, "/in"),
        ("https://Hooks.Example.com:8443/in?x=1&y=%20", "hooks.example.com", 8443, "/in?x=1&y=%20"),
        ("https://hooks.example.com:1/", "hooks.example.com", 1, "/"),
        ("https://hooks.example.com?a=1", "hooks.example.com", 443, "/?a=1"),
        ("https://hooks.example.com:65535/", "hooks.example.com", 65535, "/"),
        ("https://hooks.example.com./in", "hooks.example.com.", 443, "/in"),
        ("https://xn--bcher-kva.example/in", "xn--bcher-kva.example", 443, "/in"),
        ("https://my_service.internal/in", "my_service.internal", 443, "/in"),
        ("https://93.184.215.14/in", "93.184.215.14", 443, "/in"),
        ("https://[2606:4700::1111]:8443/in", "2606:4700::1111", 8443, "/in"),
        (
            "https://hooks.example.com//double/;p=1?a=b?c:d@e/",
            "hooks.example.com",
            443,
            "//double/;p=1?a=b?c:d@e/",
        ),
    ],
)
def test_well_formed_urls_are_split_into_host_port_and_the_request_target(url, host, port, path):
    target = url_parse(url, policy=HTTP_OK)
    assert (target.host, target.port, target.path) == (host, port, path)


def test_the_longest_url_allowed_is_accepted():
    prefix = "https://hooks.example.com/"
    url = prefix + "x" * (MAX_URL_LENGTH - len(prefix))
    assert url_parse(url, policy=STRICT).path == url[len("https://hooks.example.com") :]


# -- properties --------------------------------------------------------------------------------

SAFE = "abcxyzABCXYZ0189-._~!$&'()*+,;=:@/"
#: URL text drawn from safe characters only, or from safe, hostile and any characters at all.
pieces = st.one_of(
    st.text(alphabet=SAFE, max_size=12),
    st.text(
        alphabet=st.one_of(
            st.sampled_from(SAFE),
            st.sampled_from("".join(HOSTILE)),
            st.characters(),
            st.just("%"),
        ),
        max_size=12,
    ),
)
# Each part is well formed about half the time, so that many generated URLs are accepted.
ports = st.one_of(
    st.just(""),
    st.integers(min_value=1, max_value=65535).map(lambda n: f":{n}"),
    st.integers(min_value=-5, max_value=70000).map(lambda n: f":{n}"),
    pieces.map(lambda p: f":{p}"),
)
hosts = st.one_of(
    st.sampled_from(["hooks.example.com", "93.184.215.14", "[2606:4700::1111]", "xn--d1a.test"]),
    pieces,
)
urls = st.builds(
    lambda scheme, userinfo, host, port, path, query: (
        f"{scheme}://{userinfo}{host}{port}{path}{query}"
    ),
    st.one_of(st.sampled_from(["https", "http"]), st.sampled_from(["HTTPS", "ftp", "", "https:"])),
    st.one_of(st.just(""), pieces.map(lambda p: f"{p}@")),
    hosts,
    ports,
    st.one_of(st.just(""), pieces.map(lambda p: f"/{p}")),
    st.one_of(st.just(""), pieces.map(lambda p: f"?{p}")),
)


@given(urls)
@example("https://hooks.example.com/in\r\nX: 1")
@example("https://hooks.example.com:0/")
@example("https://hooks.example.com/\u2028")
def test_any_url_the_validator_accepts_is_clean_and_reads_back_unchanged(url):
    try:
        target = url_parse(url, policy=HTTP_OK)
    except UnsafeUrl:
        return
    parts = urlsplit(url)
    assert urlunsplit(parts) == url
    assert not any(is_hostile(char) for char in url), url
    assert len(url) <= MAX_URL_LENGTH
    assert parts.scheme in {"http", "https"} and url.startswith(f"{parts.scheme}://")
    assert 1 <= target.port <= 65535
    assert parts.port is None or parts.port == target.port
    assert parts.username is None and parts.password is None and "#" not in url
    # Used as it is: the request target is the rest of the URL after scheme, host and port
    # (with the "/" that an empty path stands for on a request line).
    rest = url.removeprefix(f"{parts.scheme}://{parts.netloc}")
    assert target.path == (rest if rest.startswith("/") else f"/{rest}")


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
paths = st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@/", max_size=40)


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.lists(labels, min_size=1, max_size=4).map(".".join),
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    path=paths,
    query=st.one_of(st.none(), paths.filter(bool)),
)
def test_any_url_of_safe_parts_is_accepted_as_it_is(scheme, host, port, path, query):
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}"
    url += "" if query is None else f"?{query}"

    target = url_parse(url, policy=HTTP_OK)

    assert target.host == host
    assert target.port == (port or {"http": 80, "https": 443}[scheme])
    assert url.endswith(target.path)


@given(
    url=urls,
    hostile=st.one_of(st.sampled_from(HOSTILE), st.characters().filter(is_hostile)),
    where=st.floats(min_value=0, max_value=1),
)
def test_a_hostile_character_anywhere_in_a_url_makes_it_refused(url, hostile, where):
    at = round(where * len(url))
    with pytest.raises(UnsafeUrl):
        url_parse(url[:at] + hostile + url[at:], policy=HTTP_OK)
