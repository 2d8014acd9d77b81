"""
Real-time events. Services call these while they write; each schedules its
delivery for after the transaction commits (nothing is sent for a rollback),
works out the recipients then (the participants at that moment, so someone
removed gets nothing more), and hands one frame per recipient to the channel
layer group of that user ("user.<hex id>"), which every socket of theirs joins.

Frames have the shapes the REST API returns: {"type", "conversation_id", ...}.
Delivery is best effort (robust on_commit): the database stays the source of
truth, and clients catch up with the REST timeline (?after=<message_id>).
"""
import asyncio
import json
import logging
from collections.abc import Iterable
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework.renderers import JSONRenderer

from chats.models import Message
from chats.selectors import conversation_list_for_user, member_ids
from chats.serializers import ConversationSerializer, message_representation

logger = logging.getLogger(__name__)


def user_group(user_id: UUID) -> str:
    return f"user.{user_id.hex}"


def as_plain_json(data) -> dict:
    # Exactly what the REST API would render (UUIDs and datetimes as strings).
    return json.loads(JSONRenderer().render(data))


class _LoopSender:
    """
    Channel-layer sends of a process whose HTTP requests run in threads beside its event loop
    (messaging_app/wsgi_pool.py): queued to that loop and made there, one after another in the
    order they were queued, with the loop's Redis connections. The request does not wait for
    the fan-out, and no send opens a connection (async_to_sync would run each in a new loop).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue = asyncio.Queue()
        self.task = loop.create_task(self._drain())

    def submit(self, make_coroutine) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, make_coroutine)

    async def _drain(self) -> None:
        while True:
            make_coroutine = await self.queue.get()
            try:
                await make_coroutine()
            except Exception:
                logger.warning("A live event could not be handed to the channel layer", exc_info=True)


_loop_sender: _LoopSender | None = None


def deliver_from(loop: asyncio.AbstractEventLoop) -> None:
    """Called on the serving event loop: later sends from other threads of this process go through it."""
    global _loop_sender
    if _loop_sender is None or _loop_sender.loop is not loop:
        _loop_sender = _LoopSender(loop)


def _on_layer(make_coroutine) -> None:
    sender = _loop_sender
    if sender is not None and sender.loop.is_running() and not _in_loop(sender.loop):
        sender.submit(make_coroutine)
    else:
        async_to_sync(make_coroutine)()


def _in_loop(loop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def send_to_users(user_ids: Iterable[UUID], payload: dict) -> None:
    layer = get_channel_layer()
    message = {"type": "chat.event", "payload": payload}
    user_ids = list(user_ids)

    async def send_all():  # all recipients in one go, sends concurrent
        await asyncio.gather(*(layer.group_send(user_group(user_id), message) for user_id in user_ids))

    _on_layer(send_all)


def _after_commit(emit) -> None:
    # robust: a channel layer outage is logged, never turned into a failed request.
    transaction.on_commit(emit, robust=True)


def message_changed(event_type: str, message: Message) -> None:
    """message.created / message.updated / message.deleted, to every participant."""

    def emit():  # the message as committed: the caller does not change it after this call
        payload = {
            "type": event_type,
            "conversation_id": str(message.conversation_id),
            "message": message_representation(message),
        }
        send_to_users(member_ids(conversation_id=message.conversation_id), payload)

    _after_commit(emit)


def conversation_changed(
    event_type: str, conversation_id: UUID, *, recipients: Iterable[UUID] | None = None
) -> None:
    """conversation.created / conversation.updated, each recipient seeing their own unread_count."""
    recipients = None if recipients is None else list(recipients)

    def emit():
        members = set(member_ids(conversation_id=conversation_id))
        targets = members if recipients is None else members.intersection(recipients)
        for user_id in targets:
            conversation = conversation_list_for_user(user=user_id).get(pk=conversation_id)
            payload = {
                "type": event_type,
                "conversation_id": str(conversation_id),
                "conversation": as_plain_json(ConversationSerializer(conversation).data),
            }
            send_to_users([user_id], payload)

    _after_commit(emit)


def conversation_removed(conversation_id: UUID, user_id: UUID) -> None:
    """Tells the removed person's sockets to drop the conversation (and nothing else)."""
    _after_commit(
        lambda: send_to_users([user_id], {"type": "conversation.removed", "conversation_id": str(conversation_id)})
    )


def conversation_read(conversation_id: UUID, user_id: UUID) -> None:
    """The reader's new read state, to their own sockets (other devices stay in step)."""

    def emit():
        conversation = conversation_list_for_user(user=user_id).filter(pk=conversation_id).first()
        if conversation is None:
            return
        payload = as_plain_json(
            {
                "type": "conversation.read",
                "conversation_id": conversation_id,
                "last_read_at": conversation.my_last_read_at,
                "unread_count": conversation.unread_count,
            }
        )
        send_to_users([user_id], payload)

    _after_commit(emit)


def credentials_revoked(user_id: UUID, *, login_id: str | None = None) -> None:
    """
    Closes the user's open sockets (4401) after commit: those authenticated by one login
    (the login_id claim of its tokens) when `login_id` is given, else every one of them.
    Sockets hold no credentials once authenticated, so this is what ends them.
    """
    message = {"type": "credentials.revoked", "login_id": login_id}

    async def revoke():
        await get_channel_layer().group_send(user_group(user_id), message)

    _after_commit(lambda: _on_layer(revoke))
