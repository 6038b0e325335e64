"""Writes: every one in the engine is here. Import services from this package; the modules below
group them by subject: accepting mail (``accept``, its SQL in ``storing``), sending it
(``sending``), moving deliveries through the state machine (``transitions``), bounces and
complaints reported after delivery, one-click unsubscribes, suppressions, templates, what
operators do (``operator``), and retention with the history partitions it drops
(``retention``)."""

from deliveries.services.accept import (
    AttachmentDraft,
    MessageDraft,
    Recipient,
    message_accept,
    messages_accept,
)
from deliveries.services.bounces import deliveries_bounce_reported
from deliveries.services.complaints import deliveries_complain
from deliveries.services.operator import (
    CANCELLABLE,
    REQUEUEABLE,
    RETRYABLE,
    OperationResult,
    chunked,
    deliveries_cancel,
    deliveries_requeue,
    deliveries_retry_now,
    messages_resend,
)
from deliveries.services.retention import (
    HistoryPurge,
    PartitionsReport,
    history_partitions_ensure,
    history_purge,
    history_purged,
    messages_purge,
)
from deliveries.services.sending import (
    Claim,
    attempts_record,
    deliveries_claim,
    deliveries_release,
    deliveries_send,
    delivery_mark_lost,
)
from deliveries.services.suppressions import suppression_add, suppression_remove
from deliveries.services.templates import (
    TemplateExists,
    template_create,
    template_delete,
    template_update,
)
from deliveries.services.transitions import (
    Cancellation,
    Outcome,
    deliveries_settle,
    deliveries_transition,
    delivery_transition,
    message_cancel,
    messages_refresh_status,
)
from deliveries.services.unsubscribes import delivery_unsubscribe

__all__ = [
    "CANCELLABLE",
    "REQUEUEABLE",
    "RETRYABLE",
    "AttachmentDraft",
    "Cancellation",
    "Claim",
    "HistoryPurge",
    "MessageDraft",
    "OperationResult",
    "Outcome",
    "PartitionsReport",
    "Recipient",
    "TemplateExists",
    "attempts_record",
    "chunked",
    "deliveries_bounce_reported",
    "deliveries_cancel",
    "deliveries_claim",
    "deliveries_complain",
    "deliveries_release",
    "deliveries_requeue",
    "deliveries_retry_now",
    "deliveries_send",
    "deliveries_settle",
    "deliveries_transition",
    "delivery_mark_lost",
    "delivery_transition",
    "delivery_unsubscribe",
    "history_partitions_ensure",
    "history_purge",
    "history_purged",
    "message_accept",
    "message_cancel",
    "messages_accept",
    "messages_purge",
    "messages_refresh_status",
    "messages_resend",
    "suppression_add",
    "suppression_remove",
    "template_create",
    "template_delete",
    "template_update",
]
