"""``Mailhub``: the synchronous client (``AsyncMailhub`` in ``mailhub_client.aio`` is the same
for asyncio)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, cast

import httpx

from mailhub_client import _core
from mailhub_client._core import DEFAULT_TIMEOUT, Call, Endpoint, Exchange
from mailhub_client.attachments import Attachment
from mailhub_client.retry import RetryPolicy
from mailhub_client.types import (
    BatchResult,
    CancelResult,
    EventDocument,
    EventPage,
    EventType,
    MessageAccepted,
    MessageDetail,
    MessageEvent,
    MessageRequest,
    MessageStatus,
    MessageSummary,
    Mode,
    Priority,
    Suppression,
    SuppressionReason,
    Template,
    Webhook,
    WebhookAttempt,
    WebhookCreated,
)

__all__ = ["Mailhub"]


class Mailhub:
    """A client of one Mailhub, as one API key's client.

        with Mailhub("https://mailhub.example.com", api_key="mh_...") as mailhub:
            accepted = mailhub.send(sender="Shop <no-reply@shop.example>",
                                    to=["ann@example.com"], subject="Hi", text="Hello")

    Every call retries connection errors, ``429`` and ``503`` as ``retry`` says (honouring
    ``Retry-After``); every send, batch, cancel, template and suppression create carries an
    ``Idempotency-Key`` (its own unless given) that each of its tries repeats: a retry never
    sends twice. Errors are ``mailhub_client.errors.MailhubError``s. ``http_client`` is an
    ``httpx.Client`` of your own (proxies, certificates, event hooks; its own timeout then
    applies, not ``timeout``), which you close.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._endpoint = Endpoint.of(url, api_key, retry)
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self.templates = Templates(self)
        self.suppressions = Suppressions(self)
        self.webhooks = Webhooks(self)

    # -- plumbing -------------------------------------------------------------------------------

    def _call(self, call: Call) -> Any:
        exchange = Exchange(call, self._endpoint)
        while True:
            try:
                response = self._http.send(exchange.request(self._http))
            except httpx.TransportError as exc:
                delay = exchange.after_error(exc)
            else:
                retry_in = exchange.after_response(response)
                if retry_in is None:
                    return exchange.result(response)
                delay = retry_in
            self._sleep(delay)

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds)

    def _pages(self, call: Call | None) -> Iterator[Any]:
        while call is not None:
            page = self._call(call)
            yield from page["results"]
            call = _core.next_page(call, page)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Mailhub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- messages -------------------------------------------------------------------------------

    def send(
        self,
        *,
        sender: str,
        to: Iterable[str] | None = None,
        cc: Iterable[str] | None = None,
        bcc: Iterable[str] | None = None,
        reply_to: Iterable[str] | None = None,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        headers: Mapping[str, str] | None = None,
        priority: Priority | None = None,
        unsubscribe: bool | None = None,
        send_at: datetime | str | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        attachments: Iterable[Attachment | Mapping[str, Any]] | None = None,
        template: str | None = None,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> MessageAccepted:
        """Send one message (``POST /api/v1/messages``): ``sender`` is its From (``"Name
        <addr>"`` or ``"addr"``); ``template`` and ``context`` instead of subject and bodies;
        ``send_at`` schedules it. Answers its ``id`` and ``status``."""
        message = _core.message_fields(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            reply_to=reply_to,
            subject=subject,
            text=text,
            html=html,
            headers=headers,
            priority=priority,
            unsubscribe=unsubscribe,
            send_at=send_at,
            tags=tags,
            metadata=metadata,
            attachments=attachments,
            template=template,
            context=context,
        )
        return cast(MessageAccepted, self._call(_core.send(message, idempotency_key)))

    def send_batch(
        self,
        messages: Iterable[MessageRequest],
        *,
        defaults: MessageRequest | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Send up to 500 messages at once (``POST /api/v1/messages/batch``), each in the API's
        own field names (``"from"``, ``"to"``, ...); ``defaults`` gives what every message has
        unless it gives its own. Refused messages do not raise: their result has an ``error``."""
        return cast(BatchResult, self._call(_core.send_batch(messages, defaults, idempotency_key)))

    def get(self, message_id: str) -> MessageDetail:
        """A message, its recipients and every attempt."""
        return cast(MessageDetail, self._call(_core.message_get(message_id)))

    def cancel(self, message_id: str, *, idempotency_key: str | None = None) -> CancelResult:
        """Cancel what of the message is not yet sent."""
        return cast(CancelResult, self._call(_core.message_cancel(message_id, idempotency_key)))

    def message_events(self, message_id: str) -> list[MessageEvent]:
        """The message's history, oldest first."""
        return cast(list[MessageEvent], self._call(_core.message_events(message_id))["results"])

    def messages(
        self,
        *,
        mode: Mode | None = None,
        status: Iterable[MessageStatus] | None = None,
        priority: Iterable[Priority] | None = None,
        recipient: str | None = None,
        tag: Iterable[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[MessageSummary]:
        """Every message that matches (all filters at once), newest first, fetched a page at a
        time as you iterate. ``mode`` says whose: ``"live"`` keys', ``"test"``-mode keys' or
        ``"all"``; without it, the mail of the key's own mode."""
        call = _core.messages_list(
            mode=mode,
            status=status,
            priority=priority,
            recipient=recipient,
            tag=tag,
            metadata=metadata,
            created_after=created_after,
            created_before=created_before,
            page_size=page_size,
        )
        return self._pages(call)

    # -- the event log --------------------------------------------------------------------------

    def events(
        self,
        *,
        mode: Mode | None = None,
        type: Iterable[EventType] | None = None,
        message: str | None = None,
        recipient: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        order: Literal["newest", "oldest"] | None = None,
        page_size: int | None = None,
    ) -> Iterator[EventDocument]:
        """Every event that matches (``GET /api/v1/events``), newest first (``order="oldest"``
        reads forward), fetched a page at a time as you iterate. ``mode`` as for ``messages``:
        the events of the key's own mode's mail unless given."""
        call = _core.events_list(
            mode=mode,
            type=type,
            message=message,
            recipient=recipient,
            created_after=created_after,
            created_before=created_before,
            order=order,
            page_size=page_size,
        )
        return self._pages(call)

    def events_page(
        self,
        *,
        cursor: str | None = None,
        mode: Mode | None = None,
        type: Iterable[EventType] | None = None,
        message: str | None = None,
        recipient: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        order: Literal["newest", "oldest"] | None = None,
        page_size: int | None = None,
    ) -> EventPage:
        """One page of the event log, from ``cursor`` (a page's ``cursor``) or from the start;
        give the same filters with a cursor as for the page that gave it."""
        call = _core.events_list(
            mode=mode,
            type=type,
            message=message,
            recipient=recipient,
            created_after=created_after,
            created_before=created_before,
            order=order,
            page_size=page_size,
            cursor=cursor,
        )
        page = self._call(call)
        return EventPage(page["results"], _core.cursor_of(page))


class Templates:
    """``mailhub.templates``: ``/api/v1/templates``."""

    def __init__(self, mailhub: Mailhub) -> None:
        self._mailhub = mailhub

    def create(
        self,
        name: str,
        *,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        idempotency_key: str | None = None,
    ) -> Template:
        """A new template (Django template syntax in each part); ``Conflict`` if ``name`` is
        taken."""
        call = _core.template_create(
            name, subject=subject, text=text, html=html, idempotency_key=idempotency_key
        )
        return cast(Template, self._mailhub._call(call))

    def get(self, name: str) -> Template:
        return cast(Template, self._mailhub._call(_core.template_get(name)))

    def update(
        self,
        name: str,
        *,
        new_name: str | None = None,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
    ) -> Template:
        """Change the parts given (``""`` empties one); ``new_name`` renames it."""
        call = _core.template_update(name, new_name=new_name, subject=subject, text=text, html=html)
        return cast(Template, self._mailhub._call(call))

    def delete(self, name: str) -> None:
        self._mailhub._call(_core.template_delete(name))

    def list(self, *, page_size: int | None = None) -> Iterator[Template]:
        """Every template, by name."""
        return self._mailhub._pages(_core.templates_list(page_size=page_size))


class Suppressions:
    """``mailhub.suppressions``: ``/api/v1/suppressions``."""

    def __init__(self, mailhub: Mailhub) -> None:
        self._mailhub = mailhub

    def add(
        self,
        address: str,
        *,
        reason: SuppressionReason | None = None,
        detail: str | None = None,
        idempotency_key: str | None = None,
    ) -> Suppression:
        """Suppress ``address`` (reason ``manual`` unless given); an address suppressed
        already keeps its first reason."""
        call = _core.suppression_add(
            address, reason=reason, detail=detail, idempotency_key=idempotency_key
        )
        return cast(Suppression, self._mailhub._call(call))

    def get(self, address: str) -> Suppression:
        """Whether and why ``address`` is suppressed; ``NotFound`` if it is not."""
        return cast(Suppression, self._mailhub._call(_core.suppression_get(address)))

    def remove(self, address: str) -> None:
        """Allow mail to ``address`` again; ``NotFound`` if it was not suppressed."""
        self._mailhub._call(_core.suppression_remove(address))

    def list(
        self, *, reason: Iterable[SuppressionReason] | None = None, page_size: int | None = None
    ) -> Iterator[Suppression]:
        """Every suppressed address, newest first."""
        call = _core.suppressions_list(reason=reason, page_size=page_size)
        return self._mailhub._pages(call)


class Webhooks:
    """``mailhub.webhooks``: ``/api/v1/webhooks``. (To check a webhook request's signature,
    see ``mailhub_client.webhooks.verify``.)"""

    def __init__(self, mailhub: Mailhub) -> None:
        self._mailhub = mailhub

    def create(
        self,
        url: str,
        *,
        event_types: Iterable[EventType] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookCreated:
        """A new endpoint for events of ``event_types`` (all unless given). The answer's
        ``secret`` signs its requests and is never shown again: store it.

        Not retried once it may have reached Mailhub (its webhooks take no Idempotency-Key)."""
        call = _core.webhook_create(
            url, event_types=event_types, description=description, enabled=enabled
        )
        return cast(WebhookCreated, self._mailhub._call(call))

    def get(self, webhook_id: str) -> Webhook:
        return cast(Webhook, self._mailhub._call(_core.webhook_get(webhook_id)))

    def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        event_types: Iterable[EventType] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        """Change what is given; ``enabled=True`` re-enables it and forgets past failures."""
        call = _core.webhook_update(
            webhook_id, url=url, event_types=event_types, description=description, enabled=enabled
        )
        return cast(Webhook, self._mailhub._call(call))

    def delete(self, webhook_id: str) -> None:
        self._mailhub._call(_core.webhook_delete(webhook_id))

    def list(self) -> builtins.list[Webhook]:
        return cast(builtins.list[Webhook], self._mailhub._call(_core.webhooks_list())["results"])

    def attempts(
        self, webhook_id: str, *, page_size: int | None = None
    ) -> Iterator[WebhookAttempt]:
        """The endpoint's request log, newest first."""
        call = _core.webhook_attempts(webhook_id, page_size=page_size)
        return self._mailhub._pages(call)
