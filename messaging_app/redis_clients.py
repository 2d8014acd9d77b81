"""
Every Redis client of the app is made here: on REDIS_URL (one server, as always), or through
Redis Sentinel when REDIS_SENTINELS is set (docs/redis.md).

With Sentinel, the sentinels name the primary of REDIS_SENTINEL_MASTER, and REDIS_URL only gives
the database number, the password and TLS (rediss://). A client asks the sentinels again each time
it opens a connection, and drops its connections to a primary that was demoted, so a failover
reaches every client by itself. A command that meets the failover is retried for about
FAILOVER_RETRY_SECONDS (connections that fail, a primary not yet named) before its error is raised.

Without REDIS_SENTINELS, the clients are exactly those the app always made from REDIS_URL.

Imported without Django by gunicorn's master (metrics_server.py): `RedisConfig.from_environ()`.
"""
import asyncio
import threading
import time
import weakref
from dataclasses import dataclass

from redis import BlockingConnectionPool, Redis
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

# A command that fails on its connection is tried again after 0.2, 0.4, 0.8... s, each time on the
# primary the sentinels name then, for FAILOVER_RETRY_SECONDS at most. Short on purpose: it spares
# callers the errors of connections the pool still held to a primary that is gone; a failover
# itself takes longer (down-after-milliseconds + ~1 s), and during it callers had better get a
# quick 503 than hold the request threads (a request makes up to two Redis calls in a row).
FAILOVER_BACKOFF = ExponentialBackoff(cap=1.0, base=0.1)
FAILOVER_RETRY_SECONDS = 1.5
# Seconds to reach a sentinel and hear its answer; a sentinel that does not answer is skipped
# at once (no retry), the next one asked.
SENTINEL_TIMEOUT = 1.0
# Seconds to open a connection to the primary and to wait for a reply: with Sentinel a primary
# that stopped answering (a network split, not a crash) must fail over, not hang its callers.
# Subscriptions wait without limit (they are quiet by design), and PING themselves.
PRIMARY_CONNECT_TIMEOUT = 1.0
PRIMARY_REPLY_TIMEOUT = 5.0


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """'host:port,host:port' (REDIS_SENTINELS) -> [(host, port)]; ValueError for anything else."""
    sentinels = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


@dataclass(frozen=True)
class RedisConfig:
    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "messaging"
    sentinel_password: str = ""

    @classmethod
    def from_settings(cls) -> "RedisConfig":
        from django.conf import settings

        return cls(settings.REDIS_URL, tuple(settings.REDIS_SENTINELS), settings.REDIS_SENTINEL_MASTER,
                   settings.REDIS_SENTINEL_PASSWORD)

    @classmethod
    def from_environ(cls, environ) -> "RedisConfig":
        """What settings.py makes of the same variables (for processes without Django)."""
        sentinels = tuple(parse_sentinels(environ.get("REDIS_SENTINELS", "")))
        master = environ.get("REDIS_SENTINEL_MASTER") or "messaging"
        url = environ.get("REDIS_URL") or (f"redis://{master}/0" if sentinels else "")
        return cls(url, sentinels, master, environ.get("REDIS_SENTINEL_PASSWORD", ""))

    def primary_options(self, retry_class, **overrides) -> dict:
        """Options of the primary's pool with Sentinel: what REDIS_URL still says, the timeouts, `overrides`."""
        parsed = parse_url(self.url)
        options = {key: parsed[key] for key in ("db", "username", "password") if parsed.get(key) is not None}
        if self.url.startswith("rediss://"):
            options["ssl"] = True
        options.update(retry=retry_class(FAILOVER_BACKOFF, -1), socket_keepalive=True,
                       socket_connect_timeout=PRIMARY_CONNECT_TIMEOUT, socket_timeout=PRIMARY_REPLY_TIMEOUT)
        return {**options, **overrides}

    def sentinel_options(self, retry_class=Retry) -> dict:
        return {
            "socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT,
            "retry": retry_class(NoBackoff(), 0), "password": self.sentinel_password or None,
        }

    def celery_broker(self) -> tuple[str, dict]:
        """(broker URL, transport options) for Celery on this Redis: kombu's sentinel:// transport with Sentinel."""
        if not self.sentinels:
            return self.url, {}
        parsed = parse_url(self.url)
        secret = f":{parsed['password']}@" if parsed.get("password") else ""
        url = ";".join(f"sentinel://{secret}{host}:{port}/{parsed.get('db', 0)}" for host, port in self.sentinels)
        return url, {"master_name": self.master, "sentinel_kwargs": {"password": self.sentinel_password or None}}


# --- the clients ---------------------------------------------------------------------------------
_sync_sentinels: dict[RedisConfig, object] = {}
_sync_lock = threading.Lock()
# asyncio: a client's connections (and a sentinel manager's) belong to the loop that opened them.
_async_sentinels: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def sync_client(*, max_connections: int | None = None, wait: float | None = None, config: RedisConfig | None = None,
                **options):
    """
    A redis.Redis (thread-safe pools: request threads share it). With `max_connections`, its pool
    blocks callers beyond that many (up to `wait` seconds) instead of failing. `options`:
    connection options (socket_timeout...).
    """
    def sentinel_of(config: RedisConfig):
        with _sync_lock:  # one manager (its connections to the sentinels) per configuration
            if config not in _sync_sentinels:
                _sync_sentinels[config] = Sentinel(config.sentinels, sentinel_kwargs=config.sentinel_options())
            return _sync_sentinels[config]

    return _client(_SYNC, config or RedisConfig.from_settings(), sentinel_of, max_connections, wait, options)


def async_client(*, max_connections: int | None = None, wait: float | None = None, config: RedisConfig | None = None,
                 **options):
    """A redis.asyncio.Redis for the running loop; as sync_client()."""
    def sentinel_of(config: RedisConfig):
        managers = _async_sentinels.setdefault(asyncio.get_running_loop(), {})
        if config not in managers:
            managers[config] = AsyncSentinel(config.sentinels, sentinel_kwargs=config.sentinel_options(AsyncRetry))
        return managers[config]

    return _client(_ASYNC, config or RedisConfig.from_settings(), sentinel_of, max_connections, wait, options)


@dataclass(frozen=True)
class _Flavour:
    """The redis-py classes of one side (synchronous or asyncio)."""

    redis: type
    blocking_pool: type
    blocking_sentinel_pool: type
    failover_retry: type


def _client(flavour: _Flavour, config: RedisConfig, sentinel_of, max_connections, wait, options: dict):
    blocking = {"max_connections": max_connections, "timeout": wait} if max_connections else {}
    if not config.sentinels:
        if blocking:
            return flavour.redis(connection_pool=flavour.blocking_pool.from_url(config.url, **blocking, **options))
        return flavour.redis.from_url(config.url, **options)
    pool_class = {"connection_pool_class": flavour.blocking_sentinel_pool} if blocking else {}
    return sentinel_of(config).master_for(
        config.master, **pool_class, **config.primary_options(flavour.failover_retry, **blocking, **options))


def broker_client(broker_url: str, master: str, **options):
    """A redis.Redis on a Celery broker URL (redis://, rediss://, unix:// or kombu's sentinel://...;...)."""
    if not broker_url.startswith("sentinel://"):
        return Redis.from_url(broker_url, **options)
    sentinels, first = [], None
    for part in broker_url.split(";"):
        as_redis = "redis://" + part.strip().removeprefix("sentinel://")
        parsed = parse_url(as_redis)
        sentinels.append((parsed.get("host", "localhost"), parsed.get("port", 26379)))
        first = first or as_redis
    config = RedisConfig(first, tuple(sentinels), master)
    return sync_client(config=config, **options)


# Sentinel's pool finds the primary (and drops, when released, a connection to a primary that is
# no longer the one named); the blocking pool makes callers beyond max_connections wait instead
# of failing (chats/socket_slots.py says why).
class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    pass


class AsyncBlockingSentinelPool(AsyncSentinelConnectionPool, AsyncBlockingConnectionPool):
    pass


# redis-py retries a command, and within each try the connection's opening, with the same policy:
# counted in tries, a failover could hold a caller for (tries)² backoffs. Counted in time, each
# level stops FAILOVER_RETRY_SECONDS after it began, so a caller waits about that long at most.
def _within_deadline(is_retryable):
    deadline = time.monotonic() + FAILOVER_RETRY_SECONDS
    return lambda error: time.monotonic() < deadline and (is_retryable is None or is_retryable(error))


class FailoverRetry(Retry):
    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        return super().call_with_retry(do, fail, _within_deadline(is_retryable), with_failure_count)


class AsyncFailoverRetry(AsyncRetry):
    async def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        return await super().call_with_retry(do, fail, _within_deadline(is_retryable), with_failure_count)


_SYNC = _Flavour(Redis, BlockingConnectionPool, BlockingSentinelPool, FailoverRetry)
_ASYNC = _Flavour(AsyncRedis, AsyncBlockingConnectionPool, AsyncBlockingSentinelPool, AsyncFailoverRetry)
