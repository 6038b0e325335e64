"""The cheap validation path answers exactly as DRF's stock one did (no database).

Sends and batches are validated with fields built once per thread, a batch's defaults once per
batch, a regex instead of DRF's per-character surrogate loop and a regex instead of
``getaddresses`` for plain addresses. Each is compared here with what it replaced, over valid and
invalid input alike: drafts, error fields, codes and messages, byte for byte.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from typing import Any, cast

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from api.errors import validation_problem
from api.serializers import fields, intake
from api.serializers.fields import AddressField, CharField, StrictSerializer
from api.serializers.intake import BatchSerializer, MessageCreateSerializer
from deliveries.models import Template


class StockMessageSerializer(MessageCreateSerializer):
    """The send serializer as DRF runs it out of the box: every field deep-copied for each
    instance, DRF's own loop over them, every field validated for every message."""

    def to_internal_value(self, data):
        return StrictSerializer.to_internal_value(self, data)

    def run_validators(self, value):
        serializers.Serializer.run_validators(self, value)


class Templates:
    """A client's templates without a database, with the lookup interface of TemplateLookup."""

    def __init__(self) -> None:
        now = datetime(2024, 1, 1, tzinfo=UTC)
        self.found = {
            "welcome": Template(
                id=901, name="welcome", subject="Hi {{ name }}", text="{{ greeting }} {{ name }}"
            ),
            "blank": Template(id=902, name="blank", subject="Nothing", text="{# none #}"),
        }
        for template in self.found.values():
            template.updated_at = now

    def prefetch(self, names) -> None:
        pass

    def __call__(self, name: str) -> Template | None:
        return self.found.get(name)


def stock_items(defaults: dict, messages: list, templates: Templates) -> list:
    """What BatchSerializer.items answered before: a serializer of its own for each message."""
    out: list[object] = []
    for item in messages:
        if not isinstance(item, dict):
            not_an_object = ErrorDetail("Each message is a JSON object.", code="invalid")
            out.append(validation_problem({"non_field_errors": [not_an_object]}))
            continue
        merged = {
            name: {**defaults[name], **item[name]}
            for name in ("context", "metadata", "headers")
            if isinstance(defaults.get(name), dict) and isinstance(item.get(name), dict)
        }
        payload = {**defaults, **item, **merged}
        serializer = StockMessageSerializer(data=payload, context={"templates": templates})
        valid = serializer.is_valid()
        out.append(serializer.to_draft() if valid else validation_problem(serializer.errors))
    return out


def fast_items(defaults: dict, messages: list, templates: Templates) -> list:
    batch = BatchSerializer(data={"defaults": defaults, "messages": messages})
    assert batch.is_valid(), batch.errors
    return batch.items(templates=templates)


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


PNG = "iVBORw0KGgo="  # 8 bytes of base64
INLINE = {"filename": "logo.png", "content_type": "image/png", "content": PNG}

DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "a plain message": {
        "from": "Shop <no-reply@shop.test>",
        "subject": "Your order",
        "text": "Hello,\n" + "x" * 2000,
        "tags": ["orders", "orders", "eu"],
        "metadata": {"campaign": "spring"},
        "headers": {"X-Campaign": "spring"},
        "priority": "high",
    },
    "a template": {
        "from": "no-reply@shop.test",
        "template": "welcome",
        "context": {"greeting": "Hello"},
        "metadata": {"campaign": "spring", "user": "0"},
    },
    "bad fields": {
        "from": "not-an-address",
        "text": "x",
        "tags": "not a list",
        "headers": {"Bcc": "x@y.zz", "X-Ok": "fine"},
        "priority": "urgent",
        "metadata": {"bad key": "1"},
    },
    "send_at ahead": {"from": "s@shop.test", "text": "x", "send_at": in_days(1)},
    "send_at past": {"from": "s@shop.test", "text": "x", "send_at": in_days(-1)},
    "send_at too far": {"from": "s@shop.test", "text": "x", "send_at": in_days(45)},
    "send_at garbage": {"from": "s@shop.test", "text": "x", "send_at": "tomorrow"},
    "an attachment": {
        "from": "s@shop.test",
        "html": '<img src="cid:logo@shop">',
        "attachments": [{**INLINE, "disposition": "inline", "content_id": "logo@shop"}],
    },
    "a bad attachment": {
        "from": "s@shop.test",
        "text": "x",
        "attachments": [{**INLINE, "content": "not base64!"}, {**INLINE, "disposition": "inline"}],
    },
    "merged fields that are not objects": {
        "from": "s@shop.test",
        "text": "t",
        "context": "not an object",
        "metadata": ["x"],
        "headers": None,
    },
    "recipients": {
        "from": "s@shop.test",
        "html": "<p>x</p>",
        "to": ["default@example.com"],
        "cc": ["Cy <cc@example.com>"],
        "reply_to": ["help@shop.test"],
    },
    "an unknown template": {"from": "s@shop.test", "template": "missing"},
    "a template that renders nothing": {"from": "s@shop.test", "template": "blank"},
    "nulls": {"from": None, "subject": None, "send_at": None, "to": None, "tags": None},
}

MESSAGES = [
    {"to": ["ann@example.com"]},
    {
        "to": ["Ann Lee <ann@example.com>"],
        "context": {"name": "Ann"},
        "metadata": {"user": "1"},
        "headers": {"X-User": "1"},
    },
    {"to": ["bob@example.com"], "context": {"name": "Bob", "greeting": "Yo"}},
    {"to": ["not-an-address"]},
    {"to": ["ann@example.com"], "texte": "typo", "zzz": 1},
    {"to": ["ann@example.com"], "subject": "Own", "text": "own text"},
    {"to": ["ann@example.com"], "from": '"Other, Inc." <other@shop.test>', "priority": "low"},
    {"to": ["ann@example.com"], "send_at": in_days(2)},
    {"to": ["ann@example.com"], "send_at": in_days(-2)},
    {"to": ["ann@example.com"], "send_at": None},
    {
        "to": ["ann@example.com"],
        "html": '<img src="cid:a@b">',
        "attachments": [{**INLINE, "disposition": "inline", "content_id": "a@b"}],
    },
    {"to": ["ann@example.com"], "attachments": [{**INLINE, "disposition": "inline"}]},
    {"to": ["ann@example.com"], "metadata": {"long": "1" * 600}},
    {"to": ["ann@example.com"], "metadata": "not an object", "context": None},
    {"to": ["ann@example.com"], "headers": {"X-A": "a\r\nb", "x-campaign": "dup"}},
    {},
    "not an object",
    ["a", "list"],
    42,
    {"to": ["ann@example.com"], "template": "welcome", "context": {"name": "Zoe"}},
    {"to": ["ann@example.com"], "template": "", "text": "plain", "context": {}},
    {"to": ["ann@example.com"], "tags": [f"t{i}" for i in range(11)]},
    {"to": ["ann@example.com"], "tags": ["ok", "ok", "fine"]},
    {"to": [], "cc": [], "bcc": []},
    {"to": ["ann@example.com"], "from": None, "subject": None},
    {"to": ["ann@example.com", "x@y"], "bcc": ["jörg@example.com"], "cc": "not a list"},
    {"to": ["ann@example.com"], "subject": "Hi\r\nBcc: x@y.zz", "priority": "urgent"},
    {"to": [f"u{i}@example.com" for i in range(51)]},
    {"to": ["ann@example.com"], "text": "\ud800 lone surrogate"},
    {"to": ["ann@example.com"]},
]
# A batch refuses a null message as a whole (a 400), so only a single send sees one.
SENDS = [*MESSAGES, None]


@pytest.mark.parametrize("defaults", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_batch_answers_as_a_serializer_per_message_did(defaults):
    templates = Templates()
    stock = stock_items(defaults, MESSAGES, templates)
    fast = fast_items(defaults, MESSAGES, templates)
    for index, (expected, got) in enumerate(zip(stock, fast, strict=True)):
        assert got == expected, (index, MESSAGES[index])


@pytest.mark.parametrize("defaults", DEFAULTS.values(), ids=DEFAULTS.keys())
def test_a_single_send_answers_as_drf_stock_serializer_did(defaults):
    templates = Templates()
    for item in SENDS:
        payload = {**defaults, **item} if isinstance(item, dict) else item
        stock = StockMessageSerializer(data=payload, context={"templates": templates})
        fast = MessageCreateSerializer(data=payload, context={"templates": templates})
        assert fast.is_valid() == stock.is_valid(), item
        assert validation_problem(fast.errors) == validation_problem(stock.errors), item
        if stock.is_valid():
            assert fast.to_draft() == stock.to_draft(), item


@pytest.mark.parametrize("payload", [None, "text", [], 0])
def test_a_send_that_is_not_an_object_is_refused_as_before(payload):
    stock = StockMessageSerializer(data=payload)
    fast = MessageCreateSerializer(data=payload)
    assert not stock.is_valid()
    assert not fast.is_valid()
    assert fast.errors == stock.errors


def test_a_default_is_validated_once_per_batch(monkeypatch):
    seen = []
    original = AddressField.to_internal_value

    def counting(self, data):
        seen.append(data)
        return original(self, data)

    monkeypatch.setattr(AddressField, "to_internal_value", counting)
    messages = [{"to": [f"u{i}@example.com"]} for i in range(20)]
    drafts = fast_items({"from": "s@shop.test", "text": "x"}, messages, Templates())
    assert len(drafts) == 20
    assert seen.count("s@shop.test") == 1
    assert len(seen) == 21


def test_the_messages_of_a_batch_share_no_list_or_dict():
    defaults = {
        "from": "s@shop.test",
        "text": "x",
        "tags": ["a"],
        "metadata": {"k": "v"},
        "headers": {"X-A": "1"},
    }
    first, second = fast_items(defaults, [{"to": ["a@example.com"]}] * 2, Templates())
    assert first == second
    assert first.tags is not second.tags
    assert first.metadata is not second.metadata
    assert first.headers is not second.headers


def test_threads_validating_at_once_each_get_their_own_answers() -> None:
    templates = Templates()
    batches = list(DEFAULTS.values())
    expected = [stock_items(defaults, MESSAGES, templates) for defaults in batches]
    results: dict[tuple[int, int, int], list] = {}
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        start.wait()
        for round_ in range(3):
            for index, defaults in enumerate(batches):
                results[(worker, round_, index)] = fast_items(defaults, MESSAGES, templates)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 * 3 * len(batches)
    for (_, _, index), got in results.items():
        assert got == expected[index]


def test_each_thread_validates_with_fields_of_its_own():
    here = intake._message_fields()
    assert intake._message_fields() is here
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(intake._message_fields()))
    thread.start()
    thread.join()
    assert elsewhere[0] is not here
    assert {id(field) for _, field in here.writable}.isdisjoint(
        id(field) for _, field in elsewhere[0].writable
    )


def test_the_send_serializer_still_has_no_validators_of_its_own():
    # run_validators is skipped when there are none; a Meta.validators would still run.
    assert MessageCreateSerializer().validators == []


# -- the surrogate check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "é✓ and an emoji 😀",
        "\ud7ff\ue000\uffff",
        "lone \ud800 high",
        "lone \udfff low",
        "two \udc80 lone \ud801",
        "a pair as two code points \ud83d\ude00",
        "x" * 5000 + "\udabc",
    ],
)
def test_our_char_field_refuses_what_drfs_refuses_with_the_same_words(value):
    ours, drfs = CharField(), serializers.CharField()
    assert outcome(ours, value) == outcome(drfs, value)


def test_our_char_field_keeps_every_other_check_of_drfs():
    ours = CharField(max_length=5, min_length=2, validators=[fields.header_text_validator])
    drfs = serializers.CharField(
        max_length=5, min_length=2, validators=[fields.header_text_validator]
    )
    assert [type(v).__name__ for v in ours.validators] == [
        "_SurrogateCheck" if type(v).__name__.startswith("ProhibitSurrogate") else type(v).__name__
        for v in drfs.validators
    ]
    for value in ["a", "abcdef", "ab\ncd", "abc", "a\x00b", "   ", 12]:
        assert outcome(ours, value) == outcome(drfs, value), value


def outcome(field: serializers.Field, value) -> object:
    try:
        return field.run_validation(value)
    except serializers.ValidationError as exc:
        details = cast(list[ErrorDetail], exc.detail)  # a field's errors: a flat list
        return [(str(e), e.code) for e in details]


# -- plain addresses ---------------------------------------------------------------------------

TRICKY_ADDRESSES = [
    "ann@example.com",
    "Ann <ann@example.com>",
    "Ann Lee <ann.lee@example.com>",
    "Ann  Lee <ann@example.com>",
    "Ann Lee  <ann@example.com>",
    " Ann <ann@example.com> ",
    "Ann<ann@example.com>",
    "<ann@example.com>",
    "Ann <ann@example.com",
    "ann@example.com>",
    "Ann <ann@example.com> x",
    '"Young, Cy" <cy@example.com>',
    "Young, Cy <cy@example.com>",
    "J. Smith <j@example.com>",
    "ann@example.com (Ann)",
    "a+tag@example.com",
    "first_last@sub.example.co.uk",
    "-@-",
    "a@b",
    "a@localhost",
    "a@b.c",
    "a@b.com.",
    "a@.b.com",
    "a@b..com",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@-example.com",
    "a@example-.com",
    "a@example.c0m",
    "a@123.123.123.123",
    "a@[127.0.0.1]",
    "a@b@example.com",
    "a b@example.com",
    '"a b"@example.com',
    "a,b@example.com",
    "a@example.com, b@example.com",
    "a;b@example.com",
    "jörg@example.com",
    "ann@exämple.com",
    "Jörg <j@example.com>",
    "ann@xn--exmple-cua.com",
    "a" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com",
    "N" * 201 + " <a@example.com>",
    "N" * 200 + " <a@example.com>",
    "a@example.com\n",
    "Ann\r\n <a@example.com>",
    "",
    "   ",
    "@",
    "@example.com",
    "a@",
    "=?utf-8?q?Ann?= <a@example.com>",
    "Ann \udc80 <a@example.com>",
    12,
]


@pytest.mark.parametrize("text", TRICKY_ADDRESSES)
def test_an_address_field_accepts_and_refuses_as_with_getaddresses(text, monkeypatch):
    fast = outcome(AddressField(), text)
    monkeypatch.setattr(fields, "_parse_addresses", lambda text: getaddresses([text]))
    assert fast == outcome(AddressField(), text)


def test_plain_addresses_parse_as_getaddresses_parses_them():
    rng = random.Random(20240607)
    atom = "abcxyzABZ0189_+-"
    label = "abcxyzABZ0189-"
    word = "abzAZ09"
    generated = []
    for _ in range(5000):
        local = ".".join(random_text(rng, atom, 1, 6) for _ in range(rng.randint(1, 3)))
        domain = ".".join(random_text(rng, label, 1, 8) for _ in range(rng.randint(1, 3)))
        address = f"{local}@{domain}"
        name = " ".join(random_text(rng, word, 1, 5) for _ in range(rng.randint(0, 3)))
        generated += [address, f"{name} <{address}>"]
    noise = [random_text(rng, 'ab.@<> _-+"\\,;:()[]', 0, 14) for _ in range(20000)]
    plain = 0
    for text in [*TRICKY_ADDRESSES[:-1], *generated, *noise]:
        assert fields._parse_addresses(text) == getaddresses([text]), text
        plain += bool(fields._PLAIN_ADDRESS.match(text))
    assert plain > 5000  # the fast form was taken, not only the fallback


def random_text(rng: random.Random, alphabet: str, shortest: int, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(shortest, longest)))
