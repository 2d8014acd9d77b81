"""
Schema fuzzing with Schemathesis: every operation of the OpenAPI schema the app
serves (GET /api/schema/) is called with generated requests, valid and invalid,
and each response must be no server error and match what the schema documents
(status code, content type, body and headers).

Requests go through the real WSGI stack (middleware, JWT authentication) as the
seeded user `fuzzer`, with `Authorization: Bearer <access token>`. Path, query and
body ids are sometimes swapped for the ids of seeded rows (a conversation the
fuzzer is in, its messages, a message from someone else, people), so the fuzzer
reaches past the 404s of random UUIDs into the code behind them.
"""
import random
import uuid

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test.utils import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chats.tests.factories import UserFactory, make_conversation, send
from messaging_app.wsgi import application

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": 15, "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}},
    }
)

# The schema as the app serves it. The Host of Schemathesis' WSGI client is "localhost",
# which the test settings do not allow outside a test: allow it for this one request.
with override_settings(ALLOWED_HOSTS=["localhost"]):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

# Ids of the rows seeded for the running test (set by the `world` fixture).
SEEDED: dict[str, list[str]] = {}

# Which seeded ids may stand in for a parameter or body field of this name.
ID_KINDS = {
    "conversation_id": "conversation",
    "conversation": "conversation",
    "message_id": "message",
    "before": "message",
    "after": "message",
    "parent_message": "message",
    "user_id": "user",
    "sender": "user",
    "participant": "user",
}


def _with_real_ids(values):
    """A strategy: the generated values, or the same with some ids swapped for seeded ones."""
    if not isinstance(values, dict) or not SEEDED:
        return st.just(values)
    swappable = [name for name in values if name in ID_KINDS]
    if not swappable:
        return st.just(values)

    def swap(choices):
        out = dict(values)
        for name, choice in zip(swappable, choices):
            if choice is not None:
                out[name] = choice
        return out

    per_name = [st.one_of(st.none(), st.sampled_from(SEEDED[ID_KINDS[name]])) for name in swappable]
    return st.tuples(*per_name).map(swap)


@schema.hook("flatmap_path_parameters")
def _path_ids(context, path_parameters):
    return _with_real_ids(path_parameters)


@schema.hook("flatmap_query")
def _query_ids(context, query):
    return _with_real_ids(query)


@schema.hook("flatmap_body")
def _body_ids(context, body):
    if isinstance(body, dict) and isinstance(body.get("participants"), list) and SEEDED:
        return st.one_of(
            st.just(body),
            st.lists(st.sampled_from(SEEDED["user"]), min_size=1, max_size=3).map(
                lambda ids: {**body, "participants": ids}
            ),
        ).flatmap(_with_real_ids)
    return _with_real_ids(body)


@pytest.fixture
def real_wsgi(settings):
    """
    Let requests through the real WSGI handler inside a test transaction: the handler
    closes the database connection when a request ends (Django's test client turns
    that off the same way), and its Host must be allowed.
    """
    settings.ALLOWED_HOSTS = ["localhost"]
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, real_wsgi):
    fuzzer = UserFactory(first_name="Fuzz", last_name="Er")
    other = UserFactory(first_name="Other", last_name="Person")
    third = UserFactory(first_name="Third", last_name="Person")
    conversation = make_conversation(fuzzer, other, third, messages=("hello", "world"))
    mine = send(conversation, fuzzer, "mine")
    theirs = send(conversation, other, "theirs", parent_message_id=mine.pk)
    from chats import services

    services.message_edit(message=mine, actor=fuzzer, message_body="mine, edited")
    SEEDED.clear()
    SEEDED.update(
        conversation=[str(conversation.pk)],
        message=[str(m.pk) for m in conversation.messages.all()] + [str(theirs.pk)],
        user=[str(u.pk) for u in (fuzzer, other, third)],
    )
    yield {"token": str(RefreshToken.for_user(fuzzer).access_token)}
    SEEDED.clear()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, world):
    case.call_and_validate(headers={"Authorization": f"Bearer {world['token']}"}, checks=CHECKS)
