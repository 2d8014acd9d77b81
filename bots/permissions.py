from rest_framework import permissions

from bots.models import PersonalAccessToken

# What a personal access token may never do, whatever its scopes: manage credentials (a leaked
# token cannot make more tokens, change the password or mint JWTs) or the account's webhooks.
REFUSED_PREFIXES = ("/api/tokens/", "/api/users/me/password/", "/api/token/", "/api/webhooks/")


class TokenScopes(permissions.BasePermission):
    """Requests authenticated by a personal access token: `read` for safe methods, `send` for the rest."""

    message = "This token's scopes do not allow this request."

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, PersonalAccessToken):
            return True
        if request.path.startswith(REFUSED_PREFIXES):
            self.message = "Personal access tokens cannot manage tokens, passwords or webhooks."
            return False
        needed = PersonalAccessToken.Scope.READ if request.method in permissions.SAFE_METHODS \
            else PersonalAccessToken.Scope.SEND
        return needed in token.scope_list
