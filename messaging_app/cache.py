"""
The shared cache (throttle and password-guess counters) on Redis, with one client, and so one
connection pool, per process.

Django keeps a cache object per context (`caches` is an asgiref Local), and its RedisCache
builds a client with its own connection pool per cache object. Under ASGI every request runs
in a context of its own, so every request built a pool and opened a new Redis connection
(measured: one new connection per request, issue 13). redis-py's pools are thread-safe and
reset themselves in a forked child, so one client per process is safe for the threads that run
requests' synchronous code.
"""
import threading

from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

from messaging_app import redis_clients

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


# One round trip, atomic: add ARGV[2] to the counter of a window, made to expire with the window
# (ARGV[1] seconds) by the call that created it.
INCR_WINDOW = (
    "local n = redis.call('INCRBY', KEYS[1], ARGV[2]) "
    "if n == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)


class SharedRedisCacheClient(RedisCacheClient):
    """
    Django's client, keeping one redis.Redis per connection pool: Django's builds a new one for
    every cache call, and building one (its response callbacks) cost more CPU than the call.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._redis_clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._redis_clients.get(index)
        if client is None:
            if settings.REDIS_SENTINELS:  # the primary the sentinels name (messaging_app/redis_clients.py)
                client = self._redis_clients[index] = redis_clients.sync_client(**self._pool_options)
            else:
                if index not in self._pools:
                    self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
                client = self._redis_clients[index] = self._client(connection_pool=self._pools[index])
            client.incr_window = client.register_script(INCR_WINDOW)
        return client


class SharedPoolRedisCache(RedisCache):
    """Django's RedisCache, with its client shared by every cache object of this process."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient

    def incr_window(self, key: str, seconds: int, amount: int = 1) -> int:
        """Add `amount` to a counter that lives `seconds` from its creation; one round trip (chats.throttles)."""
        key = self.make_and_validate_key(key)
        return self._cache.get_client(key, write=True).incr_window(keys=[key], args=[seconds, amount])

    @cached_property
    def _cache(self):
        key = (tuple(self._servers), repr(sorted(self._options.items())), self._class)
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
