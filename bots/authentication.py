"""
`Authorization: Token <personal access token>`: the request acts as the token's user, within its
scopes (permissions.TokenScopes). Throttled like any request of that user (UserRateThrottle keys
on the user).
"""
from rest_framework import authentication, exceptions

from bots.services import access_token_use


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
        token = access_token_use(value=value)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword
