"""
Thin views: querysets come from selectors, writes go to services, and
authorization is checked where a path or payload names a conversation.
"""
from drf_spectacular.types import OpenApiTypes
from drf_standardized_errors.openapi_serializers import ErrorResponse401Serializer
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views

from chats import selectors, services
from chats.filters import ConversationFilter, MessageFilter
from chats.models import Conversation, Message, User
from chats.permissions import conversation_for_participant_or_404
from chats.serializers import (
    ConversationCreateSerializer,
    ConversationSerializer,
    MessageCreateSerializer,
    MessageSerializer,
    NestedMessageCreateSerializer,
    TokenAccessResponseSerializer,
    TokenPairResponseSerializer,
    UserProfileSerializer,
    UserRegisterSerializer,
    UserSearchQuerySerializer,
    UserSummarySerializer,
)


class ScopedViewSet(viewsets.GenericViewSet):
    """Every queryset is scoped to the requesting user by `scoped_queryset()`."""

    model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return self.model.objects.none()
        return self.scoped_queryset()

    def scoped_queryset(self):
        raise NotImplementedError


@extend_schema_view(
    create=extend_schema(
        summary="Register",
        description="Create an account (no authentication needed). Log in afterwards with `POST /api/token/`.",
        request=UserRegisterSerializer,
        responses={201: UserProfileSerializer},
        auth=[],
    ),
    list=extend_schema(
        summary="Find people",
        description=(
            "Without `search`: the people you already share a conversation with. With `search`: "
            "active users whose first or last name contains every word of it, or whose email is "
            "exactly it. You are never listed yourself."
        ),
        parameters=[
            OpenApiParameter("search", OpenApiTypes.STR, description="Name words or an exact email (max 100 chars).")
        ],
    ),
)
class UserViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, ScopedViewSet):
    model = User
    serializer_class = UserSummarySerializer
    filter_backends = []  # The selector does the searching.

    def get_permissions(self):
        if self.action == "create":
            return [permissions.AllowAny()]
        return super().get_permissions()

    def get_serializer_class(self):
        if self.action == "create":
            return UserRegisterSerializer
        if self.action == "me":
            return UserProfileSerializer
        return UserSummarySerializer

    def scoped_queryset(self):
        query = UserSearchQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.user_search(user=self.request.user, term=query.validated_data.get("search", ""))

    def create(self, request, *args, **kwargs):
        serializer = UserRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return Response(UserProfileSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Your account", responses={200: UserProfileSerializer})
    @action(detail=False, methods=["get"])
    def me(self, request):
        return Response(UserProfileSerializer(request.user).data)


@extend_schema_view(
    list=extend_schema(summary="Your conversations, most recently active first"),
    retrieve=extend_schema(summary="One of your conversations"),
    create=extend_schema(
        summary="Start a conversation",
        description=(
            "You are always a participant; list the others in `participants` (duplicates collapse, "
            "at least one other person). Optional `messages` are sent by you, in order."
        ),
        request=ConversationCreateSerializer,
        responses={201: ConversationSerializer},
    ),
)
class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    model = Conversation
    serializer_class = ConversationSerializer
    lookup_field = "conversation_id"
    lookup_value_regex = "[^/]+"
    filterset_class = ConversationFilter
    # Emails match only exactly: co-participants must not learn an address letter by letter.
    search_fields = ["participants__first_name", "participants__last_name", "=participants__email"]
    ordering_fields = ["created_at", "last_activity_at"]

    def scoped_queryset(self):
        return selectors.conversation_list_for_user(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = ConversationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = services.conversation_create(
            creator=request.user,
            participant_ids=data["participants"],
            message_bodies=[m["message_body"] for m in data.get("messages", [])],
        )
        conversation = self.get_queryset().get(pk=conversation.pk)
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


class _MessageViewSetBase(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ScopedViewSet
):
    model = Message
    serializer_class = MessageSerializer
    lookup_field = "message_id"
    lookup_value_regex = "[^/]+"
    filterset_class = MessageFilter
    search_fields = ["message_body"]
    ordering_fields = ["sent_at"]

    def send(self, conversation: Conversation, message_body: str) -> Response:
        message = services.message_send(
            conversation=conversation, sender=self.request.user, message_body=message_body
        )
        message = Message.objects.select_related("sender").get(pk=message.pk)
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="Messages of all your conversations, newest first"),
    retrieve=extend_schema(summary="One message from one of your conversations"),
    create=extend_schema(
        summary="Send a message",
        description="The sender is always you. The conversation must be one you take part in.",
        request=MessageCreateSerializer,
        responses={201: MessageSerializer},
    ),
)
class MessageViewSet(_MessageViewSetBase):
    def scoped_queryset(self):
        return selectors.message_list_for_user(user=self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        conversation = selectors.conversations_of(user=request.user).filter(pk=data["conversation"]).first()
        if conversation is None:
            # Same answer whether it does not exist or is someone else's.
            raise serializers.ValidationError({"conversation": ["No conversation of yours has this id."]})
        return self.send(conversation, data["message_body"])


@extend_schema_view(
    list=extend_schema(summary="Messages of one conversation, newest first"),
    retrieve=extend_schema(summary="One message of this conversation"),
    create=extend_schema(
        summary="Send a message to this conversation",
        request=NestedMessageCreateSerializer,
        responses={201: MessageSerializer},
    ),
)
class ConversationMessageViewSet(_MessageViewSetBase):
    def get_conversation(self) -> Conversation:
        if not hasattr(self, "_conversation"):
            self._conversation = conversation_for_participant_or_404(
                user=self.request.user, conversation_id=self.kwargs["conversation_id"]
            )
        return self._conversation

    def scoped_queryset(self):
        return selectors.message_list_for_conversation(conversation=self.get_conversation())

    def create(self, request, *args, **kwargs):
        conversation = self.get_conversation()
        serializer = NestedMessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.send(conversation, serializer.validated_data["message_body"])


@extend_schema_view(
    post=extend_schema(
        summary="Log in: email and password for a JWT pair",
        responses={200: TokenPairResponseSerializer, 401: ErrorResponse401Serializer},
    )
)
class TokenObtainView(jwt_views.TokenObtainPairView):
    pass


@extend_schema_view(
    post=extend_schema(
        summary="Trade a refresh token for a new access token",
        responses={200: TokenAccessResponseSerializer, 401: ErrorResponse401Serializer},
    )
)
class TokenRefreshView(jwt_views.TokenRefreshView):
    pass
