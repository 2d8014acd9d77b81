from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.decorators import api_view
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt import views as jwt_views

from chats.schema import (
    TOKEN_OBTAIN_EXAMPLES,
    TOKEN_REFRESH_EXAMPLES,
    TokenBlacklistErrorResponse401Serializer,
    TokenObtainErrorResponse401Serializer,
    TokenRefreshErrorResponse401Serializer,
)
from chats.serializers import PingSerializer, TokenPairResponseSerializer
from chats.throttles import LoginRateThrottle


class RefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except get_user_model().DoesNotExist:  # the account was deleted since
            raise AuthenticationFailed("No active account found for the given token.", "no_active_account")


@extend_schema_view(
    post=extend_schema(
        summary="Log in: email and password for a JWT pair",
        description=(
            "Failed password checks are limited per client address and per account, on every route "
            "that takes a password (HTTP Basic, the login forms, `current_password` too): past a limit "
            "the answer is 429 with `Retry-After`, even for the right password."
        ),
        responses={200: TokenPairResponseSerializer, 401: TokenObtainErrorResponse401Serializer},
        examples=TOKEN_OBTAIN_EXAMPLES,
    )
)
class TokenObtainView(jwt_views.TokenObtainPairView):
    throttle_classes = [LoginRateThrottle]


@extend_schema_view(
    post=extend_schema(
        summary="Trade a refresh token for a new pair",
        description=(
            "Refresh tokens rotate: the response carries a new `refresh` as well as a new `access`, "
            "and the refresh token you sent is blacklisted (using it again is a 401)."
        ),
        responses={200: TokenPairResponseSerializer, 401: TokenRefreshErrorResponse401Serializer},
        examples=TOKEN_REFRESH_EXAMPLES,
    )
)
class TokenRefreshView(jwt_views.TokenRefreshView):
    serializer_class = RefreshSerializer
    throttle_classes = [LoginRateThrottle]


@extend_schema_view(
    post=extend_schema(
        summary="Log out: blacklist a refresh token",
        description="The refresh token can no longer be used. Access tokens expire on their own (15 minutes).",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="Blacklisted: an empty object, `{}`."),
            401: TokenBlacklistErrorResponse401Serializer,
        },
        examples=TOKEN_REFRESH_EXAMPLES,
    )
)
class TokenBlacklistView(jwt_views.TokenBlacklistView):
    throttle_classes = [LoginRateThrottle]


@extend_schema(
    summary="Check your credentials",
    description=(
        "Answers who you are, with no database work beyond authentication: a cheap way for a client "
        "to test a token, and the floor the benchmark compares every endpoint against."
    ),
    responses={200: PingSerializer},
)
@api_view(["GET"])
def ping(request):
    return Response({"status": "ok", "user_id": str(request.user.pk)})
