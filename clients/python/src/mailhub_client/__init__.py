"""Python client for Mailhub's REST API.

    from mailhub_client import Mailhub

    with Mailhub("https://mailhub.example.com", api_key="mh_...") as mailhub:
        accepted = mailhub.send(sender="Shop <no-reply@shop.example>", to=["ann@example.com"],
                                subject="Your code", text="Your code is 123456.")

``AsyncMailhub`` is the same for asyncio. Errors are ``mailhub_client.errors``; the Django email
backend is ``mailhub_client.django.EmailBackend``; webhook signatures are checked by
``mailhub_client.webhooks.verify``. See the package's README for the whole tour.
"""

from mailhub_client._core import VERSION as __version__
from mailhub_client.aio import AsyncMailhub
from mailhub_client.attachments import Attachment
from mailhub_client.client import Mailhub
from mailhub_client.errors import (
    AuthenticationError,
    Conflict,
    IdempotencyKeyReused,
    MailhubError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    ServerError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
)
from mailhub_client.retry import NO_RETRY, RetryPolicy
from mailhub_client.types import FINAL_MESSAGE_STATUSES, EventPage

__all__ = [
    "FINAL_MESSAGE_STATUSES",
    "NO_RETRY",
    "AsyncMailhub",
    "Attachment",
    "AuthenticationError",
    "Conflict",
    "EventPage",
    "IdempotencyKeyReused",
    "Mailhub",
    "MailhubError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTooLarge",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "ValidationError",
    "__version__",
]
