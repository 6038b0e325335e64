"""The REST API. Each view parses input, calls one service or selector, and shapes the answer;
every queryset starts from ``request.client``, so a client only ever sees its own data. The one
view without a key, ``ApiIndex`` (``GET /api/v1/``), lists the endpoints and shows no data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from uuid import UUID

from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import problem
from api.idempotency import idempotent
from api.pagination import CursorPage
from api.schema import (
    BATCH_EXAMPLES,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_REUSED,
    LOCATION,
    REPLAYED,
    SEND_EXAMPLES,
    SUPPRESSED_ADDRESS,
    SUPPRESSION_EXAMPLES,
    TEMPLATE_EXAMPLES,
    TEMPLATE_EXISTS,
    problem_responses,
)
from api.serializers.answers import (
    BatchResultSerializer,
    CancelResultSerializer,
    EventListSerializer,
    EventSerializer,
    MessageAcceptedSerializer,
    MessageDetailSerializer,
    MessageSummarySerializer,
    SuppressionSerializer,
)
from api.serializers.filters import MessageFilterSerializer, SuppressionFilterSerializer
from api.serializers.intake import (
    BatchSerializer,
    MessageCreateSerializer,
    SuppressionCreateSerializer,
    TemplateLookup,
    TemplateSerializer,
)
from deliveries.selectors import (
    message_events_for_client,
    message_get_for_client,
    messages_for_client,
    suppression_get_for_client,
    suppressions_for_client,
    template_get_for_client,
    templates_for_client,
)
from deliveries.services import (
    MessageDraft,
    message_accept,
    message_cancel,
    messages_accept,
    suppression_add,
    suppression_remove,
    template_create,
    template_delete,
    template_update,
)
from domains.errors import SenderDomainNotVerified


def _page(view: generics.GenericAPIView, queryset, serializer_class) -> Response:
    """One page of a cursor-paginated list."""
    page = view.paginate_queryset(queryset)
    return view.get_paginated_response(serializer_class(page, many=True).data)


def _message_not_found() -> NotFound:
    # The same answer whether the id does not exist or belongs to another client.
    return NotFound("No such message.", code="message_not_found")


# -- the index ----------------------------------------------------------------------------------

#: The methods an endpoint may answer to, in the order the index lists them.
_METHODS = ("get", "post", "put", "patch", "delete")
_PATH_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")  # <uuid:message_id>, written {message_id}


def _routes(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """Every URL pattern below ``patterns`` with its whole route, e.g. ``api/v1/messages``."""
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        else:
            yield route, entry


class ApiIndex(APIView):
    """``GET /api/v1/``: every endpoint below it with its methods, and where the docs are.

    Public, as the schema and the docs pages it points to are (SPECTACULAR_SETTINGS'
    SERVE_AUTHENTICATION and SERVE_PERMISSIONS): it is made from the URL configuration alone,
    the same for everyone, with nothing of any client's in it. Not in the OpenAPI schema: it is
    that schema's table of contents, like /api/schema/ and /api/docs/, which are not in it either.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request):
        base = request.path_info.lstrip("/")  # api/v1/
        endpoints = []
        for route, pattern in _routes(get_resolver(getattr(request, "urlconf", None)).url_patterns):
            view = getattr(pattern.callback, "view_class", None)
            if view is None or view is ApiIndex or not route.startswith(base):
                continue
            endpoints.append(
                {
                    "name": pattern.name,
                    "methods": [method.upper() for method in _METHODS if hasattr(view, method)],
                    "url": request.path + _PATH_PARAMETER.sub(r"{\1}", route[len(base) :]),
                }
            )
        return Response(
            {
                "title": spectacular_settings.TITLE,
                "version": spectacular_settings.VERSION,
                "authentication": "Authorization: Bearer <API key>, or X-Api-Key: <API key>",
                "docs": {
                    "swagger_ui": reverse("api-docs"),
                    "redoc": reverse("api-redoc"),
                    "openapi_schema": reverse("api-schema"),
                },
                "endpoints": endpoints,
            }
        )


# -- messages -----------------------------------------------------------------------------------


class MessageCollection(generics.GenericAPIView):
    pagination_class = CursorPage
    serializer_class = MessageSummarySerializer

    @extend_schema(
        operation_id="messages_list",
        summary="List messages",
        description="Newest first, cursor-paginated (`limit` 1 to 200, default 50; follow "
        "`next`). Filters combine with AND. A live key lists live mail and a test-mode key "
        "test mail, unless `mode` asks for another.",
        parameters=[MessageFilterSerializer],
        responses={200: MessageSummarySerializer(many=True)},
    )
    def get(self, request):
        filters = MessageFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        messages = messages_for_client(
            client=request.client, **filters.filters(key_test_mode=request.test_mode)
        )
        return _page(self, messages, MessageSummarySerializer)

    @extend_schema(
        operation_id="messages_send",
        summary="Send a message",
        description="Validates, stores the message with one delivery per distinct recipient "
        "and queues it (or schedules it with `send_at`). Suppressed recipients are recorded "
        "as `suppressed` and never sent to. Limits: MAILHUB_MAX_RECIPIENTS (50) recipients, "
        "MAILHUB_MAX_BODY_BYTES (1 MiB) per body, MAILHUB_MAX_HEADERS (50) custom headers, "
        "attachments, tags and metadata as described on their fields. With a test-mode key "
        "the message is stored and recorded the same way (`test_mode: true`) but settled by the "
        "simulator instead of being sent: see *Testing your integration* in the README.",
        request=MessageCreateSerializer,
        examples=SEND_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, REPLAYED, LOCATION],
        responses={
            202: OpenApiResponse(MessageAcceptedSerializer, description="Accepted."),
            **problem_responses(IDEMPOTENCY_KEY_REUSED),
        },
    )
    @idempotent
    def post(self, request):
        serializer = MessageCreateSerializer(
            data=request.data, context={"templates": TemplateLookup(request.client)}
        )
        serializer.is_valid(raise_exception=True)
        message = message_accept(
            client=request.client, draft=serializer.to_draft(), test_mode=request.test_mode
        )
        return Response(
            {"id": str(message.id), "status": message.status, "test_mode": message.test_mode},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/messages/{message.id}"},
        )


class MessageBatch(APIView):
    @extend_schema(
        operation_id="messages_send_batch",
        summary="Send up to 500 messages at once",
        description="Each message is validated on its own; the valid ones are all stored in "
        "one transaction with bulk inserts and published together, the others are reported "
        "with their field errors. `results` has one entry per message, in order: `id` and "
        "`status`, or `error`. The answer is **202** when every message was accepted and "
        "**207** when at least one was refused (even all of them). A refusal of the request "
        "as a whole (not an object, no messages, more than MAILHUB_MAX_BATCH_MESSAGES) is a "
        "400 problem. A batch counts as one request for the rate limit.",
        request=BatchSerializer,
        examples=BATCH_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, REPLAYED],
        responses={
            202: OpenApiResponse(BatchResultSerializer, description="All accepted."),
            207: OpenApiResponse(BatchResultSerializer, description="Some or all refused."),
            **problem_responses(IDEMPOTENCY_KEY_REUSED),
        },
    )
    @idempotent
    def post(self, request):
        batch = BatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        items = batch.items(templates=TemplateLookup(request.client))
        drafts = [item for item in items if not isinstance(item, dict)]
        try:
            stored = messages_accept(
                client=request.client, drafts=drafts, test_mode=request.test_mode
            )
        except SenderDomainNotVerified as refused:
            # Nothing was stored: the messages From: a domain the client may not use fail alone
            # with their reason, and the others are accepted.
            items, drafts = _refuse_sender_domains(items, refused)
            stored = messages_accept(
                client=request.client, drafts=drafts, test_mode=request.test_mode
            )
        accepted = iter(stored)
        results = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                results.append({"index": index, "error": item})
            else:
                message = next(accepted)
                results.append(
                    {
                        "index": index,
                        "id": str(message.id),
                        "status": message.status,
                        "test_mode": message.test_mode,
                    }
                )
        rejected = len(items) - len(drafts)
        return Response(
            {"accepted": len(drafts), "rejected": rejected, "results": results},
            status=status.HTTP_207_MULTI_STATUS if rejected else status.HTTP_202_ACCEPTED,
        )


def _refuse_sender_domains(
    items: list, refused: SenderDomainNotVerified
) -> tuple[list, list[MessageDraft]]:
    """The batch's items with the refused drafts (``refused.refused``, by position among the
    drafts) made into their problems, and the drafts left."""
    out, left = [], []
    position = 0
    for item in items:
        if isinstance(item, dict):
            out.append(item)
            continue
        if position in refused.refused:
            domain, why = refused.refused[position]
            out.append(problem(status_code=400, code=refused.code, detail=why, domain=domain))
        else:
            out.append(item)
            left.append(item)
        position += 1
    return out, left


class MessageDetail(APIView):
    @extend_schema(
        operation_id="messages_retrieve",
        summary="A message, its recipients and every attempt",
        responses={200: MessageDetailSerializer},
    )
    def get(self, request, message_id: UUID):
        message = message_get_for_client(client=request.client, message_id=message_id)
        if message is None:
            raise _message_not_found()
        return Response(MessageDetailSerializer(message).data)


class MessageCancel(APIView):
    @extend_schema(
        operation_id="messages_cancel",
        summary="Cancel what is not yet sent",
        description="Cancels every delivery still `scheduled`, `queued` or `deferred` (listed "
        "in `cancelled`). A delivery being sent at this moment is listed in `cancel_requested`: "
        "its attempt goes on (its SMTP transaction may be done), and if it ends delivered, "
        "bounced or failed that stands; if it would be retried, the delivery is cancelled "
        "instead. The message's status and events tell which. Safe to repeat: a second cancel "
        "lists nothing.",
        request=None,
        parameters=[IDEMPOTENCY_KEY, REPLAYED],
        responses={200: CancelResultSerializer, **problem_responses(IDEMPOTENCY_KEY_REUSED)},
    )
    @idempotent
    def post(self, request, message_id: UUID):
        message = message_get_for_client(client=request.client, message_id=message_id)
        if message is None:
            raise _message_not_found()
        result = message_cancel(message=message)
        message.refresh_from_db(fields=["status"])
        return Response(
            {
                "id": str(message.id),
                "status": message.status,
                "cancelled": result.cancelled,
                "cancel_requested": result.requested,
            }
        )


class MessageEvents(APIView):
    @extend_schema(
        operation_id="messages_events",
        summary="The message's history",
        description="Every event of every recipient, oldest first: accepted, scheduled, "
        "deferred (with the SMTP reply and the next attempt), delivered, bounced, failed, "
        "suppressed, cancelled, complained.",
        responses={200: EventListSerializer},
    )
    def get(self, request, message_id: UUID):
        events = message_events_for_client(client=request.client, message_id=message_id)
        if events is None:
            raise _message_not_found()
        return Response({"results": EventSerializer(events, many=True).data})


# -- templates ----------------------------------------------------------------------------------


def _template_not_found() -> NotFound:
    return NotFound("No such template.", code="template_not_found")


class TemplateCollection(generics.GenericAPIView):
    pagination_class = CursorPage
    serializer_class = TemplateSerializer
    cursor_ordering = ("name",)

    @extend_schema(
        operation_id="templates_list",
        summary="List templates",
        description="By name, cursor-paginated.",
        responses={200: TemplateSerializer(many=True)},
    )
    def get(self, request):
        return _page(self, templates_for_client(client=request.client), TemplateSerializer)

    @extend_schema(
        operation_id="templates_create",
        summary="Create a template",
        description="Subject, text and html in Django template syntax (`{{ name }}`, "
        "`{% if %}`, `{% for %}`, filters such as `default`, `date`, `upper`). Each part is "
        "compiled now: a syntax error is a 400 naming the part. HTML is autoescaped; subject "
        "and text are not. Tags that reach outside the template (`include`, `extends`, "
        "`load`, `url`, `debug`) are not available. When mail is sent, a variable the "
        "template prints but the context lacks is a 400 `missing_variable` "
        '(`{{ x|default:"" }}` allows an empty one).',
        request=TemplateSerializer,
        examples=TEMPLATE_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, REPLAYED],
        responses={
            201: TemplateSerializer,
            **problem_responses(TEMPLATE_EXISTS, IDEMPOTENCY_KEY_REUSED),
        },
    )
    @idempotent
    def post(self, request):
        serializer = TemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # A template that does not compile raises TemplateProblem: a 400 from the handler.
        template = template_create(client=request.client, **serializer.validated_data)
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class TemplateDetail(APIView):
    def _get(self, request, name: str):
        template = template_get_for_client(client=request.client, name=name)
        if template is None:
            raise _template_not_found()
        return template

    @extend_schema(
        operation_id="templates_retrieve", summary="A template", responses={200: TemplateSerializer}
    )
    def get(self, request, name: str):
        return Response(TemplateSerializer(self._get(request, name)).data)

    def _update(self, request, name: str, *, partial: bool):
        template = self._get(request, name)
        serializer = TemplateSerializer(template, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        template = template_update(template=template, **serializer.validated_data)
        return Response(TemplateSerializer(template).data)

    @extend_schema(
        operation_id="templates_update",
        summary="Replace a template",
        description="Parts left out become empty. Mail already accepted keeps what it was "
        "rendered to.",
        request=TemplateSerializer,
        responses={200: TemplateSerializer, **problem_responses(TEMPLATE_EXISTS)},
    )
    def put(self, request, name: str):
        return self._update(request, name, partial=False)

    @extend_schema(
        operation_id="templates_partial_update",
        summary="Change some parts of a template",
        request=TemplateSerializer,
        responses={200: TemplateSerializer, **problem_responses(TEMPLATE_EXISTS)},
    )
    def patch(self, request, name: str):
        return self._update(request, name, partial=True)

    @extend_schema(
        operation_id="templates_destroy",
        summary="Delete a template",
        description="Mail already accepted from it keeps what it was rendered to.",
        responses={204: None},
    )
    def delete(self, request, name: str):
        template_delete(template=self._get(request, name))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- suppressions -------------------------------------------------------------------------------


class SuppressionCollection(generics.GenericAPIView):
    pagination_class = CursorPage
    serializer_class = SuppressionSerializer

    @extend_schema(
        operation_id="suppressions_list",
        summary="List suppressed addresses",
        description="Newest first, cursor-paginated. Hard bounces (a 5xx refusing the "
        "address) are added automatically with reason `hard_bounce` and the SMTP reply.",
        parameters=[SuppressionFilterSerializer],
        responses={200: SuppressionSerializer(many=True)},
    )
    def get(self, request):
        filters = SuppressionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        suppressions = suppressions_for_client(
            client=request.client, reasons=filters.validated_data.get("reason", [])
        )
        return _page(self, suppressions, SuppressionSerializer)

    @extend_schema(
        operation_id="suppressions_create",
        summary="Suppress an address",
        description="Mail to it is then recorded as `suppressed` and never sent. **201** when "
        "added, **200** when it already was (its first reason is kept).",
        request=SuppressionCreateSerializer,
        examples=SUPPRESSION_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, REPLAYED],
        responses={
            201: SuppressionSerializer,
            200: SuppressionSerializer,
            **problem_responses(IDEMPOTENCY_KEY_REUSED),
        },
    )
    @idempotent
    def post(self, request):
        serializer = SuppressionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        address = data["address"].address
        created = suppression_add(
            client_id=request.client.id,
            address=address,
            reason=data["reason"],
            detail=data["detail"],
        )
        suppression = suppression_get_for_client(client=request.client, address=address)
        return Response(
            SuppressionSerializer(suppression).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SuppressionDetail(APIView):
    def _not_found(self) -> NotFound:
        return NotFound("This address is not suppressed.", code="suppression_not_found")

    @extend_schema(
        operation_id="suppressions_retrieve",
        summary="Whether an address is suppressed, and why",
        parameters=[SUPPRESSED_ADDRESS],
        responses={200: SuppressionSerializer},
    )
    def get(self, request, address: str):
        suppression = suppression_get_for_client(client=request.client, address=address)
        if suppression is None:
            raise self._not_found()
        return Response(SuppressionSerializer(suppression).data)

    @extend_schema(
        operation_id="suppressions_destroy",
        summary="Allow mail to an address again",
        parameters=[SUPPRESSED_ADDRESS],
        responses={204: None},
    )
    def delete(self, request, address: str):
        if not suppression_remove(client=request.client, address=address):
            raise self._not_found()
        return Response(status=status.HTTP_204_NO_CONTENT)
