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

from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


class SharedPoolRedisCache(RedisCache):
    """Django's RedisCache, with its client shared by every cache object of this process."""

    def incr_window(self, key: str, seconds: int) -> int:
        """Add one to a counter that lives `seconds` from its creation; one round trip (chats.throttles)."""
        key = self.make_and_validate_key(key)
        with self._cache.get_client(key, write=True).pipeline(transaction=False) as pipe:
            pipe.set(key, 0, ex=seconds, nx=True)
            pipe.incr(key)
            return pipe.execute()[1]

    @cached_property
    def _cache(self):
        key = (tuple(self._servers), repr(sorted(self._options.items())), self._class)
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
