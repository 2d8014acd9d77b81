"""
Rate limits: DRF's scopes and rates (settings, env-configurable), counted in fixed windows.

DRF's own throttles keep a sliding log: a list of the time of every request in the period,
read, trimmed and written back whole on every request (at the user rate, 1,200 floats pickled
and sent to Redis and back per request). Here each scope counts requests in a window of its
period with one increment (`count_in_window`; one round trip on Redis), and a refused request
waits until the window ends (`Retry-After`). A client may send up to twice the rate across a
window boundary; the limits are abuse guards, not quotas, so that is the trade made.
"""
from rest_framework import throttling


def count_in_window(cache, key: str, seconds: int) -> int:
    """Add one to the counter `key`, which lives `seconds` from its first use; the new count."""
    incr_window = getattr(cache, "incr_window", None)  # messaging_app.cache on Redis: one round trip
    if incr_window is not None:
        return incr_window(key, seconds)
    cache.add(key, 0, seconds)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, seconds)
        return 1


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
        return count_in_window(self.cache, f"{key}:{window}", self.duration) <= self.num_requests

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
