"""``/api/v1/webhooks`` (endpoints, per client) and ``/api/v1/events`` (the event log)."""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import problem_responses
from webhooks.selectors import (
    attempts_page,
    endpoint_get_for_client,
    endpoints_for_client,
    events_page,
)
from webhooks.serializers import (
    EventDocumentSerializer,
    EventPageSerializer,
    EventQuerySerializer,
    WebhookAttemptPageSerializer,
    WebhookAttemptQuerySerializer,
    WebhookAttemptSerializer,
    WebhookCreatedSerializer,
    WebhookInputSerializer,
    WebhookListSerializer,
    WebhookSerializer,
)
from webhooks.services import endpoint_create, endpoint_delete, endpoint_update

_URL_REFUSED = (
    400,
    "Invalid input (`validation_error`), or a URL a webhook may not call "
    "(`webhook_url_refused`: not https, or resolving to a loopback, private, link-local, "
    "multicast or reserved address).",
)
_BAD_QUERY = (400, "An invalid parameter or cursor (`validation_error`).")
_LOCATION = OpenApiParameter("Location", location=OpenApiParameter.HEADER, response=[201], type=str)


def _endpoint_or_404(request, webhook_id: UUID):
    endpoint = endpoint_get_for_client(client=request.client, endpoint_id=webhook_id)
    if endpoint is None:
        # The same answer whether the id does not exist or belongs to another client.
        raise NotFound("No such webhook.", code="webhook_not_found")
    return endpoint


def _next_link(request, **replace) -> str:
    query = request.query_params.copy()
    for key, value in replace.items():
        query[key] = value
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


class WebhookCollection(APIView):
    @extend_schema(
        operation_id="webhooks_list",
        summary="List webhook endpoints",
        responses={200: WebhookListSerializer},
    )
    def get(self, request):
        endpoints = endpoints_for_client(client=request.client)
        return Response({"results": WebhookSerializer(endpoints, many=True).data})

    @extend_schema(
        operation_id="webhooks_create",
        summary="Create a webhook endpoint",
        description="Events of the chosen types (all by default) are POSTed to `url`, signed "
        "with the `secret` of this answer, which is never shown again.",
        request=WebhookInputSerializer,
        parameters=[_LOCATION],
        responses={201: WebhookCreatedSerializer, **problem_responses(_URL_REFUSED)},
    )
    def post(self, request):
        serializer = WebhookInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = endpoint_create(client=request.client, **serializer.validated_data)
        return Response(
            # The only time the secret is shown: the client must store it now.
            {**WebhookSerializer(endpoint).data, "secret": secret},
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/webhooks/{endpoint.id}"},
        )


class WebhookDetail(APIView):
    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="A webhook endpoint and its health",
        responses={200: WebhookSerializer},
    )
    def get(self, request, webhook_id: UUID):
        return Response(WebhookSerializer(_endpoint_or_404(request, webhook_id)).data)

    @extend_schema(
        operation_id="webhooks_partial_update",
        summary="Change a webhook endpoint",
        description="`enabled: true` enables it again and forgets its past failures.",
        request=WebhookInputSerializer,
        responses={200: WebhookSerializer, **problem_responses(_URL_REFUSED)},
    )
    def patch(self, request, webhook_id: UUID):
        endpoint = _endpoint_or_404(request, webhook_id)
        serializer = WebhookInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook endpoint",
        responses={204: OpenApiResponse(description="Deleted, with its request log.")},
    )
    def delete(self, request, webhook_id: UUID):
        endpoint_delete(endpoint=_endpoint_or_404(request, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookAttempts(APIView):
    @extend_schema(
        operation_id="webhooks_attempts",
        summary="A webhook endpoint's request log",
        description="Newest first: status code, duration, error, the first 200 characters of "
        "the answer, and the ids of the events each request carried.",
        parameters=[WebhookAttemptQuerySerializer],
        responses={200: WebhookAttemptPageSerializer, **problem_responses(_BAD_QUERY)},
    )
    def get(self, request, webhook_id: UUID):
        endpoint = _endpoint_or_404(request, webhook_id)
        query = WebhookAttemptQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        attempts, before = attempts_page(
            endpoint=endpoint,
            before_id=query.validated_data.get("before"),
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "next": _next_link(request, before=str(before)) if before else None,
                "results": WebhookAttemptSerializer(attempts, many=True).data,
            }
        )


class EventCollection(APIView):
    @extend_schema(
        operation_id="events_list",
        summary="The event log",
        description="Every event of the client's mail, newest first (`order=oldest` to read "
        "forward), by cursor: follow `next`. The same documents as in webhook requests. A live "
        "key lists live mail's events and a test-mode key test mail's, unless `mode` asks for "
        "another; each document says which in `test_mode`.",
        parameters=[EventQuerySerializer],
        responses={200: EventPageSerializer, **problem_responses(_BAD_QUERY)},
    )
    def get(self, request):
        query = EventQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        events, position = events_page(
            client=request.client,
            where=query.to_filter(key_test_mode=request.test_mode),
            after=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "next": _next_link(request, cursor=position.encode()) if position else None,
                "results": EventDocumentSerializer(events, many=True).data,
            }
        )
