"""
Live delivery: frames to the sockets that are open, in every server process, with one Redis
PUBLISH per write whatever the number of recipients.

Every serving process subscribes to one Redis channel (LIVE_CHANNEL) and keeps in memory which
of its sockets belong to which user (`register`). A write publishes, after commit, one message,
a list of batches, each one frame and its recipients:

    [{"frame": {...}, "to": {"<user hex>": <event_id>, ...}}, ...]

(`event_id` null for ephemeral frames: typing), and each process hands the frame, with each
recipient's event_id, to its own sockets of those users, in the order published. A message to a
1,000-member conversation is one PUBLISH of about 40 KB, where a channel layer makes one
operation per recipient. Other messages: {"revoke": "<user hex>", "login_id": ...} closes a
user's sockets (events.credentials_revoked); {"presence": "<user hex>", "frame": {...}, "to":
["<user hex>", ...]} goes to those of the listed users' sockets that subscribed to that user's
presence (chats/presence.py).

Pub/sub keeps nothing: a message published while a process is not subscribed (Redis
restarting, the subscription reconnecting) never reaches it. The stream (chats/stream.py) has
every event; so every socket of a process checks its stream when the subscription (re)starts,
and every socket_slots.RENEW_SECONDS (chats/consumers.py). The live path only makes it fast.

Without REDIS_URL there is one process, and publishing hands the message to its sockets directly.
"""
import asyncio
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

import orjson
from django.conf import settings

from messaging_app import metrics, redis_clients

logger = logging.getLogger(__name__)

# Seconds between two attempts to (re)subscribe after the subscription failed.
RESUBSCRIBE_SECONDS = 1.0
# Seconds of silence on the subscription before it is checked with a PING (a half-open connection).
SUBSCRIPTION_PING_SECONDS = 15.0


class Socket(Protocol):
    """What a socket gives the registry (chats.consumers.ChatConsumer): its loop, and `push`, called on it."""

    loop: asyncio.AbstractEventLoop
    user_hex: str

    def push(self, item) -> None:
        """item: (frame, event_id or None), CHECK, or revoke_item(login_id)."""


# Messages a socket's push() receives besides (frame, event_id):
CHECK = ("check",)  # compare with the stream: something may have been missed


def revoke_item(login_id):
    return ("revoke", login_id)


# user hex -> this process's sockets of theirs. Touched only on the loops of the sockets in it,
# and by dispatch() under the lock (dispatch may run on a request thread without Redis).
_sockets: dict[str, set[Socket]] = {}
_sockets_lock = threading.Lock()
# Presence subscriptions (chats/presence.py): user hex -> sockets of this process following them,
# and each such socket's list.
_watchers: dict[str, set[Socket]] = {}
_watched_by: dict[Socket, frozenset[str]] = {}
# One subscription task per event loop that has sockets (one in a server; tests make several).
_listeners: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def register(socket: Socket) -> None:
    """From the socket's loop: it receives its user's frames from now on."""
    with _sockets_lock:
        sockets = _sockets.setdefault(socket.user_hex, set())
        if socket not in sockets:
            sockets.add(socket)
            metrics.WEBSOCKETS_OPEN.inc()
    if settings.REDIS_URL:
        loop = asyncio.get_running_loop()
        if loop not in _listeners or _listeners[loop].done():
            _listeners[loop] = loop.create_task(_listen())


def unregister(socket: Socket) -> None:
    with _sockets_lock:
        sockets = _sockets.get(socket.user_hex)
        if sockets is not None and socket in sockets:
            sockets.discard(socket)
            metrics.WEBSOCKETS_OPEN.dec()
            if not sockets:
                del _sockets[socket.user_hex]
    watch(socket, ())


def watch(socket: Socket, user_hexes) -> None:
    """The socket now follows the presence of these users (hex ids) instead of those it followed."""
    with _sockets_lock:
        for user_hex in _watched_by.pop(socket, ()):
            watchers = _watchers.get(user_hex)
            if watchers is not None:
                watchers.discard(socket)
                if not watchers:
                    del _watchers[user_hex]
        if user_hexes:
            _watched_by[socket] = frozenset(user_hexes)
            for user_hex in user_hexes:
                _watchers.setdefault(user_hex, set()).add(socket)


# Sockets of this process closed because they stopped reading (consumers: code 4408), since it started.
_slow_closed = 0


def count_dropped_socket() -> None:
    global _slow_closed
    _slow_closed += 1
    metrics.WS_SLOW_CLOSED.inc()


def slow_sockets_closed() -> int:
    return _slow_closed


def local_socket_count() -> int:
    with _sockets_lock:
        return sum(len(sockets) for sockets in _sockets.values())


# --- publishing ------------------------------------------------------------------------

def batches(frames: Iterable[tuple[dict, dict]]) -> list[dict]:
    """[(frame, {user_id: event_id or None})] as published (user ids as hex)."""
    return [
        {"frame": frame, "to": {user_id.hex: event_id for user_id, event_id in recipients.items()}}
        for frame, recipients in frames
    ]


_sync_client = None
_sync_client_lock = threading.Lock()


def redis_sync():
    """One client (a thread-safe pool) per process, for publishing from request threads."""
    global _sync_client
    if _sync_client is None:
        with _sync_client_lock:
            if _sync_client is None:
                _sync_client = redis_clients.sync_client(max_connections=64, wait=10.0)
    return _sync_client


def publish(message) -> None:
    """From synchronous code (a request thread, after commit). Raises if Redis is unreachable."""
    if settings.REDIS_URL:
        redis_sync().publish(settings.LIVE_CHANNEL, orjson.dumps(message))
    else:
        dispatch(message)


async def apublish(message) -> None:
    """From a socket's loop (typing)."""
    if settings.REDIS_URL:
        from chats.socket_slots import loop_client

        await loop_client().publish(settings.LIVE_CHANNEL, orjson.dumps(message))
    else:
        dispatch(message)


# --- receiving -------------------------------------------------------------------------

def dispatch(message) -> None:
    """A published message to this process's sockets (on their loops, in order)."""
    if isinstance(message, dict) and "presence" in message:
        with _sockets_lock:
            watching = list(_watchers.get(message["presence"], ()))
        audience = set(message["to"]) if watching else ()
        item = (message["frame"], None)
        targets = [(socket, item) for socket in watching if socket.user_hex in audience]
    elif isinstance(message, dict):  # {"revoke": user hex, "login_id": ...}
        targets = [(socket, revoke_item(message.get("login_id"))) for socket in _of(message["revoke"])]
    else:
        targets = []
        for batch in message:
            frame = batch["frame"]
            for user_hex, event_id in batch["to"].items():
                sockets = _of(user_hex)
                if sockets:
                    item = (frame if event_id is None else {**frame, "event_id": event_id}, event_id)
                    targets.extend((socket, item) for socket in sockets)
    for socket, item in targets:
        _hand(socket, item)


def check_all() -> None:
    """Every socket of this process compares with its stream (after a gap in the subscription)."""
    with _sockets_lock:
        every = [socket for sockets in _sockets.values() for socket in sockets]
    for socket in every:
        _hand(socket, CHECK)


def _of(user_hex: str) -> list[Socket]:
    with _sockets_lock:
        return list(_sockets.get(user_hex, ()))


def _hand(socket: Socket, item) -> None:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is socket.loop:
        socket.push(item)
    elif not socket.loop.is_closed():
        socket.loop.call_soon_threadsafe(socket.push, item)


async def _listen() -> None:
    """
    This loop's subscription: published messages to dispatch(), for as long as the loop has sockets.
    With Sentinel each attempt asks the sentinels for the primary: after a failover the next
    attempt subscribes on the new one (docs/redis.md).
    """
    while True:
        client = redis_clients.async_client(socket_keepalive=True, socket_timeout=None)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(settings.LIVE_CHANNEL)
            silent = 0.0
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    silent += 1.0
                    if silent >= SUBSCRIPTION_PING_SECONDS:
                        await pubsub.ping()
                        silent = 0.0
                    continue
                silent = 0.0
                if message["type"] == "subscribe":
                    # Anything published before this moment did not reach us: the stream has it.
                    check_all()
                elif message["type"] == "message":
                    try:
                        dispatch(orjson.loads(message["data"]))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        logger.warning("Ignored a malformed live message", exc_info=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning(
                "The live subscription failed; sockets catch up from their streams. Retrying in %ss.",
                RESUBSCRIBE_SECONDS, exc_info=True,
            )
            await asyncio.sleep(RESUBSCRIBE_SECONDS)
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:
                pass
