"""
`Authorization: Token <personal access token>`: the request acts as the token's user, within its
scopes (permissions.TokenScopes). Throttled like any request of that user (UserRateThrottle keys
on the user).
"""
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from bots.models import PersonalAccessToken
from bots.services import token_hash

LAST_USED_RESOLUTION = timedelta(minutes=1)


class PersonalAccessTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send one token: Authorization: Token <token>.")
        try:
            value = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = (
            PersonalAccessToken.objects.select_related("user").filter(token_hash=token_hash(value)).first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword
