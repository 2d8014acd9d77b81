"""
Writes of reactions and pins: services as in chats/services.py (one transaction
each, `@events.atomic`, the same lock order: users, then conversations, then messages).

Reactions: MessageReaction rows are the truth; Message.reaction_summary is what payloads show,
rewritten from the rows' change under the message's row lock, so it is always exact.

Pins: MessagePin rows, changed under the conversation's row lock (so the cap of MAX_PINS holds
against concurrent pins, and message_delete's unpinning is ordered with them).
"""
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils import timezone

from chats import events, selectors, services_groups
from chats.emoji import emoji_code, is_single_emoji
from chats.models import MAX_PINS, MAX_REACTION_KINDS, Conversation, Message, MessagePin, MessageReaction, User


def _lock_message(message: Message) -> Message:
    """Lock order: the conversation's row, then the message's. Every change that emits an event holds both."""
    selectors.conversation_for_update(conversation_id=message.conversation_id)
    return selectors.for_update(Message.objects.filter(pk=message.pk)).get()


def _summary_with(summary: list, emoji: str, user_id: str) -> list:
    for entry in summary:
        if entry["emoji"] == emoji:
            if user_id not in entry["user_ids"]:
                entry["user_ids"].append(user_id)
            return summary
    return [*summary, {"emoji": emoji, "user_ids": [user_id]}]


def _summary_without(summary: list, emoji: str, user_id: str) -> list:
    out = []
    for entry in summary:
        if entry["emoji"] == emoji:
            entry = {**entry, "user_ids": [uid for uid in entry["user_ids"] if uid != user_id]}
        if entry["user_ids"]:
            out.append(entry)
    return out


def _check_emoji(emoji: str) -> None:
    if not is_single_emoji(emoji):
        raise ValidationError({"emoji": ["Not a single emoji (at most 32 bytes of UTF-8)."]})


@events.atomic
def reaction_add(*, message: Message, user: User, emoji: str) -> tuple[Message, bool]:
    """
    The user reacts to a message of a conversation they take part in (the caller checked).
    Returns (message with its new summary, created); reacting again with the same emoji changes nothing.
    """
    _check_emoji(emoji)
    locked = _lock_message(message)
    if locked.is_deleted:
        raise ValidationError({"message_id": ["A deleted message cannot take reactions."]})
    code = emoji_code(emoji)
    if MessageReaction.objects.filter(message=locked, user=user, emoji_code=code).exists():
        return locked, False
    if len(locked.reaction_summary) >= MAX_REACTION_KINDS and emoji not in {
        entry["emoji"] for entry in locked.reaction_summary
    }:
        raise ValidationError({"emoji": [f"A message takes at most {MAX_REACTION_KINDS} different emojis."]})
    MessageReaction.objects.create(message=locked, user=user, emoji_code=code, created_at=timezone.now())
    locked.reaction_summary = _summary_with(locked.reaction_summary, emoji, str(user.pk))
    locked.save(update_fields=["reaction_summary"])
    events.reaction_changed("reaction.added", locked, emoji=emoji, user_id=user.pk)
    return locked, True


@events.atomic
def reaction_remove(*, message: Message, user: User, emoji: str) -> Message:
    """Takes the user's reaction back; none to take back is no change (idempotent)."""
    _check_emoji(emoji)
    locked = _lock_message(message)
    deleted, _ = MessageReaction.objects.filter(message=locked, user=user, emoji_code=emoji_code(emoji)).delete()
    if deleted:
        locked.reaction_summary = _summary_without(locked.reaction_summary, emoji, str(user.pk))
        locked.save(update_fields=["reaction_summary"])
        events.reaction_changed("reaction.removed", locked, emoji=emoji, user_id=user.pk)
    return locked


def reactions_clear(*, message: Message) -> None:
    """A message becoming a tombstone loses its reactions (the caller holds its lock; message.deleted tells)."""
    if message.reaction_summary:
        MessageReaction.objects.filter(message=message).delete()
        message.reaction_summary = []


@events.atomic
def reactions_delete_for_user(*, user_id: UUID) -> None:
    """
    A user who goes (user_delete, after they left their conversations) leaves no name in the
    summaries: each message they reacted to is rewritten under its conversation's lock, then its
    own, and the remaining participants get a reaction.removed for each of their reactions.
    """
    message_ids = list(MessageReaction.objects.filter(user_id=user_id).values_list("message_id", flat=True).distinct())
    conversation_ids = set(Message.objects.filter(pk__in=message_ids).values_list("conversation_id", flat=True))
    for conversation_id in sorted(conversation_ids, key=str):
        selectors.conversation_for_update(conversation_id=conversation_id)
        locked = selectors.for_update(
            Message.objects.filter(conversation_id=conversation_id, pk__in=message_ids).order_by("pk")
        )
        for message in locked:
            for emoji in [entry["emoji"] for entry in message.reaction_summary if str(user_id) in entry["user_ids"]]:
                message.reaction_summary = _summary_without(message.reaction_summary, emoji, str(user_id))
                events.reaction_changed("reaction.removed", message, emoji=emoji, user_id=user_id)
            message.save(update_fields=["reaction_summary"])
    MessageReaction.objects.filter(user_id=user_id).delete()


@events.atomic
def pin_add(*, conversation: Conversation, user: User, message_id: UUID) -> tuple[MessagePin, bool]:
    """
    A participant (the caller checked; in a group, its owner or an admin: chats/services_groups.py)
    pins a message of the conversation. Returns (pin, created): pinning a pinned message changes
    nothing. Deleted messages cannot be pinned; at most MAX_PINS.
    """
    locked = selectors.conversation_for_update(conversation_id=conversation.pk)
    services_groups.check_may_manage(locked, user, "pin messages")
    message = Message.objects.filter(pk=message_id, conversation=locked).select_related("sender").first()
    if message is None:
        raise ValidationError({"message_id": ["No message with this id in this conversation."]})
    if message.is_deleted:
        raise ValidationError({"message_id": ["A deleted message cannot be pinned."]})
    existing = MessagePin.objects.filter(conversation=locked, message=message).select_related("pinned_by").first()
    if existing is not None:
        existing.message = message
        return existing, False
    if MessagePin.objects.filter(conversation=locked).count() >= MAX_PINS:
        raise ValidationError({"message_id": [f"A conversation has at most {MAX_PINS} pinned messages."]})
    pin = MessagePin.objects.create(conversation=locked, message=message, pinned_by=user, pinned_at=timezone.now())
    events.message_pinned(pin)
    return pin, True


@events.atomic
def pin_remove(*, conversation: Conversation, user: User, message_id: UUID) -> None:
    """A participant (in a group, its owner or an admin) unpins a message; one not pinned is no change (idempotent)."""
    locked = selectors.conversation_for_update(conversation_id=conversation.pk)
    services_groups.check_may_manage(locked, user, "unpin messages")
    deleted, _ = MessagePin.objects.filter(conversation=locked, message_id=message_id).delete()
    if deleted:
        events.message_unpinned(locked.pk, message_id, user_id=user.pk)


def pins_clear(*, message: Message) -> None:
    """A message becoming a tombstone is unpinned (the caller holds the conversation's lock)."""
    deleted, _ = MessagePin.objects.filter(message=message).delete()
    if deleted:
        events.message_unpinned(message.conversation_id, message.pk, user_id=None)
