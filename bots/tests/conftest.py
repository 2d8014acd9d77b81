from chats.tests.conftest import _fresh_cache, alice, bob, client_for, conversation, mallory  # noqa: F401
