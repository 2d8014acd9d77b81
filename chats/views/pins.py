from uuid import UUID

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.response import Response

from chats import selectors, services_reactions
from chats.models import MessagePin
from chats.pagination import StandardPagination
from chats.permissions import conversation_for_participant_or_404
from chats.schema import PIN_EXAMPLES
from chats.serializers import PinCreateSerializer, PinSerializer, pin_rows_representation
from chats.views.base import ScopedViewSet

PINNED_MESSAGE_ID = OpenApiParameter("message_id", str, OpenApiParameter.PATH, description="The pinned message's id.")


@extend_schema_view(
    list=extend_schema(
        summary="Pinned messages of a conversation, newest pin first",
        description="Each with the message (as the timelines show it) and who pinned it when. Participants only.",
    ),
    create=extend_schema(
        summary="Pin a message",
        description=(
            "Any participant pins any message of the conversation: 201, or 200 with the existing pin "
            "when it is pinned already. A deleted message cannot be pinned, and a conversation has at "
            "most 50 pins (400 on `message_id`). Every participant gets a `message.pinned` event."
        ),
        request=PinCreateSerializer,
        responses={201: PinSerializer, 200: PinSerializer},
        examples=PIN_EXAMPLES,
    ),
    destroy=extend_schema(
        summary="Unpin a message",
        description=(
            "Any participant unpins; 204 whether or not it was pinned. Every participant gets a "
            "`message.unpinned` event when it was."
        ),
        parameters=[PINNED_MESSAGE_ID],
        responses={204: OpenApiResponse(description="Not pinned (any more).")},
    ),
)
class ConversationPinViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, ScopedViewSet):
    model = MessagePin
    serializer_class = PinSerializer
    pagination_class = StandardPagination
    filter_backends = []
    lookup_field = "message_id"
    lookup_value_regex = "[^/]+"

    def get_serializer_class(self):
        return PinCreateSerializer if self.action == "create" else PinSerializer

    def get_conversation(self):
        if not hasattr(self, "_conversation"):
            self._conversation = conversation_for_participant_or_404(
                user=self.request.user, conversation_id=self.kwargs["conversation_id"]
            )
        return self._conversation

    def scoped_queryset(self):
        return selectors.pin_rows(conversation=self.get_conversation())

    def list(self, request, *args, **kwargs):
        rows = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(pin_rows_representation(rows, str(request.user.pk)))

    def create(self, request, *args, **kwargs):
        conversation = self.get_conversation()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pin, created = services_reactions.pin_add(
            conversation=conversation, user=request.user, message_id=serializer.validated_data["message_id"]
        )
        row = selectors.pin_rows(conversation=conversation).filter(pk=pin.pk).first()
        return Response(
            pin_rows_representation([row], str(request.user.pk))[0],
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def destroy(self, request, *args, **kwargs):
        conversation = self.get_conversation()
        try:
            message_id = UUID(str(self.kwargs["message_id"]))
        except ValueError:
            return Response(status=status.HTTP_204_NO_CONTENT)  # no such message: not pinned
        services_reactions.pin_remove(conversation=conversation, user=request.user, message_id=message_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
