"""
JWT logins and logouts (wired in by SIMPLE_JWT's TOKEN_OBTAIN_SERIALIZER and
TOKEN_BLACKLIST_SERIALIZER settings, so the views keep SimpleJWT's).

Each login (POST /api/token/) gets a random `login_id` claim. SimpleJWT copies a
refresh token's claims into the access tokens it mints and keeps them through
rotation, so every token of one login carries the same id: a WebSocket
authenticated with any of them belongs to that login, and logging out closes
that login's sockets, not those of the user's other devices.
"""
from uuid import uuid4

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt import authentication as jwt_authentication
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from chats import selectors, services
from chats.services import LOGIN_ID_CLAIM


# Named as SimpleJWT's own, so the OpenAPI components keep their names.
class TokenObtainPairSerializer(jwt_serializers.TokenObtainPairSerializer):
    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token[LOGIN_ID_CLAIM] = uuid4().hex
        return token


class TokenBlacklistSerializer(jwt_serializers.TokenBlacklistSerializer):
    def validate(self, attrs):
        # Invalid, expired or already blacklisted: 401, as SimpleJWT's own.
        services.user_logout(refresh=self.token_class(attrs["refresh"]))
        return {}


class JWTAuthentication(jwt_authentication.JWTAuthentication):
    """SimpleJWT's, with the user read by selectors.user_by_id (every API request pays for it)."""

    def get_user(self, validated_token):
        try:
            user = selectors.user_by_id(validated_token[api_settings.USER_ID_CLAIM])
        except (KeyError, ValidationError, ValueError, TypeError) as exc:
            raise InvalidToken(_("Token contained no recognizable user identification")) from exc
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user
