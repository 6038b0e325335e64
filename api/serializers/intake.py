"""What clients send: a message, a batch of them, a template, a suppression.

Every limit (sizes, counts, schedule horizon) is checked here, before anything is stored. A
template is rendered here too, so that a bad context is a 400 now instead of a failure in a
worker later. Sends and batches take a fast path through DRF's validation (``_message_fields``,
``_validate_field``, ``_ValidatedDefaults``) that answers exactly as DRF's own loop does
(tests/unit/test_serializers_fast_path.py holds it to that).
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from email.utils import formataddr
from functools import partial
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import SkipField, empty, get_error_detail

from accounts.models import Client
from api.errors import template_problem_detail, validation_problem
from api.serializers.fields import (
    AddressField,
    Base64Field,
    BodyField,
    CharField,
    ContextField,
    HeadersField,
    JsonBooleanField,
    MetadataField,
    StrictSerializer,
    SubjectField,
    TagsField,
    header_text,
    header_text_validator,
    unknown_fields_error,
    unwritable,
    writable,
)
from deliveries import conf
from deliveries.header_text import header_text_problem
from deliveries.mime import attachment_headers, header_field, unstructured_may_misfold
from deliveries.models import Delivery, Priority, Suppression, Template
from deliveries.parcels import LIST_UNSUBSCRIBE_HEADERS
from deliveries.selectors import templates_by_name
from deliveries.services import AttachmentDraft, MessageDraft, Recipient
from deliveries.templating import TemplateProblem, template_render

_CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}$"
)
_CONTENT_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]{1,255}$")  # printable ASCII but < and >


class AttachmentSerializer(StrictSerializer):
    filename = CharField(max_length=255, validators=[header_text_validator])
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
        return header_text(value)  # printable, but an encoded word may decode to a line break

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
                writable(lambda: attachment_headers(**{n: attrs[n] for n in _PART_HEADERS}))
            except serializers.ValidationError as refused:
                raise serializers.ValidationError({"filename": refused.detail}) from None
        return attrs


_PART_HEADERS = ("filename", "content_type", "content_id")


class TemplateResolver(Protocol):
    """What a send finds its template with: a ``TemplateLookup`` (tests pass their own)."""

    def prefetch(self, names: Iterable[object]) -> None: ...

    def __call__(self, name: str) -> Template | None: ...


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # what DRF's SlugField accepts


class TemplateLookup:
    """Finds a client's templates by name, once per name per request (a batch reuses them)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._found: dict[str, Template | None] = {}

    def prefetch(self, names: Iterable[object]) -> None:
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
    unsubscribe = JsonBooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="One-click unsubscribe links (RFC 8058 List-Unsubscribe headers) in each "
        "recipient's copy: true, false, or null (the default): on for `low` priority only.",
    )
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
    # Exposed as `context` by get_fields(): a field declared `context` would hide
    # Serializer.context from the type checker (DRF's metaclass takes declared fields out of
    # the class, which the checker cannot know).
    template_context = ContextField(
        required=False,
        default=dict,
        help_text="Variables for the template: any JSON object (no NUL or lone surrogate in "
        "its strings).",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["context"] = fields.pop("template_context")  # in its place: declared last
        fields["from"] = fields.pop("sender")
        return fields

    def to_internal_value(self, data: Any) -> Any:
        """DRF's loop over the fields, over fields built once per thread (see _message_fields);
        in a batch, the fields a message takes from the defaults are validated once."""
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # DRF's refusal of a non-object
        fields = _message_fields()
        unknown_fields_error(data, fields.names)
        defaults: _ValidatedDefaults | None = self.context.get(_VALIDATED_DEFAULTS)
        ret: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, field in fields.writable:
            primitive = field.get_value(data)
            if defaults is not None:
                value, error = defaults.validate(self, name, field, primitive)
            else:
                value, error = _validate_field(self, name, field, primitive)
            if error is not None:
                errors[name] = error
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
            writable(lambda: header_field("Subject", value))
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
        custom = map(str.lower, attrs["headers"])
        if attrs["unsubscribe"] and LIST_UNSUBSCRIBE_HEADERS.intersection(custom):
            raise serializers.ValidationError(
                {
                    "unsubscribe": [
                        "Mailhub writes the List-Unsubscribe headers of a message with "
                        "`unsubscribe: true`: leave them out of `headers`."
                    ]
                },
                code="invalid",
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
            # Inside validation, so that a batch reports it for its own item, not the request.
            raise serializers.ValidationError(template_problem_detail(problem_)) from None
        finally:
            if batch_budget is not None:
                batch_budget.charge(time.thread_time() - started)
        subject = rendered.subject.strip()
        errors: dict[str, list[serializers.ErrorDetail]] = {}
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
        elif unstructured_may_misfold(subject) and (
            (refused := unwritable(partial(header_field, "Subject", subject))) is not None
        ):  # as validate_subject
            errors["template"] = [serializers.ErrorDetail(f"subject: {refused}", code=refused.code)]
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
        #: (name, field) of each writable field; the name is the field's field_name.
        self.writable = [(name, field) for name, field in fields.items() if not field.read_only]


_per_thread = threading.local()


def _message_fields() -> _MessageFields:
    fields = getattr(_per_thread, "message_fields", None)
    if fields is None:
        fields = _per_thread.message_fields = _MessageFields()
    return fields


#: The value of a field that is absent and has no default (DRF's SkipField).
_SKIPPED = object()


def _validate_field(
    serializer: serializers.Serializer, name: str, field: serializers.Field, primitive: Any
) -> tuple[Any, Any]:
    """One field (``name`` its field_name) as DRF's ``Serializer.to_internal_value`` validates
    it: ``(value, None)``, or ``(None, errors)``; the value is ``_SKIPPED`` when the field is left
    out."""
    validate_method = getattr(serializer, "validate_" + name, None)
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
        self,
        serializer: serializers.Serializer,
        name: str,
        field: serializers.Field,
        primitive: Any,
    ) -> tuple[Any, Any]:
        if primitive is not self.defaults.get(name, empty):
            return _validate_field(serializer, name, field, primitive)
        if name not in self._results:
            self._results[name] = _validate_field(serializer, name, field, primitive)
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
        unsubscribe=data.get("unsubscribe"),
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

    def items(self, *, templates: TemplateResolver) -> list[MessageDraft | dict]:
        """Validate each message on its own: a draft for a valid one, a problem for the rest."""
        defaults = self.validated_data["defaults"]
        messages = self.validated_data["messages"]
        names = [item.get("template") for item in messages if isinstance(item, dict)]
        templates.prefetch([defaults.get("template"), *names])
        validator = MessageValidator(
            defaults,
            context={"templates": templates, _BATCH_TEMPLATE_BUDGET: BatchTemplateBudget()},
        )
        out: list[MessageDraft | dict] = []
        for item in messages:
            if not isinstance(item, dict):
                out.append(validation_problem({"non_field_errors": [_not_an_object()]}))
                continue
            try:
                out.append(validator.draft(_merged(defaults, item)))
            except serializers.ValidationError as exc:
                out.append(validation_problem(exc.detail))
        return out


class MessageValidator:
    """Validates many messages one after the other, each exactly as
    ``MessageCreateSerializer(data=payload).is_valid()`` would, for a fraction of the cost: one
    serializer for them all, and each field a payload takes from ``defaults`` (holds the very
    object of ``defaults``, ``payload["cc"] is defaults["cc"]``) validated once for all of them
    (``_ValidatedDefaults``). Batches use it, and the ways in that turn many messages into
    payloads (the email backend): they put shared values, empty lists included, in the defaults.
    """

    def __init__(self, defaults: dict, *, context: dict | None = None) -> None:
        # run_validation() keeps nothing between messages but initial_data, which
        # _validate_template reads and which is set for each.
        self._serializer = MessageCreateSerializer(
            context={**(context or {}), _VALIDATED_DEFAULTS: _ValidatedDefaults(defaults)}
        )

    def draft(self, payload: dict) -> MessageDraft:
        """The validated message, or a ``ValidationError`` whose detail is what
        ``serializer.errors`` would hold."""
        self._serializer.initial_data = payload
        return draft_from(self._serializer.run_validation(payload))


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
        unknown_fields_error(data, [n for n, f in self.fields.items() if not f.read_only])
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


class SuppressionCreateSerializer(StrictSerializer):
    address = AddressField(help_text="The address never to send to again (stored lower-cased).")
    reason = serializers.ChoiceField(
        choices=Suppression.Reason.choices, default=Suppression.Reason.MANUAL
    )
    detail = CharField(max_length=1000, required=False, default="", allow_blank=True)
