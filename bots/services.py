"""Every write of personal access tokens."""
import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from bots.models import PersonalAccessToken
from chats import events
from chats.models import User

# Every token starts with it: how the WebSocket's auth frame tells a token from an access JWT.
TOKEN_PREFIX = "mat_"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def access_token_create(*, user: User, name: str, scopes: Iterable[str]) -> tuple[PersonalAccessToken, str]:
    """A new token for the user, and its value (returned only now; only its hash is kept)."""
    scopes = sorted(set(scopes))
    if not scopes or not set(scopes) <= set(PersonalAccessToken.Scope.values):
        raise ValidationError({"scopes": ValidationError("Choose read, send or both.", code="invalid")})
    User.objects.select_for_update().filter(pk=user.pk).exists()  # two creations at once cannot both pass
    if PersonalAccessToken.objects.filter(user=user).count() >= settings.ACCESS_TOKENS_MAX_PER_USER:
        raise ValidationError({"name": ValidationError(
            f"At most {settings.ACCESS_TOKENS_MAX_PER_USER} tokens per user: revoke one first.", code="too_many_tokens"
        )})
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = PersonalAccessToken(
        user=user, name=name, token_hash=token_hash(value), prefix=value[:12], scopes=",".join(scopes)
    )
    token.full_clean()
    token.save()
    return token, value


def access_token_login_id(token_id: UUID) -> str:
    """The login a token stands for on WebSockets: revoking the token closes the sockets it opened."""
    return f"pat:{token_id.hex}"


def access_token_use(*, value: str) -> PersonalAccessToken | None:
    """
    The token with this value, its user loaded, if it may be used: it exists (not revoked) and its
    user is active; None otherwise. Records when it was last used (at most once a minute).
    """
    token = PersonalAccessToken.objects.select_related("user").filter(token_hash=token_hash(value)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


@transaction.atomic
def access_token_revoke(*, token: PersonalAccessToken) -> None:
    """
    The token stops working at once: the next request with it is a 401, and the WebSockets it
    opened close with 4401 within seconds (after the commit).
    """
    login_id = access_token_login_id(token.pk)
    token.delete()
    events.credentials_revoked(token.user_id, login_id=login_id)
