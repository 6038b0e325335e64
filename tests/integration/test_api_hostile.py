"""Hostile input never hurts the API: whatever a client sends, in a body, a query parameter, a
path segment or a header, the answer is a 2xx or a 4xx problem (application/problem+json),
never a 5xx. Known cases first, then hypothesis against every endpoint the URL conf has."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from django.db import transaction
from django.urls import URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from accounts.models import ApiKey
from deliveries.models import Message
from tests.builders import message_payload
from tests.integration.test_api_input import assert_field_error, assert_problem

pytestmark = pytest.mark.integration

LONG_ADDRESS = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"
assert len(LONG_ADDRESS) == 259  # valid label by label, too long as a whole (RFC 5321: 254)


@pytest.fixture(autouse=True)
def unthrottled(acme):
    ApiKey.objects.filter(client=acme.client).update(rate_limit_per_minute=1_000_000)


# -- known cases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        pytest.param("get", "/api/v1/messages?metadata=k:a%00b", "metadata", id="metadata filter"),
        pytest.param("get", "/api/v1/messages?tag=a%00b", "tag", id="tag filter"),
        pytest.param("get", "/api/v1/messages?a%00b=1", None, id="parameter name"),
        pytest.param("get", "/api/v1/events?recipient=a%00b", "recipient", id="events filter"),
        pytest.param("get", "/api/v1/suppressions/a%00b@x.com", None, id="suppression get"),
        pytest.param("delete", "/api/v1/suppressions/a%00b@x.com", None, id="suppression delete"),
        pytest.param("get", "/api/v1/templates/a%00b", None, id="template name"),
    ],
)
def test_a_nul_in_a_query_parameter_or_a_path_is_a_400_problem(acme, method, url, field):
    response = getattr(acme.api, method)(url)
    assert_field_error(response, field=field, code="null_characters_not_allowed")


def test_a_metadata_filter_is_held_to_its_length_limit(acme):
    # Its checks once saw the parsed (key, value) pair, whose length is always 2.
    response = acme.api.get("/api/v1/messages", {"metadata": "k:" + "v" * 700})
    assert_field_error(response, field="metadata[0]", code="max_length")


@pytest.mark.parametrize(
    ("url", "payload", "field"),
    [
        pytest.param("/api/v1/messages", message_payload(to=[LONG_ADDRESS]), "to[0]", id="long to"),
        pytest.param(
            "/api/v1/messages", message_payload(**{"from": LONG_ADDRESS}), "from", id="long from"
        ),
        pytest.param("/api/v1/suppressions", {"address": LONG_ADDRESS}, "address", id="suppress"),
    ],
)
def test_an_address_longer_than_254_characters_is_a_400(acme, url, payload, field):
    response = acme.api.post(url, payload, format="json")
    assert_problem(response, status=400, code="validation_error")
    assert field in [e["field"] for e in response.json()["errors"]], response.json()


def test_a_lone_surrogate_in_a_template_context_is_a_400(acme):
    template = {"name": "welcome", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
    assert acme.api.post("/api/v1/templates", template, format="json").status_code == 201
    payload = message_payload(template="welcome", context={"name": "\ud800"})
    del payload["subject"], payload["text"]
    response = post_json(acme, "/api/v1/messages", payload)
    assert_problem(response, status=400, code="validation_error")


@pytest.mark.parametrize(
    ("url", "payload", "field"),
    [
        pytest.param("/api/v1/messages", {"\ud800": 1}, "\ud800", id="unknown field"),
        pytest.param(
            "/api/v1/suppressions",
            {"address": "a@example.com", "reason": "\udfff"},
            "reason",
            id="choice quoted back",
        ),
        pytest.param(
            "/api/v1/messages/batch", {"messages": [{"x\udc80": 1}]}, None, id="batch item"
        ),
    ],
)
def test_a_lone_surrogate_quoted_back_in_an_answer_is_written_as_its_json_escape(
    acme, url, payload, field
):
    response = post_json(acme, url, payload)
    assert response.status_code in (400, 207), response.content
    assert b"\\ud" in response.content.lower()  # the escape, valid JSON and valid UTF-8
    response.content.decode("utf-8")
    if field is not None:
        assert field in [e["field"] for e in response.json()["errors"]]


def post_json(actor, url: str, payload, *, method: str = "post"):
    """Sends ``payload`` as JSON text with every non-ASCII character escaped, so that a lone
    surrogate arrives as ``\\ud800`` (the test client's own encoder cannot send one)."""
    body = json.dumps(payload)
    return getattr(actor.api, method)(url, body, content_type="application/json")


# -- 500s this test found, fixed since ---------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/messages", "/api/v1/messages/batch"])
def test_a_sender_whose_domain_makes_a_too_long_message_id_is_not_a_500(acme, url):
    # '<32 hex@domain>' from a 220+ character domain did not fit Message.message_id (255).
    sender = long_address(254, 1, "")
    assert len(sender.partition("@")[2]) > 220
    payload = message_payload(**{"from": sender})
    if url.endswith("batch"):
        payload = {"messages": [payload]}
    acme.api.raise_request_exception = False
    response = acme.api.post(url, payload, format="json")
    assert response.status_code == 202, response.content
    assert Message.objects.get().message_id.endswith("@mailhub.invalid>")


@pytest.mark.parametrize("name", ["a\x00b", "\ud800welcome"])
@pytest.mark.parametrize("where", ["defaults", "message"])
def test_a_batch_naming_a_template_with_a_nul_or_a_surrogate_is_not_a_500(acme, name, where):
    # The batch looked its templates up before validating their names.
    message = {"to": ["ann@example.com"], "from": "shop@shop.test"}
    batch = (
        {"defaults": {"template": name}, "messages": [message]}
        if where == "defaults"
        else {"messages": [{**message, "template": name}]}
    )
    acme.api.raise_request_exception = False
    response = post_json(acme, "/api/v1/messages/batch", batch)
    assert response.status_code in (207, 400), response.content


# -- every endpoint, from the URL conf ---------------------------------------------------------
#
# The operations fuzzed below are read from the URL conf, and checked against the OpenAPI
# schema and the base bodies here: a new endpoint fails these tests until it is fuzzed too.

METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch")
CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")


def url_conf_operations() -> set[tuple[str, str]]:
    """``(method, route)`` of every view under /api/v1/, e.g. ``("get", "/api/v1/messages")``."""
    operations: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif route.startswith("api/v1/"):
                view = pattern.callback.view_class
                operations.update(("/" + route, m) for m in METHODS if hasattr(view, m))

    walk(get_resolver().url_patterns, "")
    return {(method, route) for route, method in operations}


def schema_path(route: str) -> str:
    return CONVERTER.sub(lambda m: "{" + m["name"] + "}", route)


def schema_query_parameters() -> dict[str, set[str]]:
    """The query parameters the OpenAPI schema documents, by schema path."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return {
        path: {
            parameter["name"]
            for operation in operations.values()
            if isinstance(operation, dict)
            for parameter in operation.get("parameters", [])
            if parameter["in"] == "query"
        }
        for path, operations in document["paths"].items()
    }


OPERATIONS = sorted(url_conf_operations())
WRITE_OPERATIONS = [(method, route) for method, route in OPERATIONS if method in WRITES]
PARAMETERS = schema_query_parameters()

ATTACHMENT = {
    "filename": "a.txt",
    "content_type": "text/plain",
    "content": "aGVsbG8=",
    "disposition": "attachment",
}
INLINE = {**ATTACHMENT, "content_type": "image/png", "disposition": "inline", "content_id": "i@x"}
RICH_MESSAGE = {
    "from": "Shop <no-reply@shop.test>",
    "to": ["Ann <ann@example.com>", "bob@example.com"],
    "cc": ["cc@example.com"],
    "bcc": ["bcc@example.com"],
    "reply_to": ["help@shop.test"],
    "subject": "Your order",
    "text": "Thank you.",
    "html": '<p>Thank you. <img src="cid:i@x"></p>',
    "headers": {"X-Campaign": "spring"},
    "priority": "high",
    "send_at": None,
    "tags": ["orders"],
    "metadata": {"order": "A-1"},
    "attachments": [ATTACHMENT, INLINE],
}
TEMPLATED_MESSAGE = {
    "from": "shop@shop.test",
    "to": ["ann@example.com"],
    "template": "welcome",
    "context": {"name": "Ann", "items": [{"title": "Book", "price": 12.5}], "vip": True},
}
TEMPLATE = {"name": "greeting", "subject": "Hi {{ name }}", "text": "Hi {{ name }}", "html": ""}
WEBHOOK = {
    "url": "http://127.0.0.1:9/hook",
    "event_types": ["delivered", "bounced"],
    "description": "shop",
    "enabled": True,
}
#: A valid body of every write operation: the fuzz mutates these, so that hostile values reach
#: every field and not only the first check of the body.
BASES: dict[tuple[str, str], list] = {
    ("post", "/api/v1/messages"): [RICH_MESSAGE, TEMPLATED_MESSAGE],
    ("post", "/api/v1/messages/batch"): [
        {
            "defaults": {k: v for k, v in TEMPLATED_MESSAGE.items() if k != "to"},
            "messages": [{"to": ["a@example.com"], "context": {"name": "A"}}, RICH_MESSAGE],
        }
    ],
    ("post", "/api/v1/messages/<uuid:message_id>/cancel"): [{}],
    ("post", "/api/v1/templates"): [TEMPLATE],
    ("put", "/api/v1/templates/<slug:name>"): [TEMPLATE],
    ("patch", "/api/v1/templates/<slug:name>"): [{"subject": "Hello {{ name|upper }}"}],
    ("post", "/api/v1/suppressions"): [
        {"address": "Gone <gone@example.com>", "reason": "unsubscribe", "detail": "footer"}
    ],
    ("post", "/api/v1/webhooks"): [WEBHOOK],
    ("patch", "/api/v1/webhooks/<uuid:webhook_id>"): [WEBHOOK],
    # Ed25519: a 2048-bit RSA key per example would make this test slow, not harder.
    ("post", "/api/v1/domains"): [{"domain": "brand.test", "algorithm": "ed25519-sha256"}],
    ("post", "/api/v1/domains/<int:domain_id>/verify"): [{}],
    ("post", "/api/v1/domains/<int:domain_id>/rotate-key"): [{"algorithm": "ed25519-sha256"}],
    ("post", "/api/v1/domains/<int:domain_id>/activate-key"): [{"selector": "mh202612"}],
}


def test_every_operation_of_the_url_conf_is_in_the_schema_and_fuzzed(acme):
    document = acme.api.get("/api/schema/?format=json").json()
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
        if method in METHODS
    }
    # The API root is the schema's table of contents, left out of it on purpose (it is fuzzed
    # all the same); tests/integration/test_api_index.py holds it to the schema.
    in_url_conf = {(method, schema_path(route)) for method, route in OPERATIONS}
    assert in_url_conf - {("get", "/api/v1/")} == documented
    assert set(WRITE_OPERATIONS) == set(BASES)
    assert len(OPERATIONS) >= 20  # the walk found the API


# -- hostile values ---------------------------------------------------------------------------

#: Every line break str.splitlines() knows, C0 and C1 controls, NUL, lone surrogates, and text
#: that means something to a header, a template, SQL or a URL.
NASTY = [
    ("\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"),
    ("\x00", "\x01", "\x08", "\x1b", "\x7f", "\x9b", "\t"),
    ("\ud800", "\udfff", "\udc80", "\ud83d"),
    ("\ufeff", "\u202e", "\ufffd", "\U0010ffff", "\u0301", "ﬃ", "ǅ", "İ", "ß"),
    ("=?utf-8?q?a=0D=0Ab?=", "=?utf-8?b?YQ0KYg==?=", "=?utf-8?q?=00?=", "=?x?q?", "=??="),
    ("{{", "}}", "{%", "{% load x %}", "{{ a.__class__ }}", "{% debug %}", "{{ x|safe }}"),
    ("'", '"', "\\", "%", "%s", "%00", "%2F", "../", "/", ":", ";", ",", "<", ">", "@", "*"),
    ("' OR 1=1 --", "\u0000'; DROP TABLE x; --", "cid:", "xn--", "a@b@c", "@", "<>"),
]
# A group first, then one of it: a lone surrogate is as likely as a line break.
nasty = st.sampled_from(NASTY).flatmap(st.sampled_from)
SIZES = [63, 64, 65, 76, 77, 254, 255, 256, 321, 999, 1000, 1001, 2049, 65_537, 1_048_577]

any_character = st.characters(exclude_categories=())  # surrogates (Cs) included
short_text = st.text(any_character, max_size=12)


@st.composite
def sprinkled(draw, around: st.SearchStrategy[str]) -> str:
    """A string, often a valid one, with nasty pieces put anywhere in it."""
    text = draw(around)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(nasty | short_text) + text[at:]
    return text


plausible = st.sampled_from(
    [
        "ann@example.com",
        "Ann <ann@example.com>",
        "X-Campaign",
        "welcome",
        "text/plain",
        "aGVsbG8=",
        "2030-01-01T00:00:00Z",
        "http://127.0.0.1:9/hook",
        "https://example.com/hook",
        "delivered",
        "high",
        "i@x",
        "Hi {{ name }}",
    ]
)


def long_address(total: int, local: int, name: str) -> str:
    """An address valid label by label (local part <= 64, labels <= 63) of about ``total``
    characters: around RFC 5321's limit of 254 for the whole."""
    labels, left = [], total - local - 1 - len(".com")
    while left > 0:
        labels.append("b" * min(63, left))
        left -= 64
    address = f"{'a' * local}@{'.'.join(labels or ['b'])}.com"
    return f"{name} <{address}>" if name else address


long_addresses = st.builds(
    long_address, st.integers(240, 330), st.integers(1, 64), st.sampled_from(["", "Ann"])
)


def hostile_texts(*, max_size: int) -> st.SearchStrategy[str]:
    """Any text, the nasty pieces above in plausible values, and long runs of them."""
    long_runs = st.builds(
        lambda size, fill, tail: (fill * size)[:size] + tail,
        st.sampled_from([size for size in SIZES if size <= max_size]),
        st.sampled_from(["a", "é", "\u2028", "\ud800", "ab.", "{{ x }}", "\x00", "a" * 63 + "."]),
        st.sampled_from(["", "@example.com", "<a@b.c>", "\n"]),
    )
    return st.one_of(
        st.text(any_character, max_size=40),
        nasty,
        sprinkled(plausible),
        sprinkled(st.text(max_size=20)),
        long_runs,
        long_addresses,
    )


hostile_text = hostile_texts(max_size=max(SIZES))  # up to the 1 MiB a body may hold
# HTTP servers refuse a request line or header longer than a few KiB (gunicorn: 4094 bytes)
# before Django sees it; Django's handling of broken UTF-8 in a path is quadratic beyond that.
url_text = hostile_texts(max_size=1001)


def rarely(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """``rare`` one time in ten: values that stop a request at its first check (not JSON, too
    deep, a bad header) must not keep the others from reaching every field."""
    return st.integers(0, 9).flatmap(lambda n: rare if n == 0 else common)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    # NaN and infinities rarely: not JSON, written as Python writes them (a parse error).
    rarely(st.floats(allow_nan=False, allow_infinity=False), st.floats()),
    hostile_text,
)


def nested(depth: int, leaf) -> object:
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"a": leaf}
    return leaf


hostile_json = rarely(
    st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4)
        ),
        max_leaves=8,
    ),
    st.builds(nested, st.integers(20, 200), scalars),
)


def json_paths(value, path=()) -> list[tuple]:
    """Every place in a JSON document: the document itself, each key's value, each item."""
    places = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            places += json_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            places += json_paths(child, (*path, index))
    return places


def at(document, path: tuple):
    for step in path:
        document = document[step]
    return document


def put(document, path: tuple, value):
    if not path:
        return value
    *parents, last = path
    target = document
    for step in parents:
        target = target[step]
    target[last] = value
    return document


@st.composite
def hostile_bodies(draw, bases: list) -> bytes:
    """A valid body with one (sometimes two or three) of its values replaced by hostile JSON,
    or a hostile key added; now and then not JSON at all."""
    not_json = st.binary(max_size=64) | st.sampled_from([b"", b"{", b"\xff\xfe", b"[" * 10**5])
    if draw(rarely(st.just(False), st.just(True))):
        return draw(not_json)
    body = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(rarely(st.just(1), st.integers(2, 3)))):
        places = json_paths(body)
        leaves = [place for place in places if isinstance(at(body, place), str)]
        path = draw(rarely(st.sampled_from(leaves or places), st.sampled_from(places)))
        value = at(body, path)
        if isinstance(value, dict) and draw(st.integers(0, 2)) == 0:
            value[draw(hostile_text)] = draw(hostile_json)  # a key of any kind
        elif isinstance(value, str):
            # Mostly text where text is expected (a wrong type is refused at once), often the
            # valid value itself with nasty pieces in it.
            text = sprinkled(st.just(value)) | hostile_text
            body = put(body, path, draw(rarely(text, hostile_json)))
        else:
            body = put(body, path, draw(hostile_json))
    return json.dumps(body).encode()  # lone surrogates travel as \\ud800 escapes


@st.composite
def hostile_segments(draw) -> str:
    """A path segment or query value as a client can send it: percent-encoded bytes of any
    text (lone surrogates become invalid UTF-8), or raw printable ASCII with stray %."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20))
    text = draw(url_text)
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def forged_cursor(position: str) -> str:
    """A cursor as DRF's cursor pagination writes one, holding any position."""
    fields = {"o": "1", "r": "0", "p": position.encode("utf-8", "surrogatepass")}
    return base64.b64encode(urlencode(fields).encode()).decode()


def assert_not_a_server_error(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:3000])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/problem+json"), (what, response)
        body = response.json()
        assert body["status"] == response.status_code, (what, body)
        assert body["code"] and body["type"].endswith("/" + body["code"]), (what, body)


# Examples per operation; MAILHUB_FUZZ_SCALE=10 for a longer hunt (about ten times as long).
SCALE = float(os.environ.get("MAILHUB_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    return fuzz_settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture
def world(acme, settings, dns) -> dict[str, str]:
    """Something at the end of every path, so that bodies get past the lookup: a message, a
    template, a suppression, a webhook endpoint and a sending domain of acme's (whose checks ask
    the test's DNS server, which answers at once)."""
    settings.MAILHUB_WEBHOOK_ALLOW_HTTP = True
    settings.MAILHUB_WEBHOOK_ALLOW_LOOPBACK = True
    template = {"name": "welcome", "subject": "Hi {{ name }}", "text": "{{ name }} {{ items }}"}
    assert acme.api.post("/api/v1/templates", template, format="json").status_code == 201
    message = acme.api.post("/api/v1/messages", message_payload(), format="json").json()
    suppression = {"address": "gone@example.com"}
    assert acme.api.post("/api/v1/suppressions", suppression, format="json").status_code == 201
    webhook = acme.api.post("/api/v1/webhooks", WEBHOOK, format="json").json()
    domain = {"domain": "shop.test", "algorithm": "ed25519-sha256"}
    domain_id = acme.api.post("/api/v1/domains", domain, format="json").json()["id"]
    return {
        "domain_id": str(domain_id),
        "message_id": message["id"],
        "name": "welcome",
        "address": "gone@example.com",
        "webhook_id": webhook["id"],
    }


def in_rolled_back_savepoint(call):
    """Each example on the same world: what a request wrote is undone before the next."""
    with transaction.atomic():
        response = call()
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize(("method", "route"), WRITE_OPERATIONS)
@fuzz(100)
@given(data=st.data())
def test_no_body_makes_a_write_endpoint_fail(acme, world, method, route, data):
    path = CONVERTER.sub(lambda m: world[m["name"]], route)
    body = data.draw(hostile_bodies(BASES[method, route]), label="body")
    headers = data.draw(
        rarely(
            st.just({}),
            st.fixed_dictionaries(
                {}, optional={"HTTP_IDEMPOTENCY_KEY": url_text, "HTTP_X_REQUEST_ID": url_text}
            ).map(latin1_headers),
        ),
        label="headers",
    )
    response = in_rolled_back_savepoint(
        lambda: acme.api.generic(
            method.upper(), path, body, content_type="application/json", **headers
        )
    )
    assert_not_a_server_error(response, f"{method} {path}")


def latin1_headers(headers: dict[str, str]) -> dict[str, str]:
    # WSGI carries a header as the Latin-1 reading of its bytes; HTTP servers refuse CR, LF and
    # NUL in one before any application sees it.
    return {
        name: value.encode("utf-8", "surrogatepass")
        .decode("latin-1")
        .translate({0: None, 10: None, 13: None})
        for name, value in headers.items()
    }


@pytest.mark.parametrize(("method", "route"), OPERATIONS)
@fuzz(40)
@given(data=st.data())
def test_no_query_parameter_or_path_segment_makes_an_endpoint_fail(
    acme, world, method, route, data
):
    real = data.draw(st.booleans(), label="real objects in the path")
    path = CONVERTER.sub(
        lambda m: quote(world[m["name"]]) if real else data.draw(hostile_segments()), route
    )
    names = sorted(PARAMETERS.get(schema_path(route), set()) | {"cursor", "limit"})
    query = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(names) | hostile_segments(),
                hostile_segments() | (plausible | url_text.map(forged_cursor)).map(quote),
            ),
            max_size=5,
        ),
        label="query",
    )
    query_string = "&".join(f"{name}={value}" for name, value in query)
    url = f"{path}?{query_string}" if query_string else path
    response = in_rolled_back_savepoint(lambda: acme.api.generic(method.upper(), url))
    assert_not_a_server_error(response, f"{method} {url}")


@fuzz(100)
@given(
    method=st.sampled_from(METHODS),
    segments=st.lists(hostile_segments() | st.sampled_from(["v1", "messages", "webhooks"])),
)
def test_no_path_under_api_makes_the_api_fail(acme, method, segments):
    url = "/api/" + "/".join(segments)
    response = in_rolled_back_savepoint(lambda: acme.api.generic(method.upper(), url))
    assert_not_a_server_error(response, f"{method} {url}")
