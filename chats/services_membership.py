"""
Per-member settings of a conversation: mute and archive (ConversationMembership.muted /
archived_at), changed by the member alone, with a `membership.updated` event to their own
stream so their other devices follow.

Lock: the member's membership row only (select_for_update). message_send, which clears
`archived_at` for the recipients who have not muted, updates these rows while it holds the
conversation's lock; this service never takes that lock, so the two cannot deadlock, and the
row lock orders them.
"""
from django.utils import timezone

from chats import events, selectors
from chats.models import Conversation, ConversationMembership, User


def membership_of(*, conversation: Conversation, user: User) -> ConversationMembership:
    """The user's membership of the conversation (the caller has checked they take part)."""
    return ConversationMembership.objects.get(conversation=conversation, user=user)


@events.atomic
def membership_update(
    *,
    conversation: Conversation,
    user: User,
    muted: bool | None = None,
    archived: bool | None = None,
    notifications: str | None = None,
) -> ConversationMembership:
    """
    Mute/unmute, archive/unarchive the conversation for `user`, and set which of its messages
    notify them (`notifications`: all / mentions / none); None leaves a setting as it is.
    Archiving keeps the first `archived_at`; the event is sent only when something changed.
    """
    membership = selectors.for_update(ConversationMembership.objects.filter(conversation=conversation, user=user)).get()
    changed = []
    if muted is not None and membership.muted != muted:
        membership.muted = muted
        changed.append("muted")
    if archived is not None and (membership.archived_at is not None) != archived:
        membership.archived_at = timezone.now() if archived else None
        changed.append("archived_at")
    if notifications is not None and membership.notify_level != notifications:
        membership.notify_level = notifications
        changed.append("notify_level")
    if changed:
        membership.save(update_fields=changed)
        events.membership_changed(membership)
    return membership
