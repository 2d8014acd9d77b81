from uuid import UUID

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from drf_standardized_errors.openapi_serializers import ErrorResponse403Serializer
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from chats import selectors, services, services_reactions
from chats.filters import MessageFilter, MessageOrderingFilter, MessageSearchFilter
from chats.models import Conversation, Message
from chats.pagination import NON_FILTERING_PARAMS, PLAIN_PAGE_PARAMS, StandardPagination, TimelinePagination
from chats.permissions import conversation_for_participant_or_404
from chats.search import snippet
from chats.schema import (
    CURSOR_ERRORS,
    MESSAGE_CREATE_EXAMPLES,
    MESSAGE_EDIT_EXAMPLES,
    MESSAGE_SEND_EXAMPLES,
    REACTION_EXAMPLES,
    SEARCH_ERRORS,
    document_validation_errors,
    field_error_codes,
)
from chats.serializers import (
    MessageCreateSerializer,
    MessageListItemSerializer,
    MessageSendSerializer,
    MessageSerializer,
    MessageUpdateSerializer,
    MessageReactionsSerializer,
    MessageVersionSerializer,
    ReactionInputSerializer,
    message_representation,
    message_rows_representation,
    reactions_representation,
)
from chats.throttles import SendRateThrottle
from chats.views.base import ScopedViewSet

# Query parameters that do not change which messages a timeline holds.

SEND_DESCRIPTION = (
    "The sender is always you. `attachments` sends files you uploaded first (POST /api/attachments/); "
    "with them `message_body` may be empty. `parent_message` makes it a reply (same conversation only). "
    "`client_id` makes retries safe: a send repeating a `client_id` you used before returns the "
    "original message with 200 instead of creating a second one."
)
EDIT_DESCRIPTION = "Sender only (others get 403). The previous text is kept in the message's history."
DELETE_DESCRIPTION = (
    "Sender only (others get 403). The message stays in the timeline as a tombstone: "
    "`is_deleted: true`, empty body, history erased."
)

EDIT_SCHEMA = extend_schema(
    summary="Edit a message",
    description=EDIT_DESCRIPTION,
    request=MessageUpdateSerializer,
    responses={200: MessageSerializer, 403: ErrorResponse403Serializer},
    examples=MESSAGE_EDIT_EXAMPLES,
)
# services_mentions.mentions_resolve: a mention (listed or `@[user_id]`) of a non-participant, too many.
MENTION_ERRORS = {"mentions": ["not_participant", "max_length"]}
DELETE_SCHEMA = extend_schema(
    summary="Delete a message",
    description=DELETE_DESCRIPTION,
    responses={204: OpenApiResponse(description="Deleted."), 403: ErrorResponse403Serializer},
)


@document_validation_errors({**SEARCH_ERRORS, **CURSOR_ERRORS}, actions=["list"])
class _MessageViewSetBase(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    model = Message
    serializer_class = MessageSerializer
    pagination_class = TimelinePagination
    lookup_field = "message_id"
    lookup_value_regex = "[^/]+"
    filterset_class = MessageFilter
    filter_backends = [DjangoFilterBackend, MessageSearchFilter, MessageOrderingFilter]
    search_fields = ["message_body"]
    ordering_fields = ["sent_at"]
    search_terms = None  # the words of ?search=, set by MessageSearchFilter

    input_serializer_class = MessageSendSerializer

    def get_serializer_class(self):
        # Input shapes for the writes (the browsable API renders its forms from them);
        # responses are MessageSerializer, built explicitly.
        if self.action == "create":
            return self.input_serializer_class
        if self.action == "partial_update":
            return MessageUpdateSerializer
        if self.action == "reactions":
            return ReactionInputSerializer
        return MessageSerializer

    def known_count(self) -> int | None:
        """The timeline's size without COUNT(*), when a conversation's count is known."""
        return None

    def list(self, request, *args, **kwargs):
        # The pagination picks the page's ids on the timeline index; then those rows, as
        # values (same output as MessageSerializer, without an instance per message).
        ids = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        items = message_rows_representation(selectors.message_rows(ids), str(request.user.pk))
        if self.search_terms is not None:
            for item in items:
                item["snippet"] = snippet(item["message_body"], self.search_terms)
        return self.get_paginated_response(items)

    def get_throttles(self):
        throttles = super().get_throttles()
        if self.action == "create":
            throttles.append(SendRateThrottle())
        return throttles

    def send(self, conversation: Conversation, data: dict) -> Response:
        message, created = services.message_send(
            conversation=conversation,
            sender=self.request.user,
            message_body=data.get("message_body", ""),
            parent_message_id=data.get("parent_message"),
            client_id=data.get("client_id"),
            attachment_ids=data.get("attachments", ()),
            mention_ids=data.get("mentions", ()),
        )
        return Response(
            message_representation(message, str(self.request.user.pk)),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = services.message_edit(
            message=self.get_object(),
            actor=request.user,
            message_body=serializer.validated_data["message_body"],
            mention_ids=serializer.validated_data.get("mentions"),
        )
        return Response(message_representation(message, str(request.user.pk)))

    def destroy(self, request, *args, **kwargs):
        services.message_delete(message=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Earlier versions of a message, oldest first",
        responses={200: MessageVersionSerializer(many=True)},
        filters=False,
    )
    @action(detail=True, methods=["get"], pagination_class=StandardPagination, filter_backends=[])
    def history(self, request, *args, **kwargs):
        versions = selectors.message_history(message=self.get_object())
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(MessageVersionSerializer(page, many=True).data)


REACTION_EMOJI_PARAMETER = OpenApiParameter(
    "emoji",
    str,
    OpenApiParameter.QUERY,
    required=True,
    description="The emoji to take back (URL-encoded).",
    examples=[OpenApiExample("Thumbs up", value="\N{THUMBS UP SIGN}")],
)


@extend_schema_view(
    list=extend_schema(
        summary="Messages of all your conversations, newest first", responses=MessageListItemSerializer(many=True)
    ),
    retrieve=extend_schema(summary="One message from one of your conversations"),
    create=extend_schema(
        summary="Send a message",
        description=SEND_DESCRIPTION + " The conversation must be one you take part in.",
        request=MessageCreateSerializer,
        responses={201: MessageSerializer, 200: MessageSerializer},
        examples=MESSAGE_CREATE_EXAMPLES,
    ),
    partial_update=EDIT_SCHEMA,
    destroy=DELETE_SCHEMA,
)
# attachments_attach: someone else's or an unknown upload, one already sent. message_body is
# optional with attachments, so its required/blank errors come from the serializer's validate().
@document_validation_errors(
    {"attachments": ["does_not_exist", "already_attached"], "message_body": ["required", "blank"]},
    actions=["create"],
)
@document_validation_errors(MENTION_ERRORS, actions=["create", "partial_update"])
# Reactions: ?emoji= of a DELETE is checked like the POST's body field; a POST to a deleted
# message is refused on message_id (services_reactions.reaction_add).
@extend_validation_errors(
    field_error_codes(ReactionInputSerializer().fields["emoji"], "emoji"),
    field_name="emoji",
    actions=["reactions"],
    methods=["delete"],
)
@extend_validation_errors(["invalid"], field_name="message_id", actions=["reactions"], methods=["post"])
class MessageViewSet(_MessageViewSetBase):
    input_serializer_class = MessageCreateSerializer

    def scoped_queryset(self):
        return selectors.message_list_for_user(user=self.request.user)

    def page_ids(self, queryset):
        """The ids page mode slices: unfiltered, newest first and not deep, merged per conversation."""
        params = self.request.query_params
        default_order = params.get("ordering", "-sent_at") == "-sent_at"
        if set(params) <= NON_FILTERING_PARAMS and default_order:
            paginator = self.paginator
            size = paginator.get_page_size(self.request)
            page = params.get(paginator.page_query_param, "1")
            # ASCII digits only ('²'.isdigit() is True, int('²') fails), and few enough for int().
            shallow = page.isascii() and page.isdigit() and len(page) <= 9
            if shallow and int(page) * size <= selectors.NewestMessageIdsOfUser.MERGE_LIMIT:
                return selectors.NewestMessageIdsOfUser(self.request.user)
        return queryset.values_list("pk", flat=True)

    def known_count(self) -> int | None:
        params = set(self.request.query_params) - NON_FILTERING_PARAMS
        if not params:  # every message of every conversation of yours: their stored counts
            return selectors.message_total_for_user(user=self.request.user)
        if params != {"conversation"}:
            return None
        try:
            conversation_id = UUID(self.request.query_params["conversation"].strip())
        except ValueError:
            return None  # blank or invalid: the filter set decides, COUNT(*) counts
        conversation = (
            selectors.conversations_of(user=self.request.user)
            .filter(pk=conversation_id)
            .values("message_count")
            .first()
        )
        return conversation["message_count"] if conversation else 0

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = selectors.conversations_of(user=request.user).filter(pk=data["conversation"]).first()
        if conversation is None:
            # Same answer whether it does not exist or is someone else's.
            raise serializers.ValidationError({"conversation": ["No conversation of yours has this id."]})
        return self.send(conversation, data)

    @extend_schema(
        methods=["POST"],
        summary="React to a message",
        description=(
            "Adds your reaction (one emoji) to a message of a conversation you take part in. Idempotent: "
            "201 the first time, 200 with the same body when you had already reacted with this emoji. "
            "A deleted message takes no reactions (400); an unknown message, or one of a conversation "
            "you are not in, is a 404. Every participant gets a `reaction.added` event."
        ),
        request=ReactionInputSerializer,
        examples=REACTION_EXAMPLES,
        responses={201: MessageReactionsSerializer, 200: MessageReactionsSerializer},
        filters=False,
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Take back your reaction",
        description=(
            "Removes your reaction with `?emoji=`; 204 whether or not you had reacted with it. "
            "Every participant gets a `reaction.removed` event when one was removed."
        ),
        parameters=[REACTION_EMOJI_PARAMETER],
        request=None,
        responses={204: OpenApiResponse(description="Your reaction is gone (or never was).")},
        filters=False,
    )
    @action(detail=True, methods=["post", "delete"], filter_backends=[], pagination_class=None)
    def reactions(self, request, *args, **kwargs):
        message = self.get_object()
        if request.method == "DELETE":
            serializer = ReactionInputSerializer(data={"emoji": request.query_params.get("emoji", "")})
            serializer.is_valid(raise_exception=True)
            services_reactions.reaction_remove(message=message, user=request.user, **serializer.validated_data)
            return Response(status=status.HTTP_204_NO_CONTENT)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message, created = services_reactions.reaction_add(
            message=message, user=request.user, **serializer.validated_data
        )
        body = {
            "message_id": str(message.pk),
            "reactions": reactions_representation(message.reaction_summary, str(request.user.pk)),
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema_view(
    list=extend_schema(
        summary="Messages of one conversation, newest first", responses=MessageListItemSerializer(many=True)
    ),
    retrieve=extend_schema(summary="One message of this conversation"),
    create=extend_schema(
        summary="Send a message to this conversation",
        description=SEND_DESCRIPTION,
        request=MessageSendSerializer,
        responses={201: MessageSerializer, 200: MessageSerializer},
        examples=MESSAGE_SEND_EXAMPLES,
    ),
    partial_update=EDIT_SCHEMA,
    destroy=DELETE_SCHEMA,
)
# attachments_attach: someone else's or an unknown upload, one already sent. message_body is
# optional with attachments, so its required/blank errors come from the serializer's validate().
@document_validation_errors(
    {"attachments": ["does_not_exist", "already_attached"], "message_body": ["required", "blank"]},
    actions=["create"],
)
@document_validation_errors(MENTION_ERRORS, actions=["create", "partial_update"])
class ConversationMessageViewSet(_MessageViewSetBase):
    def get_conversation(self) -> Conversation:
        if not hasattr(self, "_conversation"):
            self._conversation = conversation_for_participant_or_404(
                user=self.request.user, conversation_id=self.kwargs["conversation_id"]
            )
        return self._conversation

    def scoped_queryset(self):
        return selectors.message_list_for_conversation(conversation=self.get_conversation())

    def known_count(self) -> int | None:
        if set(self.request.query_params) <= NON_FILTERING_PARAMS:
            return self.get_conversation().message_count
        return None

    def list(self, request, *args, **kwargs):
        if set(request.query_params) <= PLAIN_PAGE_PARAMS:
            # Newest first, unfiltered, by page number: the page's ids on the timeline index,
            # then their rows, each by a statement compiled once (chats/prepared.py).
            ids = self.paginate_queryset(selectors.timeline_ids(conversation=self.get_conversation()))
            rows = selectors.message_rows(ids)
            return self.get_paginated_response(message_rows_representation(rows, str(request.user.pk)))
        return super().list(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        conversation = self.get_conversation()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.send(conversation, serializer.validated_data)
