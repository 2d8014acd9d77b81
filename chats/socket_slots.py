"""
How many WebSockets each user has open, across every server process: the cap
WS_MAX_SOCKETS_PER_USER (docs/websocket.md, close code 4409).

With REDIS_URL set (several processes or pods), each user has a sorted set in
Redis, "ws:sockets:<user hex>", of the channel names of their authenticated
sockets, each scored with the Redis time at which its entry lapses. A socket
renews its entry every RENEW_SECONDS; the entry of a process that died without
saying goodbye lapses SLOT_TTL_SECONDS after its last renewal, so a crash costs
the user those slots for at most that long. A claim is one Lua script (drop
lapsed entries, count, add if under the cap) timed by the Redis clock, so two
processes racing for the last slot cannot both win and their clocks do not
matter. Without Redis there is one process, and a dict does the same job.

Slots named with BOT_PREFIX (sockets opened with a personal access token) count against the cap
like any other, but not as the user being connected (connected(), connected_now(): presence,
push notifications, email digests): a bot listening is not the person.
"""
import asyncio
import logging
import weakref
from uuid import UUID

from django.conf import settings
from redis.exceptions import RedisError

from messaging_app import redis_clients

logger = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 60
RENEW_SECONDS = 20
BOT_PREFIX = "bot-"

_CLAIM = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_s)
local cap = tonumber(ARGV[1])  -- -1: renewing, never refused
if cap >= 0 and redis.call('ZSCORE', KEYS[1], ARGV[2]) == false
   and redis.call('ZCARD', KEYS[1]) >= cap then
  return 0
end
redis.call('ZADD', KEYS[1], now_s + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# How many unlapsed entries each key has, by the Redis clock, leaving out names starting with ARGV[1]
# (BOT_PREFIX). A key holds at most WS_MAX_SOCKETS_PER_USER entries.
_COUNT = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1000000
local counts = {}
for i, key in ipairs(KEYS) do
  local n = 0
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. now_s, '+inf')) do
    if string.sub(name, 1, #ARGV[1]) ~= ARGV[1] then n = n + 1 end
  end
  counts[i] = n
end
return counts
"""

# One Redis client per event loop (a client's connections belong to the loop that opened them).
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
# Without Redis: user id -> channel names of their authenticated sockets in this process.
_local: dict[UUID, set[str]] = {}


def _key(user_id: UUID) -> str:
    return f"ws:sockets:{user_id.hex}"


def loop_client():
    """This event loop's Redis client (live delivery's and presence's too)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = pooled_client()
    return client


# Connections a process opens to Redis per event loop at most; more callers at once wait for one
# (up to REDIS_POOL_WAIT seconds). redis-py's asyncio pool raises "Too many connections" past 100
# instead: closing 200 sockets at once failed 279 slot releases in the benchmark.
REDIS_POOL_SIZE = 64
REDIS_POOL_WAIT = 10.0


def pooled_client():
    return redis_clients.async_client(max_connections=REDIS_POOL_SIZE, wait=REDIS_POOL_WAIT)


async def claim(user_id: UUID, channel_name: str) -> bool:
    """Take a slot for this socket; False if the user already has the maximum open."""
    cap = settings.WS_MAX_SOCKETS_PER_USER
    if not settings.REDIS_URL:
        sockets = _local.setdefault(user_id, set())
        if channel_name not in sockets and len(sockets) >= cap:
            return False
        sockets.add(channel_name)
        return True
    return bool(await loop_client().eval(_CLAIM, 1, _key(user_id), cap, channel_name, SLOT_TTL_SECONDS))


async def renew(user_id: UUID, channel_name: str) -> None:
    """
    Keep the slot from lapsing (re-added if it had: the socket is still open and must count).
    A renewal that fails (Redis restarting, failing over) is logged, and the next one re-adds the
    entry: the socket keeps its keep-alive, and its slot is lost for SLOT_TTL_SECONDS at most.
    """
    if settings.REDIS_URL:
        try:
            await loop_client().eval(_CLAIM, 1, _key(user_id), -1, channel_name, SLOT_TTL_SECONDS)
        except RedisError:
            logger.warning("Could not renew the socket slot of user %s; retrying in %ss.", user_id.hex,
                           RENEW_SECONDS, exc_info=True)


async def release(user_id: UUID, channel_name: str) -> None:
    if not settings.REDIS_URL:
        sockets = _local.get(user_id, set())
        sockets.discard(channel_name)
        if not sockets:
            _local.pop(user_id, None)
        return
    await loop_client().zrem(_key(user_id), channel_name)


async def connected(user_ids: list[UUID]) -> set[UUID]:
    """Those of these users who have an authenticated socket open, in any process (chats/presence.py)."""
    if not user_ids:
        return set()
    if not settings.REDIS_URL:
        return _connected_here(user_ids)
    counts = await loop_client().eval(_COUNT, len(user_ids), *(_key(user_id) for user_id in user_ids), BOT_PREFIX)
    return {user_id for user_id, count in zip(user_ids, counts) if count}


def _connected_here(user_ids: list[UUID]) -> set[UUID]:
    return {
        user_id for user_id in user_ids
        if any(not name.startswith(BOT_PREFIX) for name in _local.get(user_id, ()))
    }


def connected_now(user_ids: list[UUID]) -> set[UUID]:
    """connected(), from synchronous code (a request's thread)."""
    if not user_ids:
        return set()
    if not settings.REDIS_URL:
        return _connected_here(user_ids)
    from chats.delivery import redis_sync

    counts = redis_sync().eval(_COUNT, len(user_ids), *(_key(user_id) for user_id in user_ids), BOT_PREFIX)
    return {user_id for user_id, count in zip(user_ids, counts) if count}
