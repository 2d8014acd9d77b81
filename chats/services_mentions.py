"""
Mentions (docs/mentions.md). MessageMention rows are the truth; Message.mentions is what payloads
show, and ConversationMembership.unread_mentions counts, per member, the unread messages (as
unread_count counts them: after their read marker, not deleted) that mention them. All three change
only in the message services (chats/services.py), under the conversation's row lock, so they agree.

A message mentions the union of the `mentions` its sender lists and the `@[user_id]` tokens of its
text, in order of first mention, duplicates collapsed, the sender left out. Each must be a
participant of the conversation (else 400 on `mentions`, the same answer for an unknown id), at most
MAX_MENTIONS of them.
"""
import re
from collections.abc import Iterable, Sequence
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import F, Q

from chats.models import MAX_MENTIONS, ConversationMembership, Message, MessageMention
from chats.selectors import member_ids

# `@[<user_id>]`: a user_id in its canonical form (hyphenated, any case) in square brackets.
# Nothing else is a mention: "@[bob]" or an e-mail address stays plain text.
MENTION_TOKEN = re.compile(r"@\[([0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12})\]")


def inline_mentions(body: str) -> list[UUID]:
    """The user_ids of the `@[user_id]` tokens of a text, in order."""
    return [UUID(token) for token in MENTION_TOKEN.findall(body or "")]


def mentions_resolve(
    *, conversation_id, sender_id, body: str, listed: Iterable[UUID] = (), kept: Iterable[UUID] = ()
) -> list[str]:
    """
    The ids (text) a message of `sender_id` with this text and these listed mentions mentions,
    checked against the conversation's participants (one query, only if there is any mention).
    `kept`: mentions an edit keeps; those who have left since are dropped, not refused.
    """
    wanted = [user_id for user_id in dict.fromkeys([*listed, *inline_mentions(body)]) if user_id != sender_id]
    kept = [user_id for user_id in kept if user_id not in wanted and user_id != sender_id]
    if not wanted and not kept:
        return []
    if len(wanted) > MAX_MENTIONS:
        raise ValidationError(
            {"mentions": [ValidationError(f"A message mentions at most {MAX_MENTIONS} people.", code="max_length")]}
        )
    members = set(member_ids(conversation_id=conversation_id))
    wanted += [user_id for user_id in kept if user_id in members]
    strangers = [user_id for user_id in wanted if user_id not in members]
    if strangers:
        # The same answer for an unknown id and someone else's: it reveals nobody.
        raise ValidationError({"mentions": [
            ValidationError(f"Not a participant of this conversation: {user_id}.", code="not_participant")
            for user_id in strangers
        ]})
    return [str(user_id) for user_id in wanted]


def _unread_by(message: Message) -> Q:
    """The memberships for whom `message` is unread (their marker before it)."""
    return Q(last_read_at__isnull=True) | Q(last_read_at__lt=message.sent_at)


def _insert_rows(message: Message, user_ids) -> None:
    MessageMention.objects.bulk_create(
        MessageMention(message=message, user_id=user_id, conversation_id=message.conversation_id)
        for user_id in user_ids
    )


def mentions_record(*, message: Message, mentioned: Sequence[str]) -> None:
    """A new message's mentions: its rows, and +1 unread mention for each person (it is unread for them)."""
    if not mentioned:
        return
    _insert_rows(message, mentioned)
    ConversationMembership.objects.filter(conversation_id=message.conversation_id, user_id__in=mentioned).update(
        unread_mentions=F("unread_mentions") + 1
    )


def mentions_replace(*, message: Message, mentioned: Sequence[str]) -> None:
    """
    An edited (or deleted: `mentioned` empty) message's mentions become `mentioned`: the rows follow,
    and the people added (or dropped) for whom it is unread gain (or lose) one unread mention.
    Sets message.mentions; the caller saves it.
    """
    before, after = set(message.mentions), set(mentioned)
    dropped, added = before - after, after - before
    if dropped:
        MessageMention.objects.filter(message=message, user_id__in=dropped).delete()
        ConversationMembership.objects.filter(
            _unread_by(message), conversation_id=message.conversation_id, user_id__in=dropped, unread_mentions__gt=0
        ).update(unread_mentions=F("unread_mentions") - 1)
    if added:
        _insert_rows(message, added)
        ConversationMembership.objects.filter(
            _unread_by(message), conversation_id=message.conversation_id, user_id__in=added
        ).update(unread_mentions=F("unread_mentions") + 1)
    message.mentions = list(mentioned)


def mentions_kept_on_edit(message: Message) -> list[UUID]:
    """The mentions an edit keeps when it lists none: those of the message not made by its old text's tokens."""
    from_text = {str(user_id) for user_id in inline_mentions(message.message_body)}
    return [UUID(user_id) for user_id in message.mentions if user_id not in from_text]


def unread_mentions_count(*, conversation_id, user_id, after) -> int:
    """Messages mentioning the user in the conversation sent after `after` (None: all), not deleted."""
    mentions = MessageMention.objects.filter(user_id=user_id, conversation_id=conversation_id)
    if after is not None:
        mentions = mentions.filter(message__sent_at__gt=after)
    return mentions.filter(message__is_deleted=False).count()
