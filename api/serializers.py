"""Validation of what clients send, and the shape of what they get back.

Everything that reaches a header is held to the header rule (``deliveries.header_text``: no line
break in any form, no control character but TAB, before or after decoding RFC 2047 encoded
words) before any row is written; the MIME builder holds it to the same rule again. Every limit
(sizes, counts, schedule horizon) is checked here, before anything is stored. A template is rendered
here too, so that a bad context is a 400 now instead of a failure in a worker later.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from email.utils import formataddr, getaddresses
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField, empty, get_error_detail
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from accounts.models import Client
from api.errors import validation_problem
from deliveries import conf
from deliveries.header_text import header_text_problem
from deliveries.mime import (
    address_field,
    attachment_headers,
    display_name_may_misfold,
    header_field,
    unstructured_may_misfold,
)
from deliveries.models import (
    Attachment,
    Attempt,
    Delivery,
    Event,
    Message,
    Priority,
    Suppression,
    Template,
)
from deliveries.selectors import templates_by_name
from deliveries.services import AttachmentDraft, MessageDraft, Recipient
from deliveries.states import DeliveryStatus, MessageStatus
from deliveries.templating import TemplateProblem, template_render

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


def _header_text(value: str) -> str:
    """The header rule: ``value``, or a 400 naming the character and where it is."""
    problem = header_text_problem(value)
    if problem is not None:
        raise serializers.ValidationError(
            f"Not allowed in a mail header: {problem.reason}.", code=problem.code
        )
    return value


def _writable(write: Callable[[], bytes]) -> None:
    """Accepted means buildable: ``write`` builds a header as the worker will; a value the rule
    lets through but the email library still cannot write (it fails on some malformed encoded
    words, with errors as varied as IndexError and UnicodeEncodeError) is a 400 here, not a
    message that fails in a worker."""
    try:
        write()
    except Exception as exc:  # any failure of the library's, see above
        raise serializers.ValidationError(
            f"Cannot be written as a mail header ({type(exc).__name__}: {exc}).",
            code="unwritable_header",
        ) from None


def _header_text_validator(value: str) -> None:
    """The header rule as a CharField validator. A NUL or a lone surrogate as given is left out:
    the field's own validators refuse those, with their own codes (DRF reports every validator's
    error, so both would be listed)."""
    if "\x00" in value or not value.isascii():
        value = _SURROGATE.sub("", value.replace("\x00", ""))
    _header_text(value)


_SURROGATE = re.compile("[\ud800-\udfff]")


class _SurrogateCheck(ProhibitSurrogateCharactersValidator):
    """DRF's refusal of surrogate characters, word for word, found by one regex search.

    DRF's own looks at every character in a Python loop: 50 µs for a 2 KB body, most of the
    cost of validating a message, and 25 ms for a 1 MiB one. The regex still reads every
    character (12 µs for 2 KB); an ASCII string, most mail, cannot hold a surrogate, and Python
    knows a string is ASCII without reading it.
    """

    def __call__(self, value) -> None:
        text = str(value)
        found = None if text.isascii() else _SURROGATE.search(text)
        if found:
            message = self.message.format(code_point=ord(found.group()))
            raise serializers.ValidationError(message, code=self.code)


class CharField(serializers.CharField):
    """DRF's CharField with the same checks, its surrogate check made cheap."""

    def __init__(self, **kwargs):
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

    def to_internal_value(self, data) -> Recipient:
        text = super().to_internal_value(data)
        # The validators see the parsed Recipient, whose text form escapes a lone surrogate; it
        # must be refused here or it fails later, encoding the draft.
        _SurrogateCheck()(text)
        _header_text(text)  # the display name goes into a header
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
            _writable(lambda: address_field("To", formataddr((name, address)), names=[name]))
        return Recipient(address=address, name=name)


class HeadersField(serializers.DictField):
    child = CharField(max_length=998, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data) -> dict[str, str]:
        headers = super().to_internal_value(data)
        if len(headers) > settings.MAILHUB_MAX_HEADERS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_HEADERS} custom headers.", code="max_length"
            )
        errors = {}
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
            elif unstructured_may_misfold(value):
                try:
                    _writable(lambda name=name, value=value: header_field(name, value))
                except serializers.ValidationError as refused:
                    errors[name] = refused.detail[0]
            seen.add(name.lower())
        if errors:
            raise serializers.ValidationError(errors, code="invalid_header")
        return headers


class BodyField(CharField):
    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, required=False, **kwargs)

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data)
        limit = settings.MAILHUB_MAX_BODY_BYTES
        if len(value.encode("utf-8", "surrogatepass")) > limit:
            raise serializers.ValidationError(
                f"The body is larger than {limit} bytes (UTF-8).", code="max_size"
            )
        return value


class SubjectField(CharField):
    """A subject as given (white space kept), held to the header rule; RFC 5322's 998 at most."""

    def __init__(self, **kwargs):
        super().__init__(
            max_length=998,
            allow_blank=True,
            required=False,
            default="",
            trim_whitespace=False,
            validators=[_header_text_validator],
            **kwargs,
        )


def _unknown_fields_error(data: Any, fields: Iterable[str]) -> None:
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

    def to_internal_value(self, data):
        _unknown_fields_error(data, self.fields)
        return super().to_internal_value(data)


_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}$"
)
_CONTENT_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]{1,255}$")  # printable ASCII but < and >
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")


class Base64Field(CharField):
    """Standard base64 (line breaks and spaces allowed, as MIME writes it); yields bytes."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data) -> bytes:
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


class AttachmentSerializer(StrictSerializer):
    filename = CharField(max_length=255, validators=[_header_text_validator])
    content_type = CharField(
        max_length=127, help_text="MIME type, e.g. `application/pdf`, `image/png`."
    )
    content = Base64Field(
        help_text="The file, base64. At most MAILHUB_MAX_ATTACHMENT_BYTES (1 MiB) decoded."
    )
    disposition = serializers.ChoiceField(
        choices=["attachment", "inline"],
        default="attachment",
        help_text='`inline`: an image the HTML shows as `<img src="cid:CONTENT_ID">`.',
    )
    content_id = CharField(
        max_length=255,
        required=False,
        default="",
        help_text="Required for inline parts, without angle brackets: `logo@shop`.",
    )

    def validate_filename(self, value: str) -> str:
        if "/" in value or "\\" in value:
            raise serializers.ValidationError("A file name, not a path.", code="invalid_filename")
        return value

    def validate_content_type(self, value: str) -> str:
        if not _CONTENT_TYPE.match(value):
            raise serializers.ValidationError(
                "Not a MIME type (type/subtype).", code="invalid_content_type"
            )
        if value.split("/", 1)[0].lower() in ("multipart", "message"):
            raise serializers.ValidationError(
                "multipart/* and message/* cannot be attached; send them as "
                "application/octet-stream.",
                code="invalid_content_type",
            )
        return value.lower()

    def validate_content_id(self, value: str) -> str:
        if value and not _CONTENT_ID.match(value):
            raise serializers.ValidationError(
                "Printable ASCII without spaces or angle brackets.", code="invalid_content_id"
            )
        return _header_text(value)  # printable, but an encoded word may decode to a line break

    def validate(self, attrs):
        if attrs["disposition"] == "inline" and not attrs["content_id"]:
            raise serializers.ValidationError(
                {"content_id": ["An inline part needs a content_id for the HTML to refer to."]},
                code="required",
            )
        if attrs["disposition"] == "attachment" and attrs["content_id"]:
            raise serializers.ValidationError(
                {"content_id": ["Only inline parts have a content_id."]}, code="invalid"
            )
        if not (attrs["filename"].isascii() and "=?" not in attrs["filename"]):
            # Plain ASCII names are always written; anything else is written once now.
            try:
                _writable(lambda: attachment_headers(**{n: attrs[n] for n in _PART_HEADERS}))
            except serializers.ValidationError as refused:
                raise serializers.ValidationError({"filename": refused.detail}) from None
        return attrs


_PART_HEADERS = ("filename", "content_type", "content_id")


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

    def to_internal_value(self, data) -> dict[str, str]:
        metadata = super().to_internal_value(data)
        if len(metadata) > settings.MAILHUB_MAX_METADATA_KEYS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_METADATA_KEYS} metadata keys.", code="max_length"
            )
        bad = sorted(key for key in metadata if not _METADATA_KEY.match(key))
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

    def to_internal_value(self, data) -> list[str]:
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

    def to_internal_value(self, data) -> dict:
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


TemplateResolver = Callable[[str], Template | None]


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # what DRF's SlugField accepts


class TemplateLookup:
    """Finds a client's templates by name, once per name per request (a batch reuses them)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._found: dict[str, Template | None] = {}

    def prefetch(self, names: Iterable[str]) -> None:
        # Only names the template field can accept (slugs): any other is refused before the
        # lookup, and one holding a NUL or a lone surrogate cannot even be sent to Postgres.
        wanted = {
            name
            for name in names
            if isinstance(name, str) and _SLUG.fullmatch(name) and name not in self._found
        }
        if wanted:
            found = templates_by_name(client=self.client, names=wanted)
            self._found.update({name: found.get(name) for name in wanted})

    def __call__(self, name: str) -> Template | None:
        self.prefetch([name])
        return self._found.get(name)


_TEMPLATE_PARTS = ("subject", "text", "html")


class MessageCreateSerializer(StrictSerializer):
    # `from` is a Python keyword: declared as `sender`, exposed as `from` by get_fields().
    sender = AddressField(help_text="From: 'addr@example.com' or 'Name <addr@example.com>'")
    to = serializers.ListField(child=AddressField(), required=False, default=list)
    cc = serializers.ListField(child=AddressField(), required=False, default=list)
    bcc = serializers.ListField(child=AddressField(), required=False, default=list)
    reply_to = serializers.ListField(child=AddressField(), required=False, default=list)
    subject = SubjectField()
    text = BodyField(help_text="Plain-text body; at most MAILHUB_MAX_BODY_BYTES (1 MiB) UTF-8.")
    html = BodyField(help_text="HTML body; at most MAILHUB_MAX_BODY_BYTES (1 MiB) UTF-8.")
    headers = HeadersField(required=False, default=dict)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    send_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="ISO 8601; without an offset it is UTC. In the future and at most "
        "MAILHUB_MAX_SCHEDULE_DAYS (30) days ahead. The message waits `scheduled` until then.",
    )
    tags = TagsField(
        required=False,
        default=list,
        help_text="At most MAILHUB_MAX_TAGS (10) tags of 1 to 64 characters; filter with "
        "`GET /api/v1/messages?tag=`.",
    )
    metadata = MetadataField(required=False, default=dict)
    attachments = AttachmentSerializer(
        many=True,
        required=False,
        default=list,
        help_text="At most MAILHUB_MAX_ATTACHMENTS (10), together at most "
        "MAILHUB_MAX_ATTACHMENTS_BYTES (2 MiB) decoded.",
    )
    template = serializers.SlugField(
        max_length=100,
        required=False,
        default="",
        help_text="Name of one of your templates; it gives subject, text and html (which the "
        "message then must not give). Rendered now: a missing variable is a 400.",
    )
    context = ContextField(
        required=False,
        default=dict,
        help_text="Variables for the template: any JSON object (no NUL or lone surrogate in "
        "its strings).",
    )

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("sender")
        return fields

    def to_internal_value(self, data):
        """DRF's loop over the fields, over fields built once per thread (see _message_fields);
        in a batch, the fields a message takes from the defaults are validated once."""
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's refusal of a non-object
        fields = _message_fields()
        _unknown_fields_error(data, fields.names)
        defaults: _ValidatedDefaults | None = self.context.get(_VALIDATED_DEFAULTS)
        ret: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for field in fields.writable:
            primitive = field.get_value(data)
            if defaults is not None:
                value, error = defaults.validate(self, field, primitive)
            else:
                value, error = _validate_field(self, field, primitive)
            if error is not None:
                errors[field.field_name] = error
            elif value is not _SKIPPED:
                self.set_value(ret, field.source_attrs, value)
        if errors:
            raise serializers.ValidationError(errors)
        return ret

    def run_validators(self, value) -> None:
        # DRF's would build a copy of every field to look for read-only defaults; there are none.
        if self.validators:
            super().run_validators(value)

    def validate_subject(self, value: str) -> str:
        if unstructured_may_misfold(value):
            _writable(lambda: header_field("Subject", value))
        return value

    def validate_send_at(self, value):
        if value is None:
            return None
        now = timezone.now()
        if value <= now:
            raise serializers.ValidationError(
                "send_at must be in the future; leave it out to send now.", code="in_past"
            )
        horizon = timedelta(days=settings.MAILHUB_MAX_SCHEDULE_DAYS)
        if value > now + horizon:
            raise serializers.ValidationError(
                f"send_at may be at most {settings.MAILHUB_MAX_SCHEDULE_DAYS} days ahead.",
                code="too_far",
            )
        return value

    def validate_attachments(self, attachments: list[dict]) -> list[dict]:
        if len(attachments) > settings.MAILHUB_MAX_ATTACHMENTS:
            raise serializers.ValidationError(
                f"At most {settings.MAILHUB_MAX_ATTACHMENTS} attachments per message.",
                code="max_length",
            )
        total = sum(len(part["content"]) for part in attachments)
        if total > settings.MAILHUB_MAX_ATTACHMENTS_BYTES:
            raise serializers.ValidationError(
                f"Attachments are at most {settings.MAILHUB_MAX_ATTACHMENTS_BYTES} bytes "
                f"together (decoded); these are {total}.",
                code="max_size",
            )
        content_ids = [part["content_id"] for part in attachments if part["content_id"]]
        if len(content_ids) != len(set(content_ids)):
            raise serializers.ValidationError(
                "Each inline part needs its own content_id.", code="duplicate_content_id"
            )
        return attachments

    def validate(self, attrs):
        count = len(attrs["to"]) + len(attrs["cc"]) + len(attrs["bcc"])
        if count == 0:
            raise serializers.ValidationError(
                {"to": ["At least one recipient (to, cc or bcc) is required."]}, code="required"
            )
        if count > settings.MAILHUB_MAX_RECIPIENTS:
            raise serializers.ValidationError(
                {
                    "to": [
                        f"At most {settings.MAILHUB_MAX_RECIPIENTS} recipients per message "
                        f"(to, cc and bcc together); {count} given."
                    ]
                },
                code="max_length",
            )
        if attrs["template"]:
            return self._validate_template(attrs)
        if attrs["context"]:
            raise serializers.ValidationError(
                {"context": ["A context is only used with a template."]}, code="invalid"
            )
        if not attrs.get("text") and not attrs.get("html"):
            raise serializers.ValidationError(
                {"text": ["Give a text or an html body (or both), or a template."]},
                code="required",
            )
        return attrs

    def _validate_template(self, attrs):
        given = [part for part in _TEMPLATE_PARTS if part in self.initial_data]
        if given:
            raise serializers.ValidationError(
                {part: ["The template gives this; leave it out."] for part in given},
                code="template_conflict",
            )
        lookup: TemplateResolver | None = self.context.get("templates")
        template = lookup(attrs["template"]) if lookup is not None else None
        if template is None:
            raise serializers.ValidationError(
                {"template": [f"You have no template named {attrs['template']!r}."]},
                code="template_not_found",
            )
        batch_budget: BatchTemplateBudget | None = self.context.get(_BATCH_TEMPLATE_BUDGET)
        if batch_budget is not None and batch_budget.spent():
            raise serializers.ValidationError(
                {
                    "template": [
                        serializers.ErrorDetail(
                            "This batch's templates used up their CPU budget "
                            f"({batch_budget.seconds:g} s); send the rest in another batch.",
                            code="template_too_expensive",
                        )
                    ]
                }
            )
        started = time.thread_time()
        try:
            rendered = template_render(template=template, context=attrs["context"])
        except TemplateProblem as problem_:
            errors: dict[str, list] = {}
            for part, (code, message) in problem_.errors.items():
                field = "context" if code == "missing_variable" else "template"
                errors.setdefault(field, []).append(
                    serializers.ErrorDetail(f"{part}: {message}", code=code)
                )
            raise serializers.ValidationError(errors) from None
        finally:
            if batch_budget is not None:
                batch_budget.charge(time.thread_time() - started)
        subject = rendered.subject.strip()
        errors = {}
        if problem := header_text_problem(subject):
            errors["template"] = [
                serializers.ErrorDetail(
                    f"subject: the rendered subject holds what a mail header may not: {problem}.",
                    code=problem.code,
                )
            ]
        elif len(subject) > 998:
            errors["template"] = [
                serializers.ErrorDetail(
                    "subject: the rendered subject is longer than 998 characters.",
                    code="max_length",
                )
            ]
        else:
            try:
                self.validate_subject(subject)
            except serializers.ValidationError as refused:
                (unwritable,) = refused.detail
                errors["template"] = [
                    serializers.ErrorDetail(f"subject: {unwritable}", code=unwritable.code)
                ]
        limit = settings.MAILHUB_MAX_BODY_BYTES
        for part in ("text", "html"):
            if len(getattr(rendered, part).encode("utf-8", "surrogatepass")) > limit:
                errors.setdefault("template", []).append(
                    serializers.ErrorDetail(
                        f"{part}: the rendered body is larger than {limit} bytes.",
                        code="max_size",
                    )
                )
        if not rendered.text.strip() and not rendered.html.strip():
            errors.setdefault("template", []).append(
                serializers.ErrorDetail(
                    "The template renders neither a text nor an html body.", code="required"
                )
            )
        if errors:
            raise serializers.ValidationError(errors)
        return {**attrs, "subject": subject, "text": rendered.text, "html": rendered.html}

    def to_draft(self) -> MessageDraft:
        """The validated message, as ``deliveries.services.message_accept`` takes it."""
        return draft_from(self.validated_data)


class _MessageFields:
    """MessageCreateSerializer's fields, built and bound once.

    DRF deep-copies every declared field for every serializer instance (300 µs, more than
    validating a typical message takes). Validating keeps no state in a field (DRF's fields and
    ours only read their settings; the serializer keeps ``initial_data`` and the results), and
    nothing they consult through their parent differs between messages (``partial`` is never
    set, no field reads the context), so one set serves every message of its thread. One set
    per thread, because a field is never shared with a request running at the same time.
    """

    def __init__(self) -> None:
        fields = MessageCreateSerializer().fields
        self.names = frozenset(fields)
        self.writable = [field for field in fields.values() if not field.read_only]


_per_thread = threading.local()


def _message_fields() -> _MessageFields:
    fields = getattr(_per_thread, "message_fields", None)
    if fields is None:
        fields = _per_thread.message_fields = _MessageFields()
    return fields


#: The value of a field that is absent and has no default (DRF's SkipField).
_SKIPPED = object()


def _validate_field(
    serializer: serializers.Serializer, field: serializers.Field, primitive: Any
) -> tuple[Any, Any]:
    """One field as DRF's ``Serializer.to_internal_value`` validates it: ``(value, None)``, or
    ``(None, errors)``; the value is ``_SKIPPED`` when the field is left out."""
    validate_method = getattr(serializer, "validate_" + field.field_name, None)
    try:
        value = field.run_validation(primitive)
        if validate_method is not None:
            value = validate_method(value)
    except serializers.ValidationError as exc:
        return None, exc.detail
    except DjangoValidationError as exc:
        return None, get_error_detail(exc)
    except SkipField:
        return _SKIPPED, None
    return value, None


_VALIDATED_DEFAULTS = "validated_defaults"


class _ValidatedDefaults:
    """A batch's defaults, each field validated once for all the messages that take it.

    A message takes a field from the defaults (or leaves it out of both) when its payload holds
    the defaults' very object (``{**defaults, **item}`` keeps it), or nothing; a field the
    message gives, or merges, is validated for that message alone. Field validation depends on
    nothing but the field's value, so the result (value or errors) is the same for every
    message; cross-field checks (``validate``) still run per message. One exception:
    ``send_at`` is compared with the clock once per batch instead of once per message.
    """

    def __init__(self, defaults: dict) -> None:
        self.defaults = defaults
        self._results: dict[str, tuple[Any, Any]] = {}

    def validate(
        self, serializer: serializers.Serializer, field: serializers.Field, primitive: Any
    ) -> tuple[Any, Any]:
        name = field.field_name
        if primitive is not self.defaults.get(name, empty):
            return _validate_field(serializer, field, primitive)
        if name not in self._results:
            self._results[name] = _validate_field(serializer, field, primitive)
        value, errors = self._results[name]
        # Each message gets its own list or dict, as it would validated on its own.
        return (copy.copy(value) if isinstance(value, list | dict) else value), errors


def draft_from(data: dict) -> MessageDraft:
    sender: Recipient = data["from"]
    recipients = [
        Recipient(address=r.address, name=r.name, kind=kind)
        for kind in (Delivery.Kind.TO, Delivery.Kind.CC, Delivery.Kind.BCC)
        for r in data[kind.value]
    ]
    return MessageDraft(
        sender=formataddr((sender.name, sender.address)),
        recipients=recipients,
        reply_to=[r.address for r in data["reply_to"]],
        subject=data["subject"],
        text=data.get("text", ""),
        html=data.get("html", ""),
        headers=data["headers"],
        priority=data["priority"],
        send_at=data.get("send_at"),
        tags=data.get("tags", []),
        metadata=data.get("metadata", {}),
        attachments=[
            AttachmentDraft(
                filename=part["filename"],
                content_type=part["content_type"],
                content=part["content"],
                content_id=part["content_id"],
            )
            for part in data.get("attachments", [])
        ],
        template_name=data.get("template", ""),
    )


# -- batches ------------------------------------------------------------------------------------

#: Fields of a batch item whose keys are merged with the defaults' instead of replacing them.
_MERGED_FIELDS = ("context", "metadata", "headers")


class BatchSerializer(StrictSerializer):
    defaults = serializers.DictField(
        required=False,
        default=dict,
        help_text="Fields every message of the batch has unless it gives its own; `context`, "
        "`metadata` and `headers` are merged key by key (the message's keys win). Typical: "
        "`from`, `template` and a shared `context` here, `to` and a per-recipient `context` "
        "in each message.",
    )
    messages = serializers.ListField(
        child=serializers.JSONField(),
        help_text="1 to MAILHUB_MAX_BATCH_MESSAGES (500) messages, each as for "
        "`POST /api/v1/messages`, each validated on its own.",
    )

    def validate_defaults(self, defaults: dict) -> dict:
        unknown = sorted(set(defaults) - _message_fields().names)
        if unknown:
            raise serializers.ValidationError(
                f"Unknown field(s): {', '.join(unknown)}.", code="unknown_field"
            )
        return defaults

    def validate_messages(self, messages: list) -> list:
        limit = settings.MAILHUB_MAX_BATCH_MESSAGES
        if not messages:
            raise serializers.ValidationError("Give at least one message.", code="required")
        if len(messages) > limit:
            raise serializers.ValidationError(
                f"At most {limit} messages per batch; {len(messages)} given.", code="max_length"
            )
        return messages

    def items(self, *, templates: TemplateLookup) -> list[MessageDraft | dict]:
        """Validate each message on its own: a draft for a valid one, a problem for the rest."""
        defaults = self.validated_data["defaults"]
        messages = self.validated_data["messages"]
        names = [item.get("template") for item in messages if isinstance(item, dict)]
        templates.prefetch([defaults.get("template"), *names])
        # One serializer for the whole batch, each message validated as is_valid() would:
        # run_validation() keeps nothing between messages but initial_data, which
        # _validate_template reads and which is set for each.
        serializer = MessageCreateSerializer(
            context={
                "templates": templates,
                _VALIDATED_DEFAULTS: _ValidatedDefaults(defaults),
                _BATCH_TEMPLATE_BUDGET: BatchTemplateBudget(),
            }
        )
        out: list[MessageDraft | dict] = []
        for item in messages:
            if not isinstance(item, dict):
                out.append(validation_problem({"non_field_errors": [_not_an_object()]}))
                continue
            serializer.initial_data = payload = _merged(defaults, item)
            try:
                out.append(draft_from(serializer.run_validation(payload)))
            except serializers.ValidationError as exc:
                out.append(validation_problem(exc.detail))
        return out


_BATCH_TEMPLATE_BUDGET = "batch_template_budget"


class BatchTemplateBudget:
    """The CPU one batch's template renders may use together: each render has its own budget
    (``deliveries.templating``), and 500 hostile ones would hold a web thread for 50 s. Past it,
    the batch's remaining template messages are refused (``template_too_expensive``) unrendered;
    a batch of ordinary templates (a fraction of a millisecond each) never comes near it."""

    RENDERS = 10  # the batch may use as much CPU as this many renders at their limit

    def __init__(self) -> None:
        self.seconds = self.RENDERS * conf.template_cpu_seconds()
        self._used = 0.0

    def charge(self, seconds: float) -> None:
        self._used += seconds

    def spent(self) -> bool:
        return self._used >= self.seconds


def _merged(defaults: dict, item: dict) -> dict:
    """A batch's message with the defaults it does not override."""
    payload = {**defaults, **item}
    for name in _MERGED_FIELDS:
        if isinstance(defaults.get(name), dict) and isinstance(item.get(name), dict):
            payload[name] = {**defaults[name], **item[name]}
    return payload


def _not_an_object() -> serializers.ErrorDetail:
    return serializers.ErrorDetail("Each message is a JSON object.", code="invalid")


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the message in the request.")
    id = serializers.UUIDField(required=False, help_text="Set when the message was accepted.")
    status = serializers.ChoiceField(choices=MessageStatus.choices, required=False)
    error = serializers.DictField(
        required=False,
        help_text="Set when the message was refused: a problem (`validation_error`) with "
        "its field errors; nothing was stored for it.",
    )


class BatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = BatchItemResultSerializer(many=True, help_text="One per message, in order.")


# -- answers ------------------------------------------------------------------------------------


class MessageAcceptedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MessageStatus.choices)


class CancelResultSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MessageStatus.choices, help_text="After the cancel.")
    cancelled = serializers.ListField(
        child=serializers.CharField(),
        help_text="The recipients whose delivery this request cancelled; empty when nothing "
        "was left to cancel (sent, being sent, or already final).",
    )
    cancel_requested = serializers.ListField(
        child=serializers.CharField(),
        help_text="The recipients being sent at this moment: if this attempt delivers, bounces "
        "or fails them, that stands; if it would be retried, they become `cancelled` instead.",
    )


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "smtp_code",
            "enhanced_code",
            "reply",
            "outcome",
            "worker",
        ]


class DeliverySerializer(serializers.ModelSerializer):
    attempts = AttemptSerializer(source="attempt_set", many=True, read_only=True)
    attempt_count = serializers.IntegerField(source="attempts", read_only=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "address",
            "name",
            "kind",
            "status",
            "attempt_count",
            "next_attempt_at",
            "last_code",
            "last_enhanced_code",
            "last_reply",
            "delivered_at",
            "attempts",
        ]


class RecipientSummarySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = ["address", "kind", "status"]


class AttachmentInfoSerializer(serializers.ModelSerializer):
    class Meta:
        model = Attachment
        fields = ["filename", "content_type", "size", "content_id"]


class MessageSummarySerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    recipients = RecipientSummarySerializer(source="deliveries", many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "priority",
            "sender",
            "subject",
            "tags",
            "metadata",
            "template_name",
            "created_at",
            "send_at",
            "recipients",
        ]


class MessageDetailSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=MessageStatus.choices, read_only=True)
    recipients = DeliverySerializer(source="deliveries", many=True, read_only=True)
    attachments = AttachmentInfoSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "priority",
            "sender",
            "reply_to",
            "subject",
            "text_body",
            "html_body",
            "headers",
            "tags",
            "metadata",
            "template_name",
            "message_id",
            "created_at",
            "send_at",
            "expires_at",
            "attachments",
            "recipients",
        ]


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = [
            "id",
            "type",
            "recipient",
            "attempt",
            "smtp_code",
            "enhanced_code",
            "reply",
            "next_attempt_at",
            "created_at",
        ]


class EventListSerializer(serializers.Serializer):
    results = EventSerializer(many=True)


# -- listing filters ----------------------------------------------------------------------------


class MetadataFilterField(CharField):
    def to_internal_value(self, data) -> tuple[str, str]:
        text = super().to_internal_value(data)
        # A CharField's checks (length, NUL, surrogates) are for the text: run after
        # to_internal_value, as DRF runs them, they would see the (key, value) pair.
        super().run_validators(text)
        key, sep, value = text.partition(":")
        if not sep or not _METADATA_KEY.match(key):
            raise serializers.ValidationError(
                "Write metadata filters as key:value.", code="invalid_metadata_filter"
            )
        return key, value

    def run_validators(self, value) -> None:
        """Run on the text already, by ``to_internal_value``."""


class ChoicesField(serializers.ListField):
    """A repeated query parameter whose values may also be comma-separated: `a,b` or `a&b`."""

    def to_internal_value(self, data):
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = [part for item in data for part in item.split(",") if part]
        return super().to_internal_value(data)


class MessageFilterSerializer(serializers.Serializer):
    status = ChoicesField(
        child=serializers.ChoiceField(choices=MessageStatus.choices),
        required=False,
        help_text="Any of these statuses (repeated or comma-separated).",
    )
    priority = ChoicesField(
        child=serializers.ChoiceField(choices=Priority.choices),
        required=False,
        help_text="Any of these priorities (repeated or comma-separated).",
    )
    recipient = serializers.EmailField(
        required=False, help_text="Messages with this recipient (to, cc or bcc), any case."
    )
    tag = serializers.ListField(
        child=CharField(max_length=64),
        required=False,
        help_text="Messages with all of these tags (repeat the parameter).",
    )
    metadata = serializers.ListField(
        child=MetadataFilterField(max_length=600),
        required=False,
        help_text="`key:value`: messages whose metadata has this value (repeat: all of them).",
    )
    created_after = serializers.DateTimeField(
        required=False, help_text="Created at or after this time (ISO 8601)."
    )
    created_before = serializers.DateTimeField(
        required=False, help_text="Created before this time (ISO 8601)."
    )

    def filters(self) -> dict:
        data = self.validated_data
        return {
            "statuses": data.get("status", []),
            "priorities": data.get("priority", []),
            "recipient": data.get("recipient"),
            "tags": data.get("tag", []),
            "metadata": dict(data.get("metadata", [])),
            "created_after": data.get("created_after"),
            "created_before": data.get("created_before"),
        }


# -- templates ----------------------------------------------------------------------------------


class TemplateSerializer(serializers.ModelSerializer):
    name = serializers.SlugField(
        max_length=100, help_text="How sends refer to it; unique among your templates."
    )
    subject = SubjectField()
    text = BodyField(default="")
    html = BodyField(default="")

    class Meta:
        model = Template
        fields = ["name", "subject", "text", "html", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def to_internal_value(self, data):
        _unknown_fields_error(data, [n for n, f in self.fields.items() if not f.read_only])
        return super().to_internal_value(data)

    def validate(self, attrs):
        text = attrs.get("text", getattr(self.instance, "text", ""))
        html = attrs.get("html", getattr(self.instance, "html", ""))
        if not text.strip() and not html.strip():
            raise serializers.ValidationError(
                {"text": ["A template needs a text or an html part (or both)."]}, code="required"
            )
        return attrs


# -- suppressions -------------------------------------------------------------------------------


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Suppression
        fields = ["address", "reason", "detail", "created_at"]


class SuppressionCreateSerializer(StrictSerializer):
    address = AddressField(help_text="The address never to send to again (stored lower-cased).")
    reason = serializers.ChoiceField(
        choices=Suppression.Reason.choices, default=Suppression.Reason.MANUAL
    )
    detail = CharField(max_length=1000, required=False, default="", allow_blank=True)


class SuppressionFilterSerializer(serializers.Serializer):
    reason = ChoicesField(
        child=serializers.ChoiceField(choices=Suppression.Reason.choices),
        required=False,
        help_text="Any of these reasons (repeated or comma-separated).",
    )
