"""
Presence: who is online, from their sockets.

A user is online while they have an authenticated WebSocket open in any server process: the
socket slots of chats/socket_slots.py (in Redis with REDIS_URL), renewed every 20 s and lapsing
60 s after the process holding them died. A half-open connection (a phone that lost its network)
is closed by the server's WebSocket pings (every 20 s, answered within 20 s), which frees its slot.
Otherwise the user is offline since `last_seen_at`: when their last socket closed.

Only people who share a conversation with a user learn their presence (GET /api/presence/, and
`presence` frames on their sockets), and nobody does when the user turned `presence_visible` off.

Events go to the sockets that asked for them ({"type": "presence.subscribe", "user_ids": [...]},
at most 100 people per socket, as Slack's presence_sub): a conversation of 1,000 people whose
members all connect at once would otherwise send each of them 999 events. Whether a subscriber may
see the change is decided when it happens (the people who share a conversation with the user
then), and one message is published for it whatever the number of subscribers.

Events are ephemeral like typing (no event_id, never replayed): when a user's first socket opens
they are announced online at once; when their last one closes, offline only after
PRESENCE_OFFLINE_GRACE seconds with none open again. A page reload or a short network drop
announces nothing, and a connection that flaps makes at most one online and one offline event per
grace period. The state last announced is kept beside the slots (GETSET in Redis), so two
processes never announce the same change twice.
"""
import asyncio
import logging
from datetime import datetime
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from chats import delivery, socket_slots
from chats.models import ConversationMembership, User

logger = logging.getLogger(__name__)

# Without Redis (one process): user id -> the state last announced.
_announced: dict[UUID, str] = {}
ANNOUNCED_TTL_SECONDS = 7 * 24 * 3600


def frame(user_id: UUID, online: bool, last_seen_at: datetime | None) -> dict:
    return {
        "type": "presence",
        "user_id": str(user_id),
        "online": online,
        "last_seen_at": None if online or last_seen_at is None else _iso(last_seen_at),
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- from the sockets (chats/consumers.py) -------------------------------------------------

async def socket_opened(user_id: UUID) -> None:
    """After a socket of the user authenticated (and took its slot)."""
    try:
        if await _changed(user_id, "online"):
            await _announce(user_id, online=True, last_seen_at=None)
    except (RedisError, DatabaseError):  # presence is a hint: the socket serves on without it
        logger.warning("Could not announce user %s online", user_id.hex, exc_info=True)


def socket_closed(user_id: UUID) -> None:
    """After a socket of the user released its slot: offline, if none opens within the grace period."""
    closed_at = timezone.now()
    loop = asyncio.get_running_loop()
    loop.call_later(settings.PRESENCE_OFFLINE_GRACE, lambda: loop.create_task(_maybe_offline(user_id, closed_at)))


async def _maybe_offline(user_id: UUID, closed_at: datetime) -> None:
    try:
        if await socket_slots.connected([user_id]):
            return
        last_seen_at = await database_sync_to_async(_seen)(user_id, closed_at)
        if await _changed(user_id, "offline"):
            await _announce(user_id, online=False, last_seen_at=last_seen_at)
    except (RedisError, DatabaseError):
        logger.warning("Could not announce user %s offline", user_id.hex, exc_info=True)


def _seen(user_id: UUID, closed_at: datetime) -> datetime:
    User.objects.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=closed_at), pk=user_id).update(
        last_seen_at=closed_at
    )
    return User.objects.filter(pk=user_id).values_list("last_seen_at", flat=True).first() or closed_at


async def _changed(user_id: UUID, state: str) -> bool:
    """Record `state` as announced; whether it differs from what was announced before."""
    if not settings.REDIS_URL:
        before, _announced[user_id] = _announced.get(user_id), state
        return before != state
    key = f"ws:presence:{user_id.hex}"
    before = await socket_slots.loop_client().set(key, state, ex=ANNOUNCED_TTL_SECONDS, get=True)
    return before is None or before.decode() != state


async def _announce(user_id: UUID, *, online: bool, last_seen_at: datetime | None) -> None:
    audience = await database_sync_to_async(audience_of)(user_id)
    if audience:
        await delivery.apublish(_message(user_id, frame(user_id, online, last_seen_at), audience))


def _message(user_id: UUID, shown: dict, audience: list[UUID]) -> dict:
    """Published: to the sockets of `audience` that subscribed to this user (chats/delivery.py)."""
    return {"presence": user_id.hex, "frame": shown, "to": [member.hex for member in audience]}


def audience_of(user_id: UUID) -> list[UUID]:
    """Who may learn the user's presence: the people who share a conversation with them (if they show it)."""
    if not User.objects.filter(pk=user_id, presence_visible=True).exists():
        return []
    return list(
        ConversationMembership.objects.filter(conversation__memberships__user_id=user_id)
        .exclude(user_id=user_id)
        .values_list("user_id", flat=True)
        .distinct()
    )


# --- from requests -----------------------------------------------------------------------

def presence_for(*, viewer: User, user_ids: list[UUID]) -> list[dict]:
    """
    The presence of those of `user_ids` the viewer may see (themself; people who share a
    conversation with them and show their presence), in the order asked; the others are left out.
    """
    wanted = list(dict.fromkeys(user_ids))
    visible = dict(
        User.objects.filter(pk__in=wanted)
        .filter(Q(pk=viewer.pk) | Q(presence_visible=True, memberships__conversation__memberships__user=viewer))
        .values_list("pk", "last_seen_at")
        .distinct()
    )
    online = socket_slots.connected_now([user_id for user_id in wanted if user_id in visible])
    return [frame(user_id, user_id in online, visible[user_id]) for user_id in wanted if user_id in visible]


def visibility_changed(user: User) -> None:
    """After commit of a presence_visible change: its audience sees them go (or come back if online)."""
    online = bool(socket_slots.connected_now([user.pk]))
    audience = list(
        ConversationMembership.objects.filter(conversation__memberships__user_id=user.pk)
        .exclude(user_id=user.pk)
        .values_list("user_id", flat=True)
        .distinct()
    )
    if not audience:
        return
    shown = frame(user.pk, online, user.last_seen_at) if user.presence_visible else frame(user.pk, False, None)
    delivery.publish(_message(user.pk, shown, audience))
