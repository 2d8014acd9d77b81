"""
Notification preferences: reading and changing a user's settings, and the one rule that decides
whether a message notifies a member of its conversation.
"""
from django.db import transaction
from django.utils import timezone

from chats.models import User
from notifications.models import NotificationPreferences

# ConversationMembership.notify_level values.
LEVEL_ALL, LEVEL_MENTIONS, LEVEL_NONE = "all", "mentions", "none"


def preferences_for(*, user: User) -> NotificationPreferences:
    """The user's settings; an unsaved row with the defaults when they never changed any (no write on a read)."""
    found = NotificationPreferences.objects.filter(user=user).first()
    return found if found is not None else NotificationPreferences(user=user)


@transaction.atomic
def preferences_update(*, user: User, **changes) -> NotificationPreferences:
    """Changes the given settings (fields of NotificationPreferences); the others stay."""
    preferences, _ = NotificationPreferences.objects.select_for_update().get_or_create(user=user)
    for name, value in changes.items():
        setattr(preferences, name, value)
    preferences.updated_at = timezone.now()
    preferences.full_clean()
    preferences.save()
    return preferences


def should_notify(*, muted: bool, level: str, mentioned: bool) -> bool:
    """
    Whether a message notifies a member (push or email), from their membership of its conversation:
    never when muted or at level "none"; at level "mentions" only when the message mentions them.

    `mentioned` comes from the mentions feature (built separately): until a message can carry
    mentions, callers pass False ("no mentions known" means not mentioned), so "mentions" then
    notifies of nothing. This is the one place that rule lives; plug the real flag in here.
    """
    if muted or level == LEVEL_NONE:
        return False
    if level == LEVEL_MENTIONS:
        return mentioned
    return True
