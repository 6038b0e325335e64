from __future__ import annotations

from uuid import UUID

from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from api.serializers import MessageCreateSerializer, MessageDetailSerializer
from deliveries.selectors import message_get_for_client
from deliveries.services import message_accept


class MessageCollection(APIView):
    def post(self, request):
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = message_accept(client=request.client, draft=serializer.to_draft())
        return Response(
            {"id": str(message.id), "status": message.status},
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/messages/{message.id}"},
        )


class MessageDetail(APIView):
    def get(self, request, message_id: UUID):
        message = message_get_for_client(client=request.client, message_id=message_id)
        if message is None:
            # The same answer whether the id does not exist or belongs to another client.
            raise NotFound("No such message.", code="message_not_found")
        return Response(MessageDetailSerializer(message).data)
