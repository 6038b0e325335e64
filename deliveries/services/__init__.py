"""Writes. Import services from here; the modules below group them by the path of a message."""

from deliveries.services.accept import (
    AttachmentDraft,
    MessageDraft,
    Recipient,
    message_accept,
    messages_accept,
    suppression_add,
)
from deliveries.services.sending import (
    Claim,
    attempts_record,
    deliveries_claim,
    deliveries_release,
    deliveries_send,
    delivery_mark_lost,
)
from deliveries.services.transitions import (
    EVENT_FOR_STATUS,
    Cancellation,
    Outcome,
    deliveries_settle,
    deliveries_transition,
    delivery_transition,
    message_cancel,
    messages_refresh_status,
)

__all__ = [
    "EVENT_FOR_STATUS",
    "AttachmentDraft",
    "Cancellation",
    "Claim",
    "MessageDraft",
    "Outcome",
    "Recipient",
    "attempts_record",
    "deliveries_claim",
    "deliveries_release",
    "deliveries_send",
    "deliveries_settle",
    "deliveries_transition",
    "delivery_mark_lost",
    "delivery_transition",
    "message_accept",
    "message_cancel",
    "messages_accept",
    "messages_refresh_status",
    "suppression_add",
]
