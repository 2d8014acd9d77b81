from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from chats import presence
from chats.schema import document_validation_errors, list_item
from chats.serializers import PresenceQuerySerializer, PresenceSerializer


@document_validation_errors({"user_id": ["max_length", "not_a_list"], list_item("user_id"): ["invalid"]})
class PresenceView(APIView):
    """Who is online (chats/presence.py)."""

    @extend_schema(
        summary="Who is online",
        description=(
            "The presence of the people asked for (`?user_id=...&user_id=...`, at most 100) whom you may "
            "see: yourself, and people who share a conversation with you and show their presence. Anyone "
            "else is left out of the answer, exactly as an unknown id; without `user_id`, your own. "
            "Online means a WebSocket open now; otherwise `last_seen_at` says when their last one closed. "
            "Changes come live as `presence` frames to sockets that subscribed (docs/websocket.md)."
        ),
        parameters=[PresenceQuerySerializer],
        responses={200: PresenceSerializer(many=True)},
    )
    def get(self, request):
        query = PresenceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data.get("user_id") or [request.user.pk]
        return Response(presence.presence_for(viewer=request.user, user_ids=wanted))
