from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from chats import stream
from chats.pagination import StandardPagination
from chats.schema import ErrorResponse410Serializer, document_validation_errors
from chats.serializers import EventPageSerializer, EventsQuerySerializer
from messaging_app.errors import CursorExpired


@document_validation_errors({"since": ["invalid", "min_value", "max_value", "max_string_length", "cursor_ahead"]})
class EventsView(APIView):
    """Your event stream: what your sockets were sent, kept for replay (chats/stream.py)."""

    @extend_schema(
        summary="Catch up on your events",
        description=(
            "Every event of yours after `since`, oldest first, in exactly the frames the WebSocket sends "
            "(`type`, payload, `event_id`): messages, edits, deletions, read markers, conversations created, "
            "changed or left. Page through with `next` until it is null. Without `since`: no events, and "
            "`last_event_id` says where your stream stands now (store it, then connect the socket). "
            "A `since` older than what the server keeps (`EVENTS_RETENTION_DAYS`, 7 by default) is answered "
            "410 `cursor_expired`: reload your state over REST. A `since` past your stream is a 400."
        ),
        parameters=[
            EventsQuerySerializer,
            OpenApiParameter("page_size", OpenApiTypes.INT, description="Events per page (default 20, at most 100)."),
        ],
        responses={200: EventPageSerializer, 410: ErrorResponse410Serializer},
    )
    def get(self, request):
        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        since = query.validated_data.get("since")
        user_id = request.user.pk
        if since is None:
            return Response({"results": [], "next": None, "last_event_id": stream.position(user_id)})
        try:
            now_at = stream.check_cursor(user_id, since)
        except stream.CursorAhead as exc:
            raise ValidationError({"since": [ErrorDetail(str(exc), code="cursor_ahead")]}) from exc
        except stream.CursorExpired as exc:
            raise CursorExpired(str(exc)) from exc
        frames = stream.after(user_id, since, StandardPagination().get_page_size(request), until=now_at)
        last = frames[-1]["event_id"] if frames else since
        following = replace_query_param(request.build_absolute_uri(), "since", last) if last < now_at else None
        return Response({"results": frames, "next": following, "last_event_id": now_at})
