"""
Password guessing limits, shared by every way of presenting a password.

HTTP Basic (any API route), `POST /api/token/`, the browsable API's `/api-auth/login/` form and
`/admin/login/` all reach `django.contrib.auth.authenticate()` and so the authentication backend
below; `current_password` on `POST /api/users/me/password/` calls `password_check()` itself. Each
check is counted, *before* the password is hashed, against two limits (rates in settings, scopes
`password_ip` and `password_account`):

- one per client address (the address DRF's throttles use, `NUM_PROXIES` included): a guesser
  trying many accounts from one machine;
- one per account, keyed by the normalised email whether or not such an account exists (the
  limiter behaves the same for both, so it tells nothing about which accounts exist): a guesser
  spread over many addresses.

Only failures count: a check whose password was right is given back, so people logging in
often never meet the limit (the `login` scope still caps requests to the token endpoints). A
check is counted *before* hashing and given back afterwards, so concurrent guesses cannot slip
past the limit between the check and the hash. A window starts at the first counted failure and
lasts its whole period; refused attempts do not extend it, so a victim whose account an attacker
keeps at its limit is locked for at most one period after the attacker stops.

Over a limit: `PasswordGuessesThrottled`, a DRF `Throttled` (429, code `throttled`, `Retry-After`)
on API paths; the login forms show it as a form error with status 429 (`LimitedLoginFormMixin`,
`with_password_limit_status`). Counters live in the default cache: Redis when `REDIS_URL` is set,
so every process and pod shares them.

Why not django-axes (8.3): it fits only in part. Its lockout answer carries no `Retry-After` and
not our error shape (a callable would replace it); it reads client addresses through
django-ipware's own proxy settings, a second notion of "client" beside DRF's `NUM_PROXIES`; its
cache handler extends the cool-off on every failure (a sliding lock an attacker can keep shut); it
reaches DRF through a middleware and request attributes; and `current_password` would still need
this explicit call. What is left here is about a hundred lines on DRF's own rate syntax and
client address.
"""
import functools
import hashlib
import math
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from chats.models import UserManager
from messaging_app import metrics

KEY_PREFIX = "password_guesses"


class PasswordGuessesThrottled(Throttled):
    default_detail = "Too many failed password attempts from this address or for this account."


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int
    period: int  # seconds

    @property
    def start_key(self) -> str:
        return f"{self.key}:start"

    def count(self, now: float) -> int:
        """Add one to this window (opening one if none is open); the new count."""
        cache.add(self.start_key, now, self.period)
        cache.add(self.key, 0, self.period)
        try:
            return cache.incr(self.key)
        except ValueError:  # the window closed between add() and incr()
            cache.set(self.key, 1, self.period)
            return 1

    def give_back(self) -> None:
        try:
            cache.decr(self.key)
        except ValueError:  # the window has closed meanwhile: nothing to give back
            pass

    def wait(self, now: float) -> int:
        """Seconds until this window closes."""
        return max(1, math.ceil(cache.get(self.start_key, now) + self.period - now))


def _parse_rate(rate: str) -> tuple[int, int]:
    # DRF's own parser (it never uses its instance): one rate syntax for every limit.
    return SimpleRateThrottle.parse_rate(None, rate)


def _counters(request, email: str) -> list[_Counter]:
    rates = api_settings.DEFAULT_THROTTLE_RATES
    counters = []
    address = BaseThrottle().get_ident(request) if request is not None else None
    if address:
        limit, period = _parse_rate(rates.get("password_ip", "1000/min"))
        counters.append(_Counter(f"{KEY_PREFIX}:ip:{address}", limit, period))
    account = hashlib.sha256(UserManager.normalize_email_address(email).encode()).hexdigest()[:32]
    limit, period = _parse_rate(rates.get("password_account", "1000/min"))
    counters.append(_Counter(f"{KEY_PREFIX}:account:{account}", limit, period))
    return counters


class PasswordCheck:
    """One counted password check; call `passed()` if the password was right."""

    def __init__(self, counters: list[_Counter]):
        self._counters = counters

    def passed(self) -> None:
        for counter in self._counters:
            counter.give_back()
        self._counters = []


def password_check(request, email: str) -> PasswordCheck:
    """
    Count a password check for this client address (`request` may be None: no address) and this
    account, before hashing anything; raise PasswordGuessesThrottled if either is over its limit.
    """
    now = time.time()
    counters = _counters(request, email)
    waits = [counter.wait(now) for counter in counters if counter.count(now) > counter.limit]
    if waits:
        metrics.THROTTLED.labels("password").inc()
        PasswordCheck(counters).passed()  # a refused attempt is not a guess: nothing was checked
        raise PasswordGuessesThrottled(wait=max(waits))
    return PasswordCheck(counters)


class PasswordLimitedModelBackend(ModelBackend):
    """Django's ModelBackend, with every password check counted by `password_check` first."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        check = password_check(request, username)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            check.passed()
        return user

    async def aauthenticate(self, request, **kwargs):
        # ModelBackend's own async version would skip the limits (nothing here calls it today).
        return await sync_to_async(self.authenticate)(request, **kwargs)


class LimitedLoginFormMixin:
    """A login form that shows the limit as a form error (and marks the request for a 429)."""

    def clean(self):
        try:
            return super().clean()
        except PasswordGuessesThrottled as exc:
            self.request.password_guesses_wait = exc.wait
            raise forms.ValidationError(
                "%(detail)s Try again in %(wait)d seconds.",
                code="throttled",
                params={"detail": PasswordGuessesThrottled.default_detail, "wait": exc.wait},
            )


class LimitedAuthenticationForm(LimitedLoginFormMixin, AuthenticationForm):
    pass


class LimitedAdminAuthenticationForm(LimitedLoginFormMixin, AdminAuthenticationForm):
    pass


def with_password_limit_status(view):
    """Wrap a login view: a form refused by the limit is answered 429 with Retry-After."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        wait = getattr(request, "password_guesses_wait", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response

    return wrapped
