"""The fields every serializer of the API builds on, and the header rule they hold input to.

Everything that reaches a header is held to the header rule (``deliveries.header_text``: no line
break in any form, no control character but TAB, before or after decoding RFC 2047 encoded
words) before any row is written; the MIME builder holds it to the same rule again. A value the
rule lets through but the email library cannot write is refused too (``writable``). Each field
checks its own limit (sizes, counts) before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from email.utils import formataddr, getaddresses
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from deliveries.header_text import header_text_problem
from deliveries.mime import (
    address_field,
    display_name_may_misfold,
    header_field,
    unstructured_may_misfold,
)
from deliveries.services import Recipient

# RFC 5322 field name: printable US-ASCII except colon.
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")
#: RFC 5321's limit on a path, and the width of every address column.
MAX_ADDRESS_LENGTH = 254
# Headers Mailhub writes itself; a custom header may not replace or repeat them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "sender",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "return-path",
        "received",
        "dkim-signature",
    }
)


def header_text(value: str) -> str:
    """The header rule: ``value``, or a 400 naming the character and where it is."""
    problem = header_text_problem(value)
    if problem is not None:
        raise serializers.ValidationError(
            f"Not allowed in a mail header: {problem.reason}.", code=problem.code
        )
    return value


def writable(write: Callable[[], bytes]) -> None:
    """Accepted means buildable: ``write`` builds a header as the worker will; a value the rule
    lets through but the email library still cannot write (it fails on some malformed encoded
    words, with errors as varied as IndexError and UnicodeEncodeError) is a 400 here, not a
    message that fails in a worker."""
    refused = unwritable(write)
    if refused is not None:
        raise serializers.ValidationError(refused)


def unwritable(write: Callable[[], bytes]) -> serializers.ErrorDetail | None:
    """Why the header ``write`` builds cannot be written (see ``writable``), or None."""
    try:
        write()
    except Exception as exc:  # any failure of the library's, see writable
        return serializers.ErrorDetail(
            f"Cannot be written as a mail header ({type(exc).__name__}: {exc}).",
            code="unwritable_header",
        )
    return None


def header_text_validator(value: str) -> None:
    """The header rule as a CharField validator. A NUL or a lone surrogate as given is left out:
    the field's own validators refuse those, with their own codes (DRF reports every validator's
    error, so both would be listed)."""
    if "\x00" in value or not value.isascii():
        value = _SURROGATE.sub("", value.replace("\x00", ""))
    header_text(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


class _SurrogateCheck(ProhibitSurrogateCharactersValidator):
    """DRF's refusal of surrogate characters, word for word, found by one regex search.

    DRF's own looks at every character in a Python loop: 50 µs for a 2 KB body, most of the
    cost of validating a message, and 25 ms for a 1 MiB one. The regex still reads every
    character (12 µs for 2 KB); an ASCII string, most mail, cannot hold a surrogate, and Python
    knows a string is ASCII without reading it.
    """

    def __call__(self, value: object) -> None:
        text = str(value)
        found = None if text.isascii() else _SURROGATE.search(text)
        if found:
            message = self.message.format(code_point=ord(found.group()))
            raise serializers.ValidationError(message, code=self.code)


class CharField(serializers.CharField):
    """DRF's CharField with the same checks, its surrogate check made cheap."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators = [
            _SurrogateCheck() if type(v) is ProhibitSurrogateCharactersValidator else v
            for v in self.validators
        ]


# The forms most mail is addressed with: a plain dot-atom address, alone or behind a display
# name of plain words. For these getaddresses() returns the parts as they stand (a test pins
# it), at a thirtieth of its cost; anything else goes through getaddresses().
_PLAIN_ADDRESS = re.compile(
    r"(?:(?P<name>[A-Za-z0-9]+(?: [A-Za-z0-9]+)*) <)?"
    r"(?P<address>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"(?(name)>)\Z"
)


def _parse_addresses(text: str) -> list[tuple[str, str]]:
    """``getaddresses([text])``: ``(display name, address)`` for each address in ``text``."""
    plain = _PLAIN_ADDRESS.match(text)
    if plain:
        return [(plain["name"] or "", plain["address"])]
    return getaddresses([text])


class AddressField(CharField):
    """``addr@example.com`` or ``Display Name <addr@example.com>``; yields a Recipient."""

    default_error_messages = {
        "invalid_address": "Enter a valid email address, e.g. 'Ann <ann@example.com>'.",
        "non_ascii": "Only ASCII addresses are supported (the domain may be written in punycode).",
    }

    # DRF's way to parse text into a richer value; the stubs fix a CharField's value type to str.
    def to_internal_value(self, data: Any) -> Recipient:  # type: ignore[override]
        text = super().to_internal_value(data)
        # The validators see the parsed Recipient, whose text form escapes a lone surrogate; it
        # must be refused here or it fails later, encoding the draft.
        _SurrogateCheck()(text)
        header_text(text)  # the display name goes into a header
        if len(text) > 320:
            raise serializers.ValidationError(
                "An address is at most 320 characters.", code="max_length"
            )
        parsed = _parse_addresses(text)
        if len(parsed) != 1:
            self.fail("invalid_address")
        name, address = parsed[0]
        if not address or "@" not in address:
            self.fail("invalid_address")
        if not address.isascii():
            self.fail("non_ascii")
        if len(address) > MAX_ADDRESS_LENGTH:
            raise serializers.ValidationError(
                f"An address is at most {MAX_ADDRESS_LENGTH} characters (RFC 5321).",
                code="max_length",
            )
        try:
            validate_email(address)
        except DjangoValidationError:
            self.fail("invalid_address")
        if len(name) > 200:
            raise serializers.ValidationError("The display name is too long.", code="max_length")
        if display_name_may_misfold(name):
            writable(lambda: address_field("To", formataddr((name, address)), names=[name]))
        return Recipient(address=address, name=name)


class JsonBooleanField(serializers.BooleanField):
    """A JSON ``true`` or ``false`` (or ``null`` where allowed), not DRF's "yes", "on" or 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class HeadersField(serializers.DictField):
    child = CharField(max_length=998, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        headers = super().to_internal_value(data)
        if len(headers) > settings.MAILHUB_MAX_HEADERS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_HEADERS} custom headers.", code="max_length"
            )
        errors: dict[str, str] = {}
        seen = set()
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                errors[name] = "Not a valid header name (printable ASCII, no colon, ≤ 76)."
            elif name.lower() in RESERVED_HEADERS:
                errors[name] = "Mailhub sets this header itself; use the message field instead."
            elif name.lower() in seen:
                errors[name] = "Header given twice (names are case-insensitive)."
            elif problem := header_text_problem(value):
                errors[name] = f"Not allowed in a mail header: {problem.reason}."
            elif unstructured_may_misfold(value) and (
                (refused := unwritable(partial(header_field, name, value))) is not None
            ):
                errors[name] = refused
            seen.add(name.lower())
        if errors:
            raise serializers.ValidationError(errors, code="invalid_header")
        return headers


class BodyField(CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_blank=True, trim_whitespace=False, required=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        limit = settings.MAILHUB_MAX_BODY_BYTES
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise serializers.ValidationError(
                f"The body is larger than {limit} bytes (UTF-8).", code="max_size"
            )
        return value


class SubjectField(CharField):
    """A subject as given (white space kept), held to the header rule; RFC 5322's 998 at most."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            max_length=998,
            allow_blank=True,
            required=False,
            default="",
            trim_whitespace=False,
            validators=[header_text_validator],
            **kwargs,
        )


def unknown_fields_error(data: Any, fields: Iterable[str]) -> None:
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
                    for name in unknown
                }
            )


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo (`texte`) must not pass silently."""

    def to_internal_value(self, data: Any) -> Any:
        unknown_fields_error(data, self.fields)
        return super().to_internal_value(data)


class Base64Field(CharField):
    """Standard base64 (line breaks and spaces allowed, as MIME writes it); yields bytes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)

    # DRF's way to parse text into a richer value; the stubs fix a CharField's value type to str.
    def to_internal_value(self, data: Any) -> bytes:  # type: ignore[override]
        text = "".join(super().to_internal_value(data).split())
        limit = settings.MAILHUB_MAX_ATTACHMENT_BYTES
        # Refuse by length before decoding: 4 characters of base64 carry 3 bytes.
        if len(text) // 4 * 3 - 2 > limit:
            raise serializers.ValidationError(
                f"An attachment is at most {limit} bytes (decoded).", code="max_size"
            )
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError(
                "Not valid base64 (standard alphabet, with padding).", code="invalid_base64"
            ) from None
        if len(content) > limit:
            raise serializers.ValidationError(
                f"An attachment is at most {limit} bytes (decoded); this one is {len(content)}.",
                code="max_size",
            )
        return content


#: A metadata key, in a message and in a listing filter.
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 500},
        "description": "Up to MAILHUB_MAX_METADATA_KEYS (20) string values, keys of "
        "`[A-Za-z0-9_.-]{1,64}`, MAILHUB_MAX_METADATA_BYTES (2048) as compact UTF-8 JSON. "
        "Numbers are stored as strings.",
    }
)
class MetadataField(serializers.DictField):
    child = CharField(max_length=500, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        metadata = super().to_internal_value(data)
        if len(metadata) > settings.MAILHUB_MAX_METADATA_KEYS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_METADATA_KEYS} metadata keys.", code="max_length"
            )
        bad = sorted(key for key in metadata if not METADATA_KEY.match(key))
        if bad:
            raise serializers.ValidationError(
                {key: ["Keys are 1 to 64 of A-Z a-z 0-9 _ . -"] for key in bad},
                code="invalid_key",
            )
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
        if size > settings.MAILHUB_MAX_METADATA_BYTES:
            raise serializers.ValidationError(
                f"Metadata is at most {settings.MAILHUB_MAX_METADATA_BYTES} bytes as JSON; "
                f"this is {size}.",
                code="max_size",
            )
        return metadata


class TagsField(serializers.ListField):
    child = CharField(max_length=64)

    def to_internal_value(self, data: Any) -> list[str]:
        tags = list(dict.fromkeys(super().to_internal_value(data)))  # duplicates dropped
        if len(tags) > settings.MAILHUB_MAX_TAGS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_TAGS} tags.", code="max_length"
            )
        if not all(_TAG.match(tag) for tag in tags):
            raise serializers.ValidationError(
                "Tags are 1 to 64 characters, no control characters.", code="invalid_tag"
            )
        return tags


class ContextField(serializers.DictField):
    """A template's variables: any JSON object whose strings Postgres can store (no NUL) and
    UTF-8 can encode (no lone surrogate), since what they render into is stored and sent. (How
    deep it may nest is the JSON parser's limit, ``api.parsers.MAX_DEPTH``.)"""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        context = super().to_internal_value(data)
        bad = _unstorable_string_at(context, path="")
        if bad is not None:
            raise serializers.ValidationError(
                f"{bad}: NUL and lone surrogate characters are not allowed.",
                code="invalid_context",
            )
        return context


def _unstorable_string_at(value: Any, *, path: str) -> str | None:
    """The path of the first string (key or value) holding a NUL or a lone surrogate."""
    if isinstance(value, str):
        unstorable = "\x00" in value or (not value.isascii() and _SURROGATE.search(value))
        return path if unstorable else None
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = ((f".{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for step, item in items:
        found = _unstorable_string_at(step, path=path + step) or _unstorable_string_at(
            item, path=path + step
        )
        if found is not None:
            return found.lstrip(".")
    return None
