"""Rate limits beyond DRF's general anon/user ones (rates in settings, env-configurable)."""
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class LoginRateThrottle(AnonRateThrottle):
    """Token and refresh attempts, per client IP address, whoever they claim to be."""

    scope = "login"


class RegisterRateThrottle(AnonRateThrottle):
    """Account creation, per client IP address."""

    scope = "register"


class SendRateThrottle(UserRateThrottle):
    """Message sends and conversation creation, per user."""

    scope = "send"
