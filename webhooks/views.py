"""``/api/v1/webhooks`` (endpoints, per client) and ``/api/v1/events`` (the event log)."""

from __future__ import annotations

from uuid import UUID

from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from webhooks.selectors import (
    attempts_page,
    endpoint_get_for_client,
    endpoints_for_client,
    events_page,
)
from webhooks.serializers import (
    DEFAULT_PAGE,
    MAX_PAGE,
    EventQuerySerializer,
    EventSerializer,
    WebhookAttemptSerializer,
    WebhookInputSerializer,
    WebhookSerializer,
)
from webhooks.services import endpoint_create, endpoint_delete, endpoint_update


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
    def get(self, request):
        endpoints = endpoints_for_client(client=request.client)
        return Response({"results": WebhookSerializer(endpoints, many=True).data})

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
    def get(self, request, webhook_id: UUID):
        return Response(WebhookSerializer(_endpoint_or_404(request, webhook_id)).data)

    def patch(self, request, webhook_id: UUID):
        endpoint = _endpoint_or_404(request, webhook_id)
        serializer = WebhookInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookSerializer(endpoint).data)

    def delete(self, request, webhook_id: UUID):
        endpoint_delete(endpoint=_endpoint_or_404(request, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _AttemptQuery(serializers.Serializer):
    before = serializers.IntegerField(min_value=1, required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)


class WebhookAttempts(APIView):
    """The endpoint's request log, newest first."""

    def get(self, request, webhook_id: UUID):
        endpoint = _endpoint_or_404(request, webhook_id)
        query = _AttemptQuery(data=request.query_params)
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
    """The client's events, newest first (``?order=oldest`` to read forward), by cursor."""

    def get(self, request):
        query = EventQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        events, position = events_page(
            client=request.client,
            where=query.to_filter(),
            after=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "next": _next_link(request, cursor=position.encode()) if position else None,
                "results": EventSerializer(events, many=True).data,
            }
        )
