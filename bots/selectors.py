"""Reads of personal access tokens, scoped to their owner (another user's token is None, hence 404)."""
import uuid

from django.db.models import QuerySet

from bots.models import PersonalAccessToken
from chats.models import User


def access_token_list_for_user(*, user: User) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("created_at", "token_id")


def access_token_for_user(*, user: User, token_id) -> PersonalAccessToken | None:
    try:
        token_id = uuid.UUID(str(token_id))
    except ValueError:
        return None
    return PersonalAccessToken.objects.filter(user=user, pk=token_id).first()
