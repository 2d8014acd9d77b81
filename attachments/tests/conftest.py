# The chats suite's people, clients and per-test cache reset, for the attachments' tests too.
from chats.tests.conftest import (  # noqa: F401
    _attachment_files_removed,
    _fresh_cache,
    alice,
    bob,
    carol,
    client_for,
    conversation,
    mallory,
)
