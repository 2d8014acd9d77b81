"""Every write of personal access tokens."""
import hashlib
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from bots.models import PersonalAccessToken
from chats.models import User

TOKEN_PREFIX = "mat_"


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


@transaction.atomic
def access_token_revoke(*, token: PersonalAccessToken) -> None:
    """The token stops working at once (the next request with it is a 401)."""
    token.delete()
