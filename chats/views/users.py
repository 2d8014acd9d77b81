from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.response import Response

from chats import selectors, services
from chats.models import User
from chats.password_limits import password_check
from chats.schema import (
    PASSWORD_CHANGE_EXAMPLES,
    REGISTER_EXAMPLES,
    document_validation_errors,
    field_error_codes,
)
from chats.serializers import (
    PasswordChangeSerializer,
    UserMeSerializer,
    UserProfileSerializer,
    UserRegisterSerializer,
    UserSearchQuerySerializer,
    UserSettingsSerializer,
    UserSummarySerializer,
)
from chats.throttles import RegisterRateThrottle
from chats.views.base import ScopedViewSet


@extend_schema_view(
    create=extend_schema(
        summary="Register",
        description="Create an account (no authentication needed). Log in afterwards with `POST /api/token/`.",
        request=UserRegisterSerializer,
        responses={201: UserProfileSerializer},
        examples=REGISTER_EXAMPLES,
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
@document_validation_errors(
    {"search": field_error_codes(UserSearchQuerySerializer().fields["search"], "search")}, actions=["list"]
)
# user_register: full_clean() still finds the address taken if another registration just won.
@document_validation_errors({"email": ["unique"]}, actions=["create"])
class UserViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, ScopedViewSet):
    model = User
    serializer_class = UserSummarySerializer
    filter_backends = []  # The selector does the searching.

    def get_permissions(self):
        if self.action == "create":
            return [permissions.AllowAny()]
        return super().get_permissions()

    def perform_authentication(self, request):
        # Registering needs no credentials, so stale ones (an expired token) must not refuse it.
        if self.action == "create":
            request.user, request.auth = AnonymousUser(), None
            return
        super().perform_authentication(request)

    def get_throttles(self):
        if self.action == "create":
            return [RegisterRateThrottle()]
        return super().get_throttles()

    def get_serializer_class(self):
        if self.action == "create":
            return UserRegisterSerializer
        if self.action == "me":
            return UserMeSerializer
        if self.action == "change_password":
            return PasswordChangeSerializer
        return UserSummarySerializer

    def scoped_queryset(self):
        query = UserSearchQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.user_search(user=self.request.user, term=query.validated_data.get("search", ""))

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return Response(UserProfileSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Your account, with your total unread count", responses={200: UserMeSerializer})
    @extend_schema(
        methods=["PATCH"],
        summary="Change your account's settings",
        description="Only the fields sent change. `presence_visible`: whether people who share a "
        "conversation with you see when you are online.",
        request=UserSettingsSerializer,
        responses={200: UserMeSerializer},
    )
    @action(detail=False, methods=["get", "patch"])
    def me(self, request):
        user = request.user
        if request.method == "PATCH":
            serializer = UserSettingsSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            user = services.user_update_settings(user=user, **serializer.validated_data)
        totals = selectors.unread_totals_for_user(user=user)
        user.unread_count, user.unread_mentions = totals["unread_count"], totals["unread_mentions"]
        return Response(UserMeSerializer(user).data)

    @extend_schema(
        summary="Change your password",
        description=(
            "Needs the current password. Every refresh token issued before is blacklisted, so other "
            "devices must log in again; this browser session stays logged in. A wrong `current_password` "
            "counts as a failed login: past the password limits (per address and per account) the answer "
            "is 429 with `Retry-After`, whatever the password."
        ),
        request=PasswordChangeSerializer,
        responses={204: OpenApiResponse(description="Changed.")},
        examples=PASSWORD_CHANGE_EXAMPLES,
    )
    @action(detail=False, methods=["post"], url_path="me/password")
    def change_password(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # current_password is a password guess like a login: the same limits, counted first.
        check, wrong_password = password_check(request, request.user.email), False
        try:
            services.user_change_password(user=request.user, **serializer.validated_data)
        except ValidationError as exc:
            wrong_password = "current_password" in getattr(exc, "error_dict", {})
            raise
        finally:
            if not wrong_password:
                check.passed()
        # Only a session login keeps a session: a JWT or Basic request must not create one.
        if isinstance(request.successful_authenticator, SessionAuthentication):
            update_session_auth_hash(request._request, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
