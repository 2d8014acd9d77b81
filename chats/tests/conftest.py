import pytest
from rest_framework.test import APIClient

from chats.tests.factories import UserFactory, make_conversation


@pytest.fixture
def alice(db):
    return UserFactory(first_name="Alice", last_name="Archer")


@pytest.fixture
def bob(db):
    return UserFactory(first_name="Bob", last_name="Baker")


@pytest.fixture
def carol(db):
    return UserFactory(first_name="Carol", last_name="Cook")


@pytest.fixture
def mallory(db):
    """Someone who is in none of the conversations under test."""
    return UserFactory(first_name="Mallory", last_name="Outsider")


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def client_for():
    """client_for(user) -> an APIClient authenticated as that user."""

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def conversation(alice, bob):
    """Alice and Bob, with two messages from Alice."""
    return make_conversation(alice, bob, messages=("first", "second"))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache; each test starts from zero."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _attachment_files_removed():
    """Uploaded attachments go to a temporary MEDIA_ROOT of this run (test_settings.py): removed at the end."""
    import shutil

    from django.conf import settings

    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
