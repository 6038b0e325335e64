"""ESP tracking webhooks: anymail's views for the relays named in ``MAILHUB_ESP_WEBHOOKS``,
mounted at ``/esp/<name>/tracking/`` (``mailhub/urls.py``).

anymail checks each request (basic auth with ``MAILHUB_ESP_WEBHOOK_SECRET``, which the settings
require with any ESP; SendGrid's ECDSA signature and Mailgun's HMAC where their keys are set),
parses the ESP's payload into normalized events and sends each on its ``tracking`` signal, which
``api.esp_events`` receives. What Mailhub adds around anymail's views: a request that fails the
check is a 403 problem (anymail answers 400), and a payload anymail cannot read (not JSON, too
deep, fields of the wrong type) is a 400 problem instead of a 500 that the ESP would retry
forever. Every event of a request is parsed before the first is applied.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from anymail.exceptions import (
    AnymailConfigurationError,
    AnymailError,
    AnymailNotSupportedWarning,
    AnymailWebhookValidationFailure,
)
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from api.errors import problem, problem_response
from deliveries import conf

logger = logging.getLogger(__name__)

# anymail 13+ warns on every SendGrid request that SendGrid is no longer officially supported
# (its maintainers have no account to test with); the webhook's format and signature are
# SendGrid's documented ones, which tests/integration/test_esp_webhooks.py checks.
warnings.filterwarnings("ignore", category=AnymailNotSupportedWarning)

# What reading a hostile payload can raise inside anymail: bad JSON, nesting past the
# recursion limit, a number where an object was expected, a missing key, bytes that are no text.
_UNREADABLE = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
    OverflowError,
    AnymailError,
    AnymailConfigurationError,
)


class _Unreadable(Exception):
    pass


class _Guarded:
    """Mixed in before an anymail tracking view: see the module's doc."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            request.body  # noqa: B018 (read first: a body over the size limit raises here)
            response: HttpResponse = super().post(request, *args, **kwargs)  # type: ignore[misc]
        except AnymailWebhookValidationFailure as exc:
            logger.warning("ESP webhook %s refused: %s", request.path, exc)
            return _problem(403, "esp_event_refused", "The credentials or signature are wrong.")
        except (_Unreadable, SuspiciousOperation) as exc:
            logger.warning("ESP webhook %s: unreadable payload: %s", request.path, exc)
            return _problem(400, "esp_event_unreadable", "The payload is not an event to read.")
        return response

    def run_validators(self, request: HttpRequest) -> None:
        try:
            super().run_validators(request)  # type: ignore[misc]
        except AnymailWebhookValidationFailure:
            raise
        except _UNREADABLE as exc:
            raise _Unreadable(_describe(exc)) from exc

    def parse_events(self, request: HttpRequest) -> list[Any]:
        try:
            events: list[Any] = super().parse_events(request)  # type: ignore[misc]
        except AnymailWebhookValidationFailure:
            raise
        except _UNREADABLE as exc:
            raise _Unreadable(_describe(exc)) from exc
        return events


def _problem(status_code: int, code: str, detail: str) -> HttpResponse:
    return problem_response(problem(status_code=status_code, code=code, detail=detail))


def _describe(exc: BaseException) -> str:
    # An exception's words may quote the payload (anymail's do): a type and a short head only.
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class SesTrackingView(_Guarded, AmazonSESTrackingWebhookView):
    pass


class SendGridTrackingView(_Guarded, SendGridTrackingWebhookView):
    pass


class MailgunTrackingView(_Guarded, MailgunTrackingWebhookView):
    pass


class PostmarkTrackingView(_Guarded, PostmarkTrackingWebhookView):
    pass


VIEWS: dict[str, type[_Guarded]] = {
    "amazon_ses": SesTrackingView,
    "sendgrid": SendGridTrackingView,
    "mailgun": MailgunTrackingView,
    "postmark": PostmarkTrackingView,
}


def urlpatterns_for(esps: list[str]) -> list[URLPattern]:
    return [
        path(f"{esp}/tracking/", VIEWS[esp].as_view(), name=f"esp-{esp}-tracking")  # type: ignore[attr-defined]
        for esp in esps
    ]


urlpatterns = urlpatterns_for(conf.esp_webhooks())
