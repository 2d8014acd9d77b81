# The chats suite's people, clients and per-test cache reset, for the notifications' tests too.
import pytest

from chats.tests.conftest import (  # noqa: F401
    _fresh_cache,
    alice,
    bob,
    carol,
    client_for,
    mallory,
)
from notifications.tests.receiver import Receiver


@pytest.fixture
def receiver():
    """A real HTTP server on a free port of 127.0.0.1 recording what webhooks POST to it."""
    with Receiver() as server:
        yield server


@pytest.fixture
def local_webhooks(settings):
    """Deliveries to the tests' own receiver: plain HTTP on loopback allowed, no waiting between retries."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 0
    settings.WEBHOOKS_TIMEOUT = 1.0
    return settings
