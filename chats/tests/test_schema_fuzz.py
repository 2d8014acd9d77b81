"""
Schema fuzzing with Schemathesis (requirements-dev.txt): every operation of the OpenAPI schema the app
serves (GET /api/schema/, fetched through the WSGI application) is called with
generated requests, valid and invalid, and every response must be no server error
and match what the schema documents: status code, content type, body and headers.

Requests go through the real WSGI stack (middleware, JWT authentication) as the
seeded user `fuzzer`, mostly with `Authorization: Bearer <access token>`, sometimes
with HTTP Basic. A second test sends requests of every operation with no or bad
credentials (garbage, expired, a deactivated user's token, "Bearer" alone). Ids in paths,
query strings and bodies are sometimes swapped for seeded ones (conversations the
fuzzer created or only takes part in, its messages and someone else's, people),
and credentials, refresh tokens and dates near the ends of the calendar are mixed
in, so the fuzzer gets past the 404s of random UUIDs into the code behind them.

Bounded: deterministic generation, 25 examples per operation plus Schemathesis'
coverage phase (boundary and type-violating values of every parameter): about 40 s
on SQLite, MariaDB or PostgreSQL on 2 cores.
Stateful (link-following) testing is not used: the schema declares no links.

A failure here is a real finding (a 500, or a response the schema does not
document); it is not to be silenced by excluding checks or operations. What the
schema says about errors beyond drf-standardized-errors' own findings (codes,
headers, validation errors of services, cursors and search terms, list item
attrs) is in chats/schema.py.
"""
import base64
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test.utils import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chats import services
from chats.tests.factories import PASSWORD, UserFactory, make_conversation, send
from messaging_app.wsgi import application
from notifications import services as webhook_services

# All five apply to every operation: none is excluded.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",  # valid and invalid data
            "max-examples": 25,
            "deterministic": True,
            "database": "none",  # no example database written into the repository
        },
        "phases": {"coverage": {"enabled": True}},
    }
)

# The schema as the app serves it. The Host of Schemathesis' WSGI client is "localhost",
# which the test settings allow only inside a test: allow it for this one request.
with override_settings(ALLOWED_HOSTS=["localhost"]):
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

# Values of the rows seeded for the running test (filled by the `world` fixture).
SEEDED: dict[str, list] = {}

# Which seeded values may stand in for a parameter or body field of this name.
SEED_KINDS = {
    "conversation_id": "conversation",
    "conversation": "conversation",
    "message_id": "message",
    "before": "message",
    "after": "message",
    "parent_message": "message",
    "user_id": "user",
    "sender": "user",
    "participant": "user",
    "email": "email",
    "password": "password",
    "current_password": "password",
    "refresh": "refresh",
    "created_after": "date",
    "created_before": "date",
    "sent_after": "date",
    "sent_before": "date",
    "webhook_id": "webhook",
}

# Instants that an offset pushes past the ends of the calendar, extreme offsets, ordinary ones.
EDGE_DATES = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59Z",
    "2020-01-01T00:00:00+16:00",  # a valid ISO 8601 offset beyond PostgreSQL's +15:59
    (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(),
]


def _with_seeded_values(values):
    """A strategy: the generated values, or the same with some swapped for seeded ones."""
    if not isinstance(values, dict) or not SEEDED:
        return st.just(values)
    swappable = [name for name in values if name in SEED_KINDS]
    if not swappable:
        return st.just(values)

    def swap(choices):
        out = dict(values)
        for name, choice in zip(swappable, choices):
            if choice is not None:
                out[name] = choice
        return out

    per_name = [st.one_of(st.none(), st.sampled_from(SEEDED[SEED_KINDS[name]])) for name in swappable]
    return st.tuples(*per_name).map(swap)


@schema.hook("flatmap_path_parameters")
def _seeded_path(context, path_parameters):
    return _with_seeded_values(path_parameters)


@schema.hook("flatmap_query")
def _seeded_query(context, query):
    return _with_seeded_values(query)


@schema.hook("flatmap_body")
def _seeded_body(context, body):
    if isinstance(body, dict) and isinstance(body.get("participants"), list) and SEEDED:
        # Real people too, so that conversations do get created.
        people = st.lists(st.sampled_from(SEEDED["user"]), min_size=1, max_size=3)
        return st.one_of(st.just(body), people.map(lambda ids: {**body, "participants": ids})).flatmap(
            _with_seeded_values
        )
    return _with_seeded_values(body)


# Valid credentials of the fuzzer: mostly its JWT, sometimes HTTP Basic.
CREDENTIAL_CHOICES = ["bearer"] * 5 + ["basic"]
# Bad credentials: each is sent by `test_bad_credentials_are_answered_as_documented`.
BAD_CREDENTIALS = ["none", "garbage", "expired", "deactivated_user", "bearer_without_token"]
CREDENTIALS_MARKER = "X-Fuzz-Credentials"  # set while generating, removed before the request is sent


@schema.hook("flatmap_case")
def _credentials(context, case):
    def mark(choice):
        case.headers = {**(case.headers or {}), CREDENTIALS_MARKER: choice}
        return case

    return st.sampled_from(CREDENTIAL_CHOICES).map(mark)


def authorization(credentials: dict, choice: str) -> dict:
    value = credentials[choice]
    return {} if value is None else {"Authorization": value}


def chosen_credentials(case) -> str:
    """The credentials chosen for this case (the JWT for cases the hook did not see)."""
    return (case.headers or {}).pop(CREDENTIALS_MARKER, "bearer")


@pytest.fixture
def real_wsgi(settings):
    """
    Let requests through the real WSGI handler inside a test transaction: the handler
    closes the database connection when a request ends (Django's test client turns that
    off the same way), and its Host must be allowed.
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
    outsider = UserFactory(first_name="Out", last_name="Sider")
    # One conversation the fuzzer created, one it only takes part in, one it is not in.
    created = make_conversation(fuzzer, other, third, messages=("hello", "world"))
    joined = make_conversation(other, fuzzer, third, messages=("not yours",))
    foreign = make_conversation(other, outsider, messages=("private",))
    mine = send(created, fuzzer, "mine")
    services.message_edit(message=mine, actor=fuzzer, message_body="mine, edited")  # has a history
    send(created, other, "theirs", parent_message_id=mine.pk)
    send(joined, fuzzer, "mine too")
    conversations = (created, joined, foreign)
    # The fuzzer's webhook (delivered to nowhere: no event reaches it in a test transaction) and someone else's.
    webhooks = [webhook_services.webhook_create(owner=owner, url=f"https://hooks.example.com/{owner.pk}")
                for owner in (fuzzer, other)]
    SEEDED.clear()
    SEEDED.update(
        conversation=[str(c.pk) for c in conversations],
        message=[str(m.pk) for c in conversations for m in c.messages.all()],
        user=[str(u.pk) for u in (fuzzer, other, third, outsider)],
        email=[fuzzer.email, other.email.upper()],
        password=[PASSWORD],
        refresh=[str(RefreshToken.for_user(fuzzer)) for _ in range(3)],
        date=EDGE_DATES,
        webhook=[str(w.pk) for w in webhooks],
    )
    expired = AccessToken.for_user(fuzzer)
    expired.set_exp(lifetime=-timedelta(minutes=1))
    deactivated = UserFactory(first_name="Gone", last_name="Away")
    deactivated_token = AccessToken.for_user(deactivated)
    deactivated.is_active = False
    deactivated.save()
    yield {
        "bearer": f"Bearer {RefreshToken.for_user(fuzzer).access_token}",
        "basic": "Basic " + base64.b64encode(f"{fuzzer.email}:{PASSWORD}".encode()).decode(),
        "none": None,
        "garbage": "Bearer not-a-jwt",
        "expired": f"Bearer {expired}",
        "deactivated_user": f"Bearer {deactivated_token}",
        "bearer_without_token": "Bearer",
    }
    SEEDED.clear()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, world):
    case.call_and_validate(headers=authorization(world, chosen_credentials(case)), checks=CHECKS)


# The same operations with bad credentials: a few valid requests each, sent once per kind of
# bad credentials, all answers checked (a failure of one kind does not hide the others).
AUTH_CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "positive", "max-examples": 2, "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": False}},
    }
)
with override_settings(ALLOWED_HOSTS=["localhost"]):
    auth_schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=AUTH_CONFIG)
auth_schema.hook("flatmap_path_parameters")(_seeded_path)


@auth_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_bad_credentials_are_answered_as_documented(case, world):
    failures = []
    for choice in BAD_CREDENTIALS:
        headers = authorization(world, choice)
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            failures.append(f"--- with credentials {choice!r}:\n{group}")
    assert not failures, "\n".join(failures)
