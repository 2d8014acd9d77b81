"""
Rate limits: DRF's scopes and rates (settings, env-configurable), counted in fixed windows.

DRF's own throttles keep a sliding log: a list of the time of every request in the period,
read, trimmed and written back whole on every request (at the user rate, 1,200 floats pickled
and sent to Redis and back per request). Here each scope counts requests in a window of its
period, and a refused request waits until the window ends (`Retry-After`). A client may send up
to twice the rate across a window boundary; the limits are abuse guards, not quotas, so that is
the trade made.

Counting on a shared cache (Redis) reserves numbers in blocks (`WindowCounter`): a process
takes the next `block` numbers of a window's counter with one increment and hands them to its
requests one by one, without a round trip, until they are used. Every request gets a number
of its own across all processes, and only numbers up to the limit are let through, so no
client ever gets more than the limit. What a block costs is the other way: numbers a process
reserved and did not use before the window ended are refused to nobody, so a client spread
over P processes may be refused up to (P - 1) * (block - 1) requests early. A block is a
hundredth of the limit (BLOCK_SHARE), so at the user rate (1,200 a minute: blocks of 12) that is
at most 11 requests per other process, and a limit under 200 per window keeps blocks of 1:
exactly one increment per request (login, registration, anonymous requests).
"""
import threading

from rest_framework import throttling

from messaging_app import metrics

BLOCK_SHARE = 100  # a block is limit // BLOCK_SHARE numbers (at least 1)
MAX_BLOCK = 20
MAX_LEASES = 10_000  # blocks held per process, across clients and windows


class WindowCounter:
    """
    Numbers from the cache's counters, reserved `block` at a time: `next(cache, key, seconds,
    block)` returns this request's number in the window `key` (which lives `seconds`).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._leases: dict[str, list[int]] = {}  # key -> [next number, last number reserved]

    def next(self, cache, key: str, seconds: int, block: int) -> int:
        if block > 1:
            with self._lock:
                lease = self._leases.get(key)
                if lease is not None and lease[0] <= lease[1]:
                    number = lease[0]
                    lease[0] += 1
                    return number
        last = add_in_window(cache, key, seconds, block)
        if block > 1:
            with self._lock:
                if len(self._leases) >= MAX_LEASES:
                    # Blocks of past windows, or of clients gone quiet: dropping them only
                    # leaves their numbers unused (refusals come earlier, never later).
                    self._leases.clear()
                self._leases[key] = [last - block + 2, last]
        return last - block + 1


def add_in_window(cache, key: str, seconds: int, amount: int = 1) -> int:
    """Add `amount` to the counter `key`, which lives `seconds` from its first use; the new count."""
    incr_window = getattr(cache, "incr_window", None)  # messaging_app.cache on Redis: one round trip
    if incr_window is not None:
        return incr_window(key, seconds, amount)
    cache.add(key, 0, seconds)
    try:
        return cache.incr(key, amount)
    except ValueError:  # expired between add() and incr()
        cache.set(key, amount, seconds)
        return amount


COUNTER = WindowCounter()


class WindowCountMixin:
    """allow_request/wait of SimpleRateThrottle, on a counter per window instead of a log."""

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.seconds_left = (window + 1) * self.duration - now
        number = COUNTER.next(self.cache, f"{key}:{window}", self.duration, self.block)
        if number > self.num_requests:
            metrics.THROTTLED.labels(self.scope).inc()
            return False
        return True

    @property
    def block(self) -> int:
        """How many numbers a process reserves at once: 1 (every request counted on the cache)
        unless the cache is shared (Redis) and the limit large."""
        if getattr(self.cache, "incr_window", None) is None:
            return 1  # a cache of this process alone: one increment is as cheap as a lease
        return max(1, min(MAX_BLOCK, self.num_requests // BLOCK_SHARE))

    def wait(self):
        return self.seconds_left


class AnonRateThrottle(WindowCountMixin, throttling.AnonRateThrottle):
    """Requests without credentials, per client IP address."""


class UserRateThrottle(WindowCountMixin, throttling.UserRateThrottle):
    """Requests with credentials, per user."""


class LoginRateThrottle(AnonRateThrottle):
    """Token and refresh attempts, per client IP address, whoever they claim to be."""

    scope = "login"


class RegisterRateThrottle(AnonRateThrottle):
    """Account creation, per client IP address."""

    scope = "register"


class SendRateThrottle(UserRateThrottle):
    """Message sends and conversation creation, per user."""

    scope = "send"
