"""
JWT logins and logouts (wired in by SIMPLE_JWT's TOKEN_OBTAIN_SERIALIZER and
TOKEN_BLACKLIST_SERIALIZER settings, so the views keep SimpleJWT's).

Each login (POST /api/token/) gets a random `login_id` claim. SimpleJWT copies a
refresh token's claims into the access tokens it mints and keeps them through
rotation, so every token of one login carries the same id: a WebSocket
authenticated with any of them belongs to that login, and logging out closes
that login's sockets, not those of the user's other devices.
"""
from functools import lru_cache
from uuid import uuid4

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt import authentication as jwt_authentication
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow

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


@lru_cache(maxsize=4096)
def _verified_access_token(raw: bytes) -> AccessToken:
    """An access token whose signature and claims were checked (a TokenError is not remembered)."""
    return AccessToken(raw)


class JWTAuthentication(jwt_authentication.JWTAuthentication):
    """
    SimpleJWT's, cheaper on what every API request pays for: a token already verified by this
    process is not verified again (clients send the same one for its whole life: only its expiry
    is checked again), and the user is read by selectors.user_by_id.
    """

    def get_validated_token(self, raw_token: bytes):
        try:
            token = _verified_access_token(bytes(raw_token))
            token.check_exp(current_time=aware_utcnow())  # not the time it was verified at
            return token
        except TokenError:
            return super().get_validated_token(raw_token)  # SimpleJWT's own answer

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
