"""The request/answer core that ``Mailhub`` and ``AsyncMailhub`` share: what each API call
sends (``Call`` and the builders below), and one logical call's tries (``Exchange``): which
request to send, whether an answer or a failure is worth another try and after how long, and
what the final answer means. No I/O here: the two clients send and sleep, each its own way."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from mailhub_client.attachments import Attachment
from mailhub_client.errors import MailhubError, TransportError, error_from_answer
from mailhub_client.retry import RetryPolicy, parse_retry_after
from mailhub_client.types import MessageRequest

logger = logging.getLogger("mailhub_client")

VERSION = "0.1.0"
USER_AGENT = f"mailhub-client-python/{VERSION} httpx/{httpx.__version__}"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Seconds for each try (connect, send, read), unless the client is given another.
DEFAULT_TIMEOUT = 30.0

#: A query parameter's value: lists are repeated parameters (``?tag=a&tag=b``).
ParamValue = str | int | datetime | date | Iterable[str] | None
Params = tuple[tuple[str, str], ...]

# Failures after which the request surely never reached Mailhub: safe to send again, always.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures worth another try; the others (a bad URL, a local protocol error) would fail again.
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def new_idempotency_key() -> str:
    """A key for one logical request, reused by each of its tries."""
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class Call:
    """One API call: ``path`` is relative to ``/api/v1/``."""

    method: str
    path: str
    params: Params = ()
    body: Any = None
    idempotency_key: str | None = None
    #: Sending it twice does what sending it once does: a read, a PUT, a DELETE, a PATCH (it
    #: sets fields to given values) or a POST that carries an Idempotency-Key.
    replayable: bool = False


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a client sends its calls, and as whom."""

    base_url: str
    api_key: str
    retry: RetryPolicy

    @classmethod
    def of(cls, url: str, api_key: str, retry: RetryPolicy | None) -> Endpoint:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Mailhub's URL must be http(s)://..., not {url!r}")
        if not api_key:
            raise ValueError("an API key is needed (Mailhub's admin or create_api_key gives one)")
        return cls(url.rstrip("/") + "/api/v1/", api_key, retry or RetryPolicy())


class Exchange:
    """One logical call through its tries. For each try: ``request()``, then
    ``after_response()`` or ``after_error()``, which tell how long to wait before the next try
    (or raise, or say the answer is final: then ``result()``)."""

    def __init__(
        self,
        call: Call,
        endpoint: Endpoint,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.call = call
        self.endpoint = endpoint
        self.attempt = 0
        self._clock = clock
        self._rng = rng
        self._started = clock()
        # An earlier try may have done the work (it got a 503, or lost its connection after
        # sending): a DELETE then finding nothing to delete has succeeded.
        self._maybe_done = False

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        self.attempt += 1
        call = self.call
        headers = {
            "Authorization": f"Bearer {self.endpoint.api_key}",
            "Accept": "application/json, application/problem+json",
            "User-Agent": USER_AGENT,
        }
        content = None
        if call.body is not None:
            headers["Content-Type"] = "application/json"
            content = encode_json(call.body)
        if call.idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = call.idempotency_key
        return http.build_request(
            call.method,
            self.endpoint.base_url + call.path,
            params=list(call.params),
            content=content,
            headers=headers,
        )

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or ``None``: this answer is final."""
        status = response.status_code
        # A 429 is the throttle's refusal before any work; any other retried status may come
        # after the work was done (a 503 for a COMMIT whose outcome is unknown).
        if status not in self.endpoint.retry.statuses or not (
            status == 429 or self.call.replayable
        ):
            return None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        delay = self._delay(retry_after)
        if delay is not None:
            self._maybe_done = self._maybe_done or status != 429
            self._log_retry(delay, f"{status} {_code_of(response)}")
        return delay

    def after_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before trying again after ``exc``; raises ``TransportError`` when
        it is not worth another try, or is not safe to send again, or the budget is spent."""
        never_sent = isinstance(exc, _NEVER_SENT)
        if isinstance(exc, _TRANSIENT) and (never_sent or self.call.replayable):
            delay = self._delay(None)
            if delay is not None:
                self._maybe_done = self._maybe_done or not never_sent
                self._log_retry(delay, f"{type(exc).__name__}: {exc}")
                return delay
        raise TransportError(
            f"{self.call.method} {self.endpoint.base_url}{self.call.path} failed after "
            f"{self.attempt} attempt(s): {type(exc).__name__}: {exc}",
            code="transport_error",
        ) from exc

    def result(self, response: httpx.Response) -> Any:
        """The decoded answer of a 2xx (``None`` for a 204), or the answer's exception."""
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise MailhubError(
                    f"a {status} answer that is not JSON: {response.text[:200]!r}",
                    status=status,
                    code="unexpected_answer",
                ) from None
        if status == 404 and self.call.method == "DELETE" and self._maybe_done:
            return None
        raise error_from_answer(
            status,
            response.content,
            headers=response.headers,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _delay(self, retry_after: float | None) -> float | None:
        return self.endpoint.retry.delay(
            attempt=self.attempt,
            elapsed=self._clock() - self._started,
            retry_after=retry_after,
            rng=self._rng,
        )

    def _log_retry(self, delay: float, why: str) -> None:
        logger.info(
            "Mailhub %s %s: %s; trying again in %.2f s (attempt %d of %d)",
            self.call.method,
            self.call.path,
            why,
            delay,
            self.attempt + 1,
            self.endpoint.retry.attempts,
        )


def _code_of(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return ""
    return str(document.get("code", "")) if isinstance(document, dict) else ""


# -- encoding -----------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Attachment):
        return value.to_json()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (tuple, frozenset, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def encode_json(body: object) -> bytes:
    return json.dumps(body, default=_json_default, ensure_ascii=False).encode("utf-8")


def params(**values: ParamValue) -> Params:
    """Query parameters, those given: a list is repeated, a time is ISO 8601."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, (datetime, date)):
            pairs.append((name, value.isoformat()))
        elif isinstance(value, (str, int)):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(item)) for item in value)
    return tuple(pairs)


def segment(value: object) -> str:
    """A value as one path segment (an address keeps its ``@``, anything else is escaped)."""
    return quote(str(value), safe="@")


def next_page(call: Call, page: Mapping[str, Any]) -> Call | None:
    """The call for the page after ``page``: the query of its ``next`` link, on our own URL
    (the link's host is the one Mailhub saw, which behind a proxy may not be ours)."""
    link = page.get("next")
    if not link:
        return None
    query = tuple(parse_qsl(urlsplit(str(link)).query, keep_blank_values=True))
    return dataclasses.replace(call, params=query)


def cursor_of(page: Mapping[str, Any]) -> str | None:
    """The ``cursor`` of a page's ``next`` link: where the next page starts."""
    link = page.get("next")
    if not link:
        return None
    return dict(parse_qsl(urlsplit(str(link)).query)).get("cursor")


def given(**fields: Any) -> dict[str, Any]:
    """The fields that are not ``None``: what a create or an update sends."""
    return {name: value for name, value in fields.items() if value is not None}


# -- the calls ----------------------------------------------------------------------------------


def message_fields(
    *,
    sender: str,
    to: Iterable[str] | None,
    cc: Iterable[str] | None,
    bcc: Iterable[str] | None,
    reply_to: Iterable[str] | None,
    subject: str | None,
    text: str | None,
    html: str | None,
    headers: Mapping[str, str] | None,
    priority: str | None,
    unsubscribe: bool | None,
    send_at: datetime | str | None,
    tags: Iterable[str] | None,
    metadata: Mapping[str, Any] | None,
    attachments: Iterable[Attachment | Mapping[str, Any]] | None,
    template: str | None,
    context: Mapping[str, Any] | None,
) -> MessageRequest:
    fields = given(
        to=listed(to),
        cc=listed(cc),
        bcc=listed(bcc),
        reply_to=listed(reply_to),
        subject=subject,
        text=text,
        html=html,
        headers=dict(headers) if headers is not None else None,
        priority=priority,
        unsubscribe=unsubscribe,
        send_at=send_at,
        tags=listed(tags),
        metadata=dict(metadata) if metadata is not None else None,
        attachments=listed(attachments),
        template=template,
        context=dict(context) if context is not None else None,
    )
    message: MessageRequest = {"from": sender}
    message.update(fields)  # type: ignore[typeddict-item]  # the names above are its keys
    return message


def listed(values: Iterable[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    if isinstance(values, str):
        return [values]  # to="ann@example.com" means one recipient, not 16 letters
    return list(values)


def send(message: MessageRequest, idempotency_key: str | None) -> Call:
    return Call(
        "POST",
        "messages",
        body=message,
        idempotency_key=idempotency_key or new_idempotency_key(),
        replayable=True,
    )


def send_batch(
    messages: Iterable[MessageRequest],
    defaults: MessageRequest | None,
    idempotency_key: str | None,
) -> Call:
    body: dict[str, Any] = {"messages": list(messages)}
    if defaults is not None:
        body["defaults"] = defaults
    return Call(
        "POST",
        "messages/batch",
        body=body,
        idempotency_key=idempotency_key or new_idempotency_key(),
        replayable=True,
    )


def message_get(message_id: object) -> Call:
    return Call("GET", f"messages/{segment(message_id)}", replayable=True)


def message_cancel(message_id: object, idempotency_key: str | None) -> Call:
    return Call(
        "POST",
        f"messages/{segment(message_id)}/cancel",
        idempotency_key=idempotency_key or new_idempotency_key(),
        replayable=True,
    )


def message_events(message_id: object) -> Call:
    return Call("GET", f"messages/{segment(message_id)}/events", replayable=True)


def messages_list(
    *,
    mode: str | None,
    status: Iterable[str] | None,
    priority: Iterable[str] | None,
    recipient: str | None,
    tag: Iterable[str] | None,
    metadata: Mapping[str, str] | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
    page_size: int | None,
) -> Call:
    query = params(
        mode=mode,
        status=status,
        priority=priority,
        recipient=recipient,
        tag=tag,
        metadata=[f"{key}:{value}" for key, value in metadata.items()] if metadata else None,
        created_after=created_after,
        created_before=created_before,
        limit=page_size,
    )
    return Call("GET", "messages", params=query, replayable=True)


def events_list(
    *,
    mode: str | None,
    type: Iterable[str] | None,
    message: str | None,
    recipient: str | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
    order: str | None,
    page_size: int | None,
    cursor: str | None = None,
) -> Call:
    query = params(
        mode=mode,
        type=type,
        message=message,
        recipient=recipient,
        created_after=created_after,
        created_before=created_before,
        order=order,
        limit=page_size,
        cursor=cursor,
    )
    return Call("GET", "events", params=query, replayable=True)


def template_create(
    name: str,
    *,
    subject: str | None,
    text: str | None,
    html: str | None,
    idempotency_key: str | None,
) -> Call:
    return Call(
        "POST",
        "templates",
        body={"name": name, **given(subject=subject, text=text, html=html)},
        idempotency_key=idempotency_key or new_idempotency_key(),
        replayable=True,
    )


def template_get(name: str) -> Call:
    return Call("GET", f"templates/{segment(name)}", replayable=True)


def template_update(
    name: str, *, new_name: str | None, subject: str | None, text: str | None, html: str | None
) -> Call:
    changes = given(name=new_name, subject=subject, text=text, html=html)
    return Call("PATCH", f"templates/{segment(name)}", body=changes, replayable=True)


def template_delete(name: str) -> Call:
    return Call("DELETE", f"templates/{segment(name)}", replayable=True)


def templates_list(*, page_size: int | None) -> Call:
    return Call("GET", "templates", params=params(limit=page_size), replayable=True)


def suppression_add(
    address: str, *, reason: str | None, detail: str | None, idempotency_key: str | None
) -> Call:
    return Call(
        "POST",
        "suppressions",
        body={"address": address, **given(reason=reason, detail=detail)},
        idempotency_key=idempotency_key or new_idempotency_key(),
        replayable=True,
    )


def suppression_get(address: str) -> Call:
    return Call("GET", f"suppressions/{segment(address)}", replayable=True)


def suppression_remove(address: str) -> Call:
    return Call("DELETE", f"suppressions/{segment(address)}", replayable=True)


def suppressions_list(*, reason: Iterable[str] | None, page_size: int | None) -> Call:
    query = params(reason=reason, limit=page_size)
    return Call("GET", "suppressions", params=query, replayable=True)


def webhook_fields(
    *,
    url: str | None,
    event_types: Iterable[str] | None,
    description: str | None,
    enabled: bool | None,
) -> dict[str, Any]:
    return given(url=url, event_types=listed(event_types), description=description, enabled=enabled)


def webhook_create(
    url: str, *, event_types: Iterable[str] | None, description: str | None, enabled: bool | None
) -> Call:
    fields = webhook_fields(
        url=url, event_types=event_types, description=description, enabled=enabled
    )
    # Mailhub's webhook endpoint takes no Idempotency-Key: a create that may have reached it (a
    # 503, a connection lost after sending) is not sent again, lest it make two endpoints.
    return Call("POST", "webhooks", body=fields, replayable=False)


def webhook_get(webhook_id: object) -> Call:
    return Call("GET", f"webhooks/{segment(webhook_id)}", replayable=True)


def webhook_update(
    webhook_id: object,
    *,
    url: str | None,
    event_types: Iterable[str] | None,
    description: str | None,
    enabled: bool | None,
) -> Call:
    changes = webhook_fields(
        url=url, event_types=event_types, description=description, enabled=enabled
    )
    return Call("PATCH", f"webhooks/{segment(webhook_id)}", body=changes, replayable=True)


def webhook_delete(webhook_id: object) -> Call:
    return Call("DELETE", f"webhooks/{segment(webhook_id)}", replayable=True)


def webhooks_list() -> Call:
    return Call("GET", "webhooks", replayable=True)


def webhook_attempts(webhook_id: object, *, page_size: int | None) -> Call:
    path = f"webhooks/{segment(webhook_id)}/attempts"
    return Call("GET", path, params=params(limit=page_size), replayable=True)
