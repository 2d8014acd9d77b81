from uuid import UUID

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from drf_standardized_errors.openapi_serializers import ErrorResponse403Serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from chats import events, selectors, services, services_groups, services_membership
from chats.filters import ConversationFilter
from chats.models import MAX_INLINE_PARTICIPANTS, Conversation, Message
from chats.pagination import NON_FILTERING_PARAMS, PLAIN_PAGE_PARAMS, KnownCountPagination
from chats.permissions import conversation_for_participant_or_404
from chats.schema import (
    CONVERSATION_CREATE_EXAMPLES,
    CONVERSATION_UPDATE_EXAMPLES,
    PARTICIPANT_ROLE_EXAMPLES,
    MARK_READ_EXAMPLES,
    MEMBERSHIP_EXAMPLES,
    PARTICIPANT_ADD_EXAMPLES,
    SEARCH_ERRORS,
    document_validation_errors,
    list_item,
)
from chats.serializers import (
    ConversationCreateSerializer,
    ConversationParticipantSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    MarkReadSerializer,
    MembershipStateSerializer,
    MembershipUpdateSerializer,
    ParticipantAddSerializer,
    ParticipantRoleSerializer,
    ReadMarkerSerializer,
    ReadStateSerializer,
    conversation_rows_representation,
    participant_rows_representation,
    read_marker_rows_representation,
)
from chats.throttles import SendRateThrottle
from chats.views.base import ScopedViewSet


@extend_schema_view(
    list=extend_schema(summary="Your conversations, most recently active first"),
    retrieve=extend_schema(summary="One of your conversations"),
    create=extend_schema(
        summary="Start a conversation",
        description=(
            "You are always a participant; list the others in `participants` (duplicates collapse, "
            "at least one other person). Optional `messages` are sent by you, in order. If you name "
            "exactly one other person and the two of you already have a two-person conversation "
            "(never changed since), that one is returned with 200 (and the messages are sent to it)."
        ),
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, 200: ConversationSerializer},
        examples=CONVERSATION_CREATE_EXAMPLES,
    ),
)
@document_validation_errors(SEARCH_ERRORS, actions=["list"])
# conversation_create: unknown or inactive people, too few or too many of them or of messages.
@document_validation_errors({"participants": ["invalid"], "messages": ["invalid"]}, actions=["create"])
# A null item of `messages` is refused as a whole (`messages.3`), not by its fields.
@document_validation_errors({list_item("messages"): ["null"]}, actions=["create"])
# services_mentions.mentions_resolve: an `@[user_id]` in a first message that names no participant.
@document_validation_errors({"mentions": ["not_participant", "max_length"]}, actions=["create"])
class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    model = Conversation
    serializer_class = ConversationSerializer
    lookup_field = "conversation_id"
    lookup_value_regex = "[^/]+"
    filterset_class = ConversationFilter
    pagination_class = KnownCountPagination
    # Emails match only exactly: co-participants must not learn an address letter by letter.
    search_fields = ["participants__first_name", "participants__last_name", "=participants__email"]
    ordering_fields = ["created_at", "last_activity_at"]

    # Input shapes per action (the browsable API renders its forms from them); every response
    # is a ConversationSerializer or ReadStateSerializer, built explicitly.
    input_serializers = {
        "create": ConversationCreateSerializer,
        "add_participant": ParticipantAddSerializer,
        "read": MarkReadSerializer,
        "partial_update": ConversationUpdateSerializer,
        "set_participant_role": ParticipantRoleSerializer,
        "membership": MembershipUpdateSerializer,
    }

    def get_serializer_class(self):
        return self.input_serializers.get(self.action, ConversationSerializer)

    def scoped_queryset(self):
        if self.action == "list":
            # The inbox leaves archived conversations out; ?archived=true lists only them
            # (ConversationFilter validates the value; anything else here means the inbox).
            archived = self.request.query_params.get("archived") == "true"
            return selectors.conversation_list_for_user(user=self.request.user, archived=archived)
        return selectors.conversation_list_for_user(user=self.request.user)

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(SendRateThrottle())
        return throttles

    def known_count(self) -> int | None:
        """The inbox's size from the memberships alone (not a COUNT over the annotated page query)."""
        if self.action == "list" and set(self.request.query_params) <= NON_FILTERING_PARAMS:
            return selectors.conversation_total_for_user(user=self.request.user)
        if self.action == "list_participants":
            return self.the_conversation().participant_count  # kept by the services: no COUNT
        return None

    def list(self, request, *args, **kwargs):
        # The inbox: value rows instead of model instances (same output, less CPU per page); in
        # its default order and unfiltered, the same query compiled once (selectors.inbox_rows).
        if set(request.query_params) <= PLAIN_PAGE_PARAMS:
            rows = self.paginate_queryset(selectors.inbox_rows(user=request.user))
        else:
            rows = self.paginate_queryset(selectors.conversation_rows(self.filter_queryset(self.get_queryset())))
        people = selectors.participants_by_conversation([row["conversation_id"] for row in rows])
        return self.get_paginated_response(conversation_rows_representation(rows, people, str(request.user.pk)))

    def respond(self, conversation: Conversation, status_code: int = status.HTTP_200_OK) -> Response:
        """The conversation as the inbox shows it (rows: at most MAX_INLINE_PARTICIPANTS people inline)."""
        rows = list(selectors.conversation_rows(self.get_queryset().filter(pk=conversation.pk)))
        if not rows:  # they just left it
            raise NotFound
        people = selectors.participants_by_conversation([rows[0]["conversation_id"]])
        data = conversation_rows_representation(rows, people, str(self.request.user.pk))[0]
        return Response(data, status=status_code)

    def the_conversation(self) -> Conversation:
        """The conversation of the URL if the caller takes part in it, else 404 (one query, nothing prefetched)."""
        if not hasattr(self, "_conversation"):
            self._conversation = conversation_for_participant_or_404(
                user=self.request.user, conversation_id=self.kwargs["conversation_id"]
            )
        return self._conversation

    def retrieve(self, request, *args, **kwargs):
        return self.respond(self.the_conversation())

    @extend_schema(
        summary="Change a group's title, description or avatar",
        description=(
            "Groups (three people or more) only: their owner and admins (403 for members; 400 for a "
            "two-person conversation). Send any of `title`, `description`, `avatar` (an image you "
            "uploaded with POST /api/attachments/ and have not sent, or null to remove it: a replaced "
            "avatar is deleted). Every participant gets a `conversation.updated` event."
        ),
        request=ConversationUpdateSerializer,
        responses={200: ConversationSerializer, 403: ErrorResponse403Serializer},
        examples=CONVERSATION_UPDATE_EXAMPLES,
    )
    def partial_update(self, request, conversation_id=None):
        conversation = self.the_conversation()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = {name: serializer.validated_data[name] for name in ("title", "description")
                   if name in serializer.validated_data}
        if "avatar" in serializer.validated_data:
            changes["avatar_id"] = serializer.validated_data["avatar"]
        services_groups.conversation_update(conversation=conversation, actor=request.user, **changes)
        return self.respond(conversation)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation, created = services.conversation_create(
            creator=request.user,
            participant_ids=data["participants"],
            message_bodies=[m["message_body"] for m in data.get("messages", [])],
        )
        return self.respond(conversation, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        summary="Add a participant",
        description=(
            "Adds an active user as a member: in a group (three people or more), its owner or an admin "
            "(403 for members); in a two-person conversation, either person. 201 if added, 200 if they "
            "were already in. At most CHATS_MAX_PARTICIPANTS (1,000 unless configured) people."
        ),
        request=ParticipantAddSerializer,
        responses={201: ConversationSerializer, 200: ConversationSerializer},
        examples=PARTICIPANT_ADD_EXAMPLES,
    )
    @action(detail=True, methods=["post"], url_path="participants")
    def add_participant(self, request, conversation_id=None):
        conversation = self.the_conversation()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        added = services.conversation_add_participant(
            conversation=conversation, actor=request.user, user_id=serializer.validated_data["user_id"]
        )
        return self.respond(conversation, status.HTTP_201_CREATED if added else status.HTTP_200_OK)

    @extend_schema(
        summary="Leave, or remove a participant",
        description=(
            "A participant may remove themself (leave). In a group, its owner removes anyone and its admins "
            "remove members (403 otherwise); in a two-person conversation, its owner (the creator) removes "
            "the other. Whoever is removed loses access at once. When the owner leaves, ownership passes to "
            "the admin who joined first, else to the member who joined first."
        ),
        parameters=[OpenApiParameter("user_id", str, OpenApiParameter.PATH, description="The participant's user_id.")],
        request=None,
        responses={204: OpenApiResponse(description="Removed."), 403: ErrorResponse403Serializer},
    )
    @action(detail=True, methods=["delete"], url_path=r"participants/(?P<user_id>[^/.]+)")
    def remove_participant(self, request, conversation_id=None, user_id=None):
        conversation = self.the_conversation()
        services.conversation_remove_participant(
            conversation=conversation, actor=request.user, user_id=self.participant_id(user_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def participant_id(user_id: str) -> UUID:
        try:
            return UUID(user_id)
        except ValueError:
            raise NotFound("This user is not a participant.")

    @extend_schema(
        summary="Make a participant an admin, or a member again",
        description=(
            "The owner only (403 for anyone else in the conversation). The owner's own role cannot be "
            "changed (400): it passes on when they leave. Every participant gets a "
            "`participant.role_changed` event when the role changed."
        ),
        parameters=[OpenApiParameter("user_id", str, OpenApiParameter.PATH, description="The participant's user_id.")],
        request=ParticipantRoleSerializer,
        responses={200: ConversationParticipantSerializer, 403: ErrorResponse403Serializer},
        examples=PARTICIPANT_ROLE_EXAMPLES,
    )
    @remove_participant.mapping.patch
    def set_participant_role(self, request, conversation_id=None, user_id=None):
        conversation = self.the_conversation()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership, _changed = services_groups.participant_set_role(
            conversation=conversation, actor=request.user, user_id=self.participant_id(user_id),
            role=serializer.validated_data["role"],
        )
        row = selectors.participant_rows(conversation=conversation).filter(pk=membership.pk).first()
        return Response(participant_rows_representation([row])[0])

    @extend_schema(
        summary="Every participant, with their role",
        description=(
            "Pages through all the participants (a conversation's own representation lists only the first "
            f"{MAX_INLINE_PARTICIPANTS}), in name order, each with their role and when they joined. "
            "Participants only."
        ),
        responses={200: ConversationParticipantSerializer(many=True)},
        filters=False,
    )
    @add_participant.mapping.get
    def list_participants(self, request, conversation_id=None):
        conversation = self.the_conversation()
        page = self.paginate_queryset(selectors.participant_rows(conversation=conversation))
        return self.get_paginated_response(participant_rows_representation(page))

    @extend_schema(
        summary="Everyone's read marker (\"seen by\")",
        description=(
            "Each participant (you included) with `last_read_at`: the `sent_at` of the newest message they "
            "have read, or null. A message was seen by those whose `last_read_at` is at or after its "
            "`sent_at`. The other participants get a `read_marker.moved` event when someone's marker moves."
        ),
        responses={200: ReadMarkerSerializer(many=True)},
        filters=False,
    )
    @action(detail=True, methods=["get"], url_path="read-markers", pagination_class=None, filter_backends=[])
    def read_markers(self, request, conversation_id=None):
        conversation = conversation_for_participant_or_404(user=request.user, conversation_id=conversation_id)
        return Response(read_marker_rows_representation(selectors.read_marker_rows(conversation=conversation)))

    @extend_schema(
        methods=["GET"],
        summary="Your mute and archive settings of a conversation",
        request=None,
        responses={200: MembershipStateSerializer},
    )
    @extend_schema(
        methods=["PATCH"],
        summary="Mute or archive a conversation (for you)",
        description=(
            "`muted`: the conversation no longer counts toward your `unread_count` in /api/users/me/ "
            "and sends you no notifications (its own `unread_count` is still kept). `archived`: hidden "
            "from your inbox (GET /api/conversations/; `?archived=true` lists the archived ones) until "
            "someone else sends a message to it, unless it is also muted. Omitted fields stay as they are. "
            "Your other devices get a `membership.updated` event when something changed. Participants only."
        ),
        request=MembershipUpdateSerializer,
        responses={200: MembershipStateSerializer},
        examples=MEMBERSHIP_EXAMPLES,
    )
    @action(detail=True, methods=["get", "patch"], url_path="membership", filter_backends=[])
    def membership(self, request, conversation_id=None):
        conversation = conversation_for_participant_or_404(user=request.user, conversation_id=conversation_id)
        if request.method == "GET":
            membership = services_membership.membership_of(conversation=conversation, user=request.user)
        else:
            serializer = self.get_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            membership = services_membership.membership_update(
                conversation=conversation, user=request.user, **serializer.validated_data
            )
        return Response(events.membership_state(membership))

    @extend_schema(
        summary="Mark as read",
        description=(
            "Moves your read marker up to `message_id` (default: the newest message). "
            "It never moves backwards: marking an older message changes nothing."
        ),
        request=MarkReadSerializer,
        responses={200: ReadStateSerializer},
        examples=MARK_READ_EXAMPLES,
    )
    @action(detail=True, methods=["post"])
    def read(self, request, conversation_id=None):
        conversation = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message_id = serializer.validated_data.get("message_id")
        message = None
        if message_id is not None:
            message = Message.objects.filter(pk=message_id, conversation=conversation).first()
            if message is None:
                raise serializers.ValidationError({"message_id": ["No message with this id in this conversation."]})
        services.conversation_mark_read(conversation=conversation, user=request.user, message=message)
        fresh = self.get_queryset().get(pk=conversation.pk)
        return Response(
            ReadStateSerializer(
                {
                    "conversation_id": fresh.pk,
                    "last_read_at": fresh.my_last_read_at,
                    "unread_count": fresh.unread_count,
                    "unread_mentions": fresh.unread_mentions,
                }
            ).data
        )
