"""
Real-time events. Services call these while they write (see `atomic` below): the
events are recorded in each recipient's stream (chats/stream.py: numbered with
`event_id`, stored in the same transaction), then, after commit, published once to
every server process, which hands them to its sockets of the recipients
(chats/delivery.py).

Frames have the shapes the REST API returns: {"type", "conversation_id", ...,
"event_id"}. Live delivery may still fail (a Redis outage, a socket that stopped
reading): the stream has every event, and sockets and clients catch up from it
(chats/consumers.py; GET /api/events/?since=).
"""
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal
from rest_framework.renderers import JSONRenderer

from chats import delivery, outbox, stream
from chats.models import Message, MessagePin
from chats.selectors import (
    conversation_list_for_user,
    conversation_row,
    member_ids,
    member_states,
    participants_by_conversation,
)
from chats.serializers import (
    conversation_rows_representation,
    message_representation,
    person_representation,
    reactions_representation,
)

logger = logging.getLogger(__name__)


def as_plain_json(data) -> dict:
    # Exactly what the REST API would render (UUIDs and datetimes as strings).
    return json.loads(JSONRenderer().render(data))


# --- events of the user streams (chats/stream.py) ----------------------------------------
#
# A service that changes something people see emits events by calling the functions below
# inside its transaction. Each call leaves an intent; at the end of the service (`atomic`),
# still inside its transaction, the intents become frames (the state as it will commit, the
# recipients as they are then: the participants at that moment), which are numbered and stored
# in each recipient's stream, then delivered to their sockets once the transaction commits.
# Nothing is announced that did not commit, and nothing commits without its events. Events to
# more than EVENTS_INLINE_RECIPIENTS people are stored in the transaction as one outbox row
# instead, and numbered, stored in the streams and delivered just after it (chats/outbox.py).

_collecting = threading.local()

# Sent after each commit that recorded events, with `recipients` (a set of user ids): what other
# channels hang on (notifications/: the recipients' webhooks get a delivery task).
events_committed = Signal()
# Sent after the commit of each new message (message.created), with `message`: push notifications
# hang on it (notifications/push.py).
message_created = Signal()


def atomic(service):
    """transaction.atomic for a service that emits events: they are recorded at its end, in its transaction."""

    @functools.wraps(service)
    def wrapper(*args, **kwargs):
        outer = getattr(_collecting, "intents", None)
        if outer is not None:  # called by another service: its end records
            mark = len(outer)
            try:
                with transaction.atomic():  # a savepoint
                    return service(*args, **kwargs)
            except BaseException:
                del outer[mark:]  # rolled back to the savepoint: so are its events
                raise
        with transaction.atomic():
            _collecting.intents = intents = []
            try:
                result = service(*args, **kwargs)
            finally:
                _collecting.intents = None
            _record(intents)
        return result

    return wrapper


def _emit(intent: Callable[[], Iterable[tuple[UUID, dict]]]) -> None:
    intents = getattr(_collecting, "intents", None)
    if intents is not None:
        intents.append(intent)
    else:  # not inside an events.atomic service: recorded now, in a transaction of its own if need be
        with transaction.atomic():
            _record([intent])


def _record(intents: list) -> None:
    frames = [frame for intent in intents for frame in intent()]
    if not frames:
        return
    numbered = None
    large = any(isinstance(recipient, outbox.Participants) for recipient, _frame in frames)
    if not large and len({user_id for user_id, _frame in frames}) <= settings.EVENTS_INLINE_RECIPIENTS:
        # Numbered now, unless this conversation has events queued: then behind them.
        numbered = stream.record(frames, unless_queued=outbox.keys_of(frames))
    if numbered is None:  # numbered after the commit, off the request (chats/outbox.py)
        outbox.defer(frames)
    else:
        announce(numbered)


def announce(numbered: list[tuple[dict, dict[UUID, int]]]) -> None:
    """After the commit of the transaction that numbered them: delivery, and what hangs on events_committed."""
    if numbered:
        # robust: a channel layer outage is logged, never turned into a failed request; the
        # stream has the events, and sockets catch up from it.
        transaction.on_commit(lambda: deliver(numbered), robust=True)
        recipients = {user_id for _frame, event_ids in numbered for user_id in event_ids}
        transaction.on_commit(lambda: events_committed.send(sender=None, recipients=recipients), robust=True)


def deliver(numbered: list[tuple[dict, dict[UUID, int]]]) -> None:
    """Numbered frames (stream.record) to their recipients' sockets in every process: one publish."""
    delivery.publish(delivery.batches(numbered))


def message_changed(event_type: str, message: Message) -> None:
    """message.created / message.updated / message.deleted, to every participant."""

    if event_type == "message.created":
        transaction.on_commit(lambda: message_created.send(sender=None, message=message), robust=True)

    def frames():  # the message as it will commit: the caller's service does not change it afterwards
        payload = {
            "type": event_type,
            "conversation_id": str(message.conversation_id),
            "message": message_representation(message),
        }
        return to_participants(message, payload)

    _emit(frames)


def reaction_changed(event_type: str, message: Message, *, emoji: str, user_id: UUID) -> None:
    """
    reaction.added / reaction.removed, to every participant: who, which emoji, and the message's
    new summary. One frame for all, so its summary names the reactors (`user_ids`) instead of
    `me`: each client finds its own id there.
    """
    summary = [dict(entry, user_ids=list(entry["user_ids"])) for entry in message.reaction_summary]

    def frames():
        payload = {
            "type": event_type,
            "conversation_id": str(message.conversation_id),
            "message_id": str(message.pk),
            "emoji": emoji,
            "user_id": str(user_id),
            "reactions": reactions_representation(summary),
        }
        return to_participants(message, payload)

    _emit(frames)


def to_participants(message: Message, payload: dict) -> list[tuple[UUID | outbox.Participants, dict]]:
    """
    A frame about a message to every participant of its conversation: to each of them by id, or,
    for a conversation known (from the caller's locked row) to be larger than
    EVENTS_INLINE_RECIPIENTS, to its Participants, whom the outbox's INSERT reads itself.
    """
    if Message.conversation.is_cached(message):
        if message.conversation.participant_count > settings.EVENTS_INLINE_RECIPIENTS:
            return [(outbox.Participants(message.conversation_id), payload)]
    return [(user_id, payload) for user_id in member_ids(conversation_id=message.conversation_id)]


def message_pinned(pin: MessagePin) -> None:
    """message.pinned, to every participant: the message (as in message.* events) and who pinned it."""

    def frames():
        payload = as_plain_json({
            "type": "message.pinned",
            "conversation_id": pin.conversation_id,
            "message_id": pin.message_id,
            "pinned_by": person_representation(pin.pinned_by),
            "pinned_at": pin.pinned_at,
            "message": message_representation(pin.message),
        })
        return [(recipient, payload) for recipient in member_ids(conversation_id=pin.conversation_id)]

    _emit(frames)


def message_unpinned(conversation_id: UUID, message_id: UUID, *, user_id: UUID | None) -> None:
    """message.unpinned, to every participant; `user_id` null when the message was deleted."""

    def frames():
        payload = {
            "type": "message.unpinned",
            "conversation_id": str(conversation_id),
            "message_id": str(message_id),
            "user_id": None if user_id is None else str(user_id),
        }
        return [(recipient, payload) for recipient in member_ids(conversation_id=conversation_id)]

    _emit(frames)


def conversation_changed(
    event_type: str,
    conversation_id: UUID,
    *,
    recipients: Iterable[UUID] | None = None,
    exclude: UUID | None = None,
) -> None:
    """
    conversation.created / conversation.updated, each recipient seeing their own unread_count,
    unread_mentions and role; to `recipients` (default: every participant) but `exclude`. Three queries whatever the
    conversation's size: its row, its first MAX_INLINE_PARTICIPANTS people, every member's own
    state; recipients in the same state share one frame.
    """
    recipients = None if recipients is None else set(recipients)

    def frames():
        row = conversation_row(conversation_id=conversation_id)
        if row is None:
            return []
        people = participants_by_conversation([conversation_id])
        shared = conversation_rows_representation(
            [{**row, "unread_count": 0, "unread_mentions": 0, "my_role": None}], people
        )[0]
        # The last message's reactions as REST shows them to each recipient: `me`, not `user_ids`.
        summary = row["last_message__reaction_summary"] or []
        result, by_state = [], {}
        for user_id, unread_count, unread_mentions, role in member_states(conversation_id=conversation_id):
            if (recipients is not None and user_id not in recipients) or user_id == exclude:
                continue
            mine = tuple(str(user_id) in entry["user_ids"] for entry in summary)
            state = (unread_count, unread_mentions, role, mine)
            payload = by_state.get(state)
            if payload is None:
                conversation = {
                    **shared, "role": role, "unread_count": unread_count, "unread_mentions": unread_mentions,
                }
                if shared["last_message"] is not None:
                    conversation["last_message"] = {**shared["last_message"], "reactions": [
                        {"emoji": entry["emoji"], "count": len(entry["user_ids"]), "me": me}
                        for entry, me in zip(summary, mine)
                    ]}
                payload = by_state[state] = {
                    "type": event_type, "conversation_id": str(conversation_id), "conversation": conversation,
                }
            result.append((user_id, payload))
        return result

    _emit(frames)


def participant_role_changed(conversation_id: UUID, user_id: UUID, role: str, *, changed_by: UUID | None) -> None:
    """
    participant.role_changed, to every participant: whose role, the new one, and who changed it
    (null: ownership passed on because the owner left).
    """

    def frames():
        payload = {
            "type": "participant.role_changed",
            "conversation_id": str(conversation_id),
            "user_id": str(user_id),
            "role": str(role),
            "changed_by": None if changed_by is None else str(changed_by),
        }
        return [(recipient, payload) for recipient in member_ids(conversation_id=conversation_id)]

    _emit(frames)


def conversation_removed(conversation_id: UUID, user_id: UUID) -> None:
    """Tells the removed person's sockets to drop the conversation (and nothing else)."""
    _emit(lambda: [(user_id, {"type": "conversation.removed", "conversation_id": str(conversation_id)})])


def conversation_read(conversation_id: UUID, user_id: UUID) -> None:
    """The reader's new read state, to their own sockets (other devices stay in step)."""

    def frames():
        conversation = conversation_list_for_user(user=user_id).filter(pk=conversation_id).first()
        if conversation is None:
            return []
        return [(user_id, as_plain_json({
            "type": "conversation.read",
            "conversation_id": conversation_id,
            "last_read_at": conversation.my_last_read_at,
            "unread_count": conversation.unread_count,
            "unread_mentions": conversation.unread_mentions,
        }))]

    _emit(frames)


def membership_state(membership) -> dict:
    """A member's own settings of a conversation, as the API shows them (membership endpoint, events)."""
    return as_plain_json({
        "conversation_id": membership.conversation_id,
        "muted": membership.muted,
        "archived": membership.archived_at is not None,
        "archived_at": membership.archived_at,
        "notifications": membership.notify_level,
    })


def membership_changed(membership) -> None:
    """membership.updated (muted / archived / notifications), to the member's own sockets (their other devices)."""
    _emit(lambda: [(membership.user_id, {"type": "membership.updated", **membership_state(membership)})])


def read_marker_moved(conversation_id: UUID, user_id: UUID, last_read_at) -> None:
    """
    Someone's read marker moved forward ("seen by"), to the other participants: their own
    sockets get conversation.read instead. Only sent when the marker moves, never for a no-op.
    """

    def frames():
        payload = as_plain_json({
            "type": "read_marker.moved",
            "conversation_id": conversation_id,
            "user_id": user_id,
            "last_read_at": last_read_at,
        })
        return [
            (recipient, payload)
            for recipient in member_ids(conversation_id=conversation_id)
            if recipient != user_id
        ]

    _emit(frames)


def credentials_revoked(user_id: UUID, *, login_id: str | None = None) -> None:
    """
    Closes the user's open sockets (4401) after commit: those authenticated by one login
    (the login_id claim of its tokens) when `login_id` is given, else every one of them.
    Sockets hold no credentials once authenticated, so this is what ends them.
    """
    message = {"revoke": user_id.hex, "login_id": login_id}
    transaction.on_commit(lambda: delivery.publish(message), robust=True)
