"""The shapes of what Mailhub answers (and of a message in a batch), as ``TypedDict``s: the
decoded JSON itself, typed for the checker, with nothing converted. Times are ISO 8601 strings,
ids are UUID strings, exactly as the API's OpenAPI schema (``/api/schema/``) gives them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union

if TYPE_CHECKING:
    from mailhub_client.attachments import Attachment

MessageStatus = Literal[
    "scheduled",
    "queued",
    "sending",
    "deferred",
    "delivered",
    "partially_delivered",
    "bounced",
    "failed",
    "cancelled",
    "suppressed",
]
DeliveryStatus = Literal[
    "scheduled",
    "queued",
    "sending",
    "deferred",
    "delivered",
    "bounced",
    "failed",
    "cancelled",
    "suppressed",
]
EventType = Literal[
    "accepted",
    "scheduled",
    "delivered",
    "deferred",
    "bounced",
    "failed",
    "suppressed",
    "cancelled",
    "complained",
    "unsubscribed",
]
"""``complained``: the recipient reported delivered mail as spam; the delivery stays
``delivered``, and the address is suppressed (``complaint``). ``unsubscribed``: the recipient
used the mail's one-click unsubscribe link; the address is suppressed (``unsubscribe``)."""
AttemptOutcome = Literal["pending", "delivered", "deferred", "bounced", "failed", "lost"]
Priority = Literal["high", "normal", "low"]
SuppressionReason = Literal["manual", "unsubscribe", "complaint", "hard_bounce"]
Mode = Literal["live", "test", "all"]
"""Whose mail a list shows (``messages(mode=...)``, ``events(mode=...)``): mail sent with live
keys, with test-mode keys, or both. Without it, the mode of the key making the request."""
DomainState = Literal["pending", "verified", "failing", "suspended"]
"""A sending domain's state: mail may come From: it when ``verified``, or ``failing`` until its
``suspends_at``."""
DkimAlgorithm = Literal["rsa-sha256", "ed25519-sha256"]
DkimKeyState = Literal["pending", "active", "retired"]
FINAL_MESSAGE_STATUSES: frozenset[str] = frozenset(
    {"delivered", "partially_delivered", "bounced", "failed", "cancelled", "suppressed"}
)
"""A message in one of these statuses will not change any more (but for a late bounce)."""


# -- errors -------------------------------------------------------------------------------------


class FieldError(TypedDict):
    field: str | None
    code: str
    message: str


class Problem(TypedDict, total=False):
    """RFC 9457 problem details, as Mailhub writes them."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    errors: list[FieldError]
    retry_after: float | None
    request_id: str


# -- sending --------------------------------------------------------------------------------------


class AttachmentRequest(TypedDict, total=False):
    filename: str
    content_type: str
    content: str  # base64
    disposition: Literal["attachment", "inline"]
    content_id: str


# ``from`` is a Python keyword, hence the functional form.
MessageRequest = TypedDict(
    "MessageRequest",
    {
        "from": str,
        "to": Sequence[str],
        "cc": Sequence[str],
        "bcc": Sequence[str],
        "reply_to": Sequence[str],
        "subject": str,
        "text": str,
        "html": str,
        "headers": Mapping[str, str],
        "priority": Priority,
        "unsubscribe": bool | None,
        "send_at": Any,  # an ISO 8601 string or a datetime
        "tags": Sequence[str],
        "metadata": Mapping[str, Any],
        "attachments": Sequence[Union["Attachment", AttachmentRequest]],
        "template": str,
        "context": Mapping[str, Any],
    },
    total=False,
)
"""One message of ``send_batch`` (and its ``defaults``), in the API's own field names."""


class MessageAccepted(TypedDict):
    id: str
    status: MessageStatus
    test_mode: bool  # sent with a test-mode key: settled by the simulator, never sent


class _BatchItemResult(TypedDict):
    index: int


class BatchItemResult(_BatchItemResult, total=False):
    """``id``, ``status`` and ``test_mode`` when the message was accepted, ``error`` (a
    problem) when not."""

    id: str
    status: MessageStatus
    test_mode: bool
    error: Problem


class BatchResult(TypedDict):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


class CancelResult(TypedDict):
    id: str
    status: MessageStatus
    cancelled: list[str]
    cancel_requested: list[str]


# -- reading --------------------------------------------------------------------------------------


class Attempt(TypedDict):
    number: int
    started_at: str
    duration_ms: int | None
    smtp_code: int | None
    enhanced_code: str
    reply: str
    outcome: AttemptOutcome
    worker: str


class Delivery(TypedDict):
    address: str
    name: str
    kind: Literal["to", "cc", "bcc"]
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: str | None
    last_code: int | None
    last_enhanced_code: str
    last_reply: str
    delivered_at: str | None
    attempts: list[Attempt]


class AttachmentInfo(TypedDict):
    filename: str
    content_type: str
    size: int
    content_id: str


class MessageDetail(TypedDict):
    id: str
    status: MessageStatus
    test_mode: bool
    priority: Priority
    sender: str
    reply_to: list[str]
    subject: str
    text_body: str
    html_body: str
    headers: dict[str, str]
    tags: list[str]
    metadata: dict[str, Any]
    template_name: str
    message_id: str
    created_at: str
    send_at: str | None
    expires_at: str
    attachments: list[AttachmentInfo]
    recipients: list[Delivery]


class RecipientSummary(TypedDict):
    address: str
    kind: Literal["to", "cc", "bcc"]
    status: DeliveryStatus


class MessageSummary(TypedDict):
    id: str
    status: MessageStatus
    test_mode: bool
    priority: Priority
    sender: str
    subject: str
    tags: list[str]
    metadata: dict[str, Any]
    template_name: str
    created_at: str
    send_at: str | None
    recipients: list[RecipientSummary]


class MessageEvent(TypedDict):
    """One entry of a message's history (``message_events``)."""

    id: str
    type: EventType
    recipient: str
    attempt: int
    smtp_code: int | None
    enhanced_code: str
    reply: str
    next_attempt_at: str | None
    created_at: str
    test_mode: bool  # an event of test-mode mail (settled by the simulator, never sent)


class EventDocument(MessageEvent):
    """An event of the event log (``events``), the same document webhooks carry."""

    message_id: str
    tags: list[str]
    metadata: dict[str, Any]


class WebhookPayload(TypedDict):
    """The body of a webhook request: the events of live and test-mode mail alike (each
    says which in ``test_mode``)."""

    events: list[EventDocument]


# -- templates, suppressions, webhooks ------------------------------------------------------------


class Template(TypedDict):
    name: str
    subject: str
    text: str
    html: str
    created_at: str
    updated_at: str


class Suppression(TypedDict):
    address: str
    reason: SuppressionReason
    detail: str
    created_at: str


class Webhook(TypedDict):
    id: str
    url: str
    event_types: list[EventType]
    description: str
    enabled: bool
    disabled_at: str | None
    disabled_reason: str
    consecutive_failures: int
    failing_since: str | None
    retry_at: str | None
    last_success_at: str | None
    last_failure_at: str | None
    last_error: str
    created_at: str
    updated_at: str


class WebhookCreated(Webhook):
    """A new endpoint: the only answer that shows its signing ``secret``. Store it."""

    secret: str


class WebhookAttempt(TypedDict):
    id: int
    started_at: str
    duration_ms: int
    status_code: int | None
    succeeded: bool
    error: str
    response_excerpt: str
    event_ids: list[str]


@dataclass(frozen=True)
class EventPage:
    """One page of the event log: ``results``, and ``cursor`` to read the next page from
    (``None`` on the last page). Keep the cursor to resume reading later."""

    results: list[EventDocument]
    cursor: str | None


class DkimKey(TypedDict):
    """A DKIM key of a sending domain (never its private half)."""

    selector: str
    algorithm: DkimAlgorithm
    state: DkimKeyState
    record_name: str
    record_value: str
    created_at: str
    activated_at: str | None
    retired_at: str | None


class DomainRecord(TypedDict):
    """A DNS record to publish for a sending domain."""

    purpose: Literal["dkim", "spf", "dmarc", "bounce"]
    type: Literal["TXT", "MX"]
    name: str
    value: str
    required: bool
    publisher: Literal["client", "operator"]
    selector: str
    note: str


class DomainCheck(TypedDict):
    """What the last check found of one record; ``ok`` is None when DNS did not answer."""

    ok: bool | None
    detail: str
    required: bool
    found: list[str]
    policy: str


class Domain(TypedDict):
    """A sending domain, its keys, the records to publish and what the last check found
    (``checks``, by ``dkim:<selector>``, ``spf``, ``dmarc``, ``bounce``)."""

    id: int
    domain: str
    allow_subdomains: bool
    state: DomainState
    usable: bool
    verified_locally: bool
    verified_at: str | None
    last_checked_at: str | None
    failing_since: str | None
    suspends_at: str | None
    created_at: str
    dkim_keys: list[DkimKey]
    records: list[DomainRecord]
    checks: dict[str, DomainCheck]
