"""
Real-time delivery over /ws/ (docs/websocket.md), through the real ASGI
application (messaging_app.asgi.application) with Channels' WebsocketCommunicator
and the in-memory channel layer: authentication (JWT first frame, session cookie
checked against the Origin), every event type with the REST shapes, privacy,
typing and its rate limit, control frames, and delivery only after commit.

Async tests on a transactional database, so on_commit hooks fire; every ORM or
service call runs in a thread (database_sync_to_async). Every socket is opened
through the `ws` fixture, which disconnects all of them when the test ends,
passed or failed. Each test's name (and docstring where useful) states the rule.
"""
import asyncio
import json
from datetime import timedelta

import jwt
import pytest
import pytest_asyncio
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from chats import consumers, delivery, services
from chats.models import Conversation, ConversationMembership, Message, MessageEdit
from chats.serializers import ConversationSerializer, MessageSerializer
from chats.tests.factories import PASSWORD, UserFactory, make_conversation, send
from chats.tests.utils import assert_auth_ok
from messaging_app.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
TIMEOUT = 3  # seconds to wait for a frame that must come (generous for slow databases)
QUIET = 0.25  # seconds of silence that prove a frame did not come
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
MESSAGE_KEYS = set(MessageSerializer.Meta.fields)
CONVERSATION_KEYS = set(ConversationSerializer.Meta.fields)


# --- sockets -----------------------------------------------------------------------
class Sockets:
    """Opens sockets to /ws/ and remembers them, so the test can close them all."""

    def __init__(self):
        self.opened: list[WebsocketCommunicator] = []

    async def open(self, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
        socket = WebsocketCommunicator(application, "/ws/", headers=headers)
        self.opened.append(socket)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected, "the server refused the WebSocket handshake"
        return socket

    async def login(self, user, *, live: bool = True) -> WebsocketCommunicator:
        """
        A socket authenticated with an access JWT as its first frame. live: then a ping, so live
        events flow at once (else they wait RESUME_GRACE_SECONDS for a client frame: `resume`).
        """
        socket = await self.open()
        await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(user))})
        assert_auth_ok(await receive(socket), user)
        if live:
            await assert_open(socket)
        return socket

    async def close_all(self) -> None:
        errors = []
        for socket in self.opened:
            future = socket._future
            if future is None:
                continue
            if future.done():
                # Cancelled by a receive that timed out, or crashed: the test has already failed.
                if not future.cancelled():
                    future.exception()  # retrieved, so asyncio does not warn about it
                continue
            try:
                await socket.disconnect(timeout=TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - reported after every socket is closed
                errors.append(exc)
        # The ORM thread's connection, so teardown (flush, DROP DATABASE) meets no other session.
        await db(connections.close_all)()
        if errors:
            raise errors[0]


@pytest_asyncio.fixture
async def ws():
    sockets = Sockets()
    try:
        yield sockets
    finally:
        await sockets.close_all()


@pytest.fixture(autouse=True)
def fresh_live_delivery():
    """No socket registered with live delivery outlives its test's event loop."""
    for registry in (delivery._sockets, delivery._watchers, delivery._watched_by):
        registry.clear()
    yield
    for registry in (delivery._sockets, delivery._watchers, delivery._watched_by):
        registry.clear()


async def receive(socket: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict:
    return await socket.receive_json_from(timeout=timeout)


async def assert_closed(socket: WebsocketCommunicator, code: int, timeout: float = TIMEOUT) -> None:
    frame = await socket.receive_output(timeout)
    assert frame["type"] == "websocket.close", frame
    assert frame.get("code") == code, frame


async def assert_cookie_authenticated(socket: WebsocketCommunicator, user) -> None:
    """The first frame is auth.ok (with a short WS_AUTH_TIMEOUT, a refused cookie shows as the 4401 close)."""
    frame = await socket.receive_output(TIMEOUT)
    assert frame["type"] == "websocket.send", f"the session cookie did not authenticate: {frame}"
    assert_auth_ok(json.loads(frame["text"]), user)


async def assert_silent(*sockets: WebsocketCommunicator, timeout: float = QUIET) -> None:
    """No frame reaches any of these sockets for `timeout` seconds (all watched at once)."""
    quiet = await asyncio.gather(*(socket.receive_nothing(timeout=timeout) for socket in sockets))
    for socket, nothing in zip(sockets, quiet):
        assert nothing, f"unexpected frame: {socket.output_queue._queue[0]}"


async def assert_open(socket: WebsocketCommunicator) -> None:
    """Still open and serving: answers a ping."""
    await socket.send_json_to({"type": "ping"})
    assert await receive(socket) == {"type": "pong"}


# --- database and REST, from the async tests -----------------------------------------
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@db
def rest(user, method: str, path: str, data=None, status: int = 200):
    response = getattr(api(user), method)(path, data, format="json")
    assert response.status_code == status, response.content
    return response.json() if response.content else None


@db
def session_cookie(user) -> bytes:
    """The Cookie header of a browser that logged in through Django's login (django.test.Client)."""
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


def message_url(message_id) -> str:
    return f"/api/messages/{message_id}/"


def conversation_url(conversation_id) -> str:
    return f"/api/conversations/{conversation_id}/"


def assert_message_event(event: dict, event_type: str, rest_message: dict) -> None:
    """{"type", "conversation_id", "message"}, the message exactly as the REST API returns it."""
    assert set(event) == {"type", "conversation_id", "message", "event_id"}, event
    assert isinstance(event["event_id"], int) and event["event_id"] > 0
    assert event["type"] == event_type
    assert event["conversation_id"] == rest_message["conversation"]
    assert set(event["message"]) == MESSAGE_KEYS
    assert event["message"] == rest_message


def assert_conversation_event(event: dict, event_type: str, rest_conversation: dict) -> None:
    """{"type", "conversation_id", "conversation"}, as GET /api/conversations/{id}/ returns it to the recipient."""
    assert set(event) == {"type", "conversation_id", "conversation", "event_id"}, event
    assert isinstance(event["event_id"], int) and event["event_id"] > 0
    assert event["type"] == event_type
    assert event["conversation_id"] == rest_conversation["conversation_id"]
    assert set(event["conversation"]) == CONVERSATION_KEYS
    assert event["conversation"] == rest_conversation


def participant_ids(conversation_json: dict) -> set[str]:
    return {p["user_id"] for p in conversation_json["participants"]}


# ==================================================================================
# Authentication
# ==================================================================================
async def test_jwt_first_frame_authenticates_with_auth_ok_and_user_id(ws, alice):
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(alice))})
    assert_auth_ok(await receive(socket), alice)
    await assert_open(socket)


def _garbage(user):
    return {"type": "auth", "token": "not-a-jwt"}


def _expired(user):
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=5))
    return {"type": "auth", "token": str(token)}


def _refresh_instead_of_access(user):
    return {"type": "auth", "token": str(RefreshToken.for_user(user))}


def _signed_with_another_key(user):
    payload = dict(AccessToken.for_user(user).payload)
    return {"type": "auth", "token": jwt.encode(payload, "an-attacker-key-" + "x" * 32, algorithm="HS256")}


def _inactive_user(user):
    token = str(AccessToken.for_user(user))  # issued while active, still unexpired
    user.is_active = False
    user.save(update_fields=["is_active"])
    return {"type": "auth", "token": token}


def _deleted_user(user):
    token = str(AccessToken.for_user(user))
    user.delete()
    return {"type": "auth", "token": token}


def _missing(user):
    return {"type": "auth"}


def _empty(user):
    return {"type": "auth", "token": ""}


def _not_a_string(user):
    return {"type": "auth", "token": {"access": str(AccessToken.for_user(user))}}


@pytest.mark.parametrize(
    "make_frame",
    [
        _garbage,
        _expired,
        _refresh_instead_of_access,
        _signed_with_another_key,
        _inactive_user,
        _deleted_user,
        _missing,
        _empty,
        _not_a_string,
    ],
)
async def test_bad_expired_inactive_or_missing_token_closes_with_4401(ws, alice, make_frame):
    frame = await db(make_frame)(alice)
    socket = await ws.open()
    await socket.send_json_to(frame)
    await assert_closed(socket, 4401)


@pytest.mark.parametrize("frame", [{"type": "ping"}, {"type": "typing", "conversation_id": "x"}, {"type": "AUTH"}])
async def test_a_first_frame_that_is_not_auth_closes_with_4401(ws, frame):
    socket = await ws.open()
    await socket.send_json_to(frame)
    await assert_closed(socket, 4401)


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '["auth", "token"]', '"auth"', "42", "null", '{"token": "x"}', '{"type": 5}'],
)
async def test_a_malformed_first_frame_closes_with_4400(ws, text):
    """Not JSON, or not an object with a string "type"."""
    socket = await ws.open()
    await socket.send_to(text_data=text)
    await assert_closed(socket, 4400)


async def test_a_binary_first_frame_that_is_not_utf8_json_closes_with_4400(ws):
    socket = await ws.open()
    await socket.send_to(bytes_data=b"\xff\xfe\x00garbage")
    await assert_closed(socket, 4400)


async def test_no_frame_within_ws_auth_timeout_closes_with_4401(ws, settings):
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await ws.open()
    await assert_silent(socket, timeout=0.15)  # not before the deadline
    await assert_closed(socket, 4401, timeout=TIMEOUT)


async def test_auth_in_time_cancels_the_deadline(ws, settings, alice):
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await ws.login(alice)
    await asyncio.sleep(0.5)
    await assert_silent(socket)
    await assert_open(socket)


# --- session cookie ---------------------------------------------------------------
async def test_session_cookie_without_origin_authenticates_at_once_and_receives_events(ws, alice, bob):
    """Non-browser clients send no Origin: the cookie is trusted; the socket then works like any other."""
    socket = await ws.open(headers=[(b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(socket, alice)
    await assert_open(socket)

    bob_socket = await ws.login(bob)
    conversation = await db(make_conversation)(bob, alice)
    assert (await receive(socket))["type"] == "conversation.created"
    assert (await receive(bob_socket))["type"] == "conversation.created"
    # Typing from a cookie-authenticated socket carries that user's summary.
    await socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    typing = await receive(bob_socket)
    assert typing["user"] == {"user_id": str(alice.pk), "first_name": "Alice", "last_name": "Archer"}


def opened_from(origin: bytes) -> list[tuple[bytes, bytes]]:
    """Headers of a socket its page opened on the page's own origin (TLS ended at the proxy for https)."""
    scheme, host = origin.split(b"://")
    return [(b"origin", origin), (b"host", host)] + ([(b"x-forwarded-proto", b"https")] if scheme == b"https" else [])


@pytest.mark.parametrize("origin", [b"http://127.0.0.1", b"http://localhost", b"https://localhost", b"http://[::1]"])
async def test_session_cookie_from_an_allowed_host_origin_authenticates(ws, settings, alice, origin):
    settings.WS_AUTH_TIMEOUT = 0.5
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    socket = await ws.open(headers=opened_from(origin) + [(b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(socket, alice)


async def test_session_cookie_from_a_cors_allowed_origin_authenticates(ws, settings, alice):
    settings.WS_AUTH_TIMEOUT = 0.5
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    socket = await ws.open(headers=[(b"origin", b"https://app.example.com"), (b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(socket, alice)


@pytest.mark.parametrize("origin", [b"http://127.0.0.1:8000", b"http://localhost:8000"])
async def test_session_cookie_from_our_own_page_served_on_a_port_authenticates(ws, settings, alice, origin):
    """
    A page served by `make run` (runserver on 127.0.0.1:8000) opens its socket with
    Origin http://127.0.0.1:8000 to Host 127.0.0.1:8000; its host (127.0.0.1) is in
    ALLOWED_HOSTS, which, as everywhere in Django, names hosts without ports.
    """
    settings.WS_AUTH_TIMEOUT = 0.5
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    socket = await ws.open(headers=opened_from(origin) + [(b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(socket, alice)


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"http://127.0.0.1.evil.example", b"http://127.0.0.1@evil.example", b"null"],
)
async def test_session_cookie_from_a_foreign_origin_is_ignored_until_the_deadline(ws, settings, alice, origin):
    """Cross-site WebSocket hijacking: the cookie does not authenticate; no token in time -> 4401."""
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await ws.open(headers=[(b"origin", origin), (b"cookie", await session_cookie(alice))])
    await assert_closed(socket, 4401)  # the first frame is the close: no auth.ok came before it


async def test_session_cookie_from_a_foreign_origin_then_a_non_auth_frame_closes_with_4401(ws, settings, alice):
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    socket = await ws.open(headers=[(b"origin", b"http://evil.example"), (b"cookie", await session_cookie(alice))])
    await assert_silent(socket)
    await socket.send_json_to({"type": "ping"})
    await assert_closed(socket, 4401)


async def test_session_cookie_from_a_foreign_origin_still_allows_a_token(ws, settings, alice):
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    socket = await ws.open(headers=[(b"origin", b"http://evil.example"), (b"cookie", await session_cookie(alice))])
    await assert_silent(socket)
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(alice))})
    assert_auth_ok(await receive(socket), alice)


async def test_session_cookie_of_a_deactivated_user_does_not_authenticate(ws, settings, alice):
    settings.WS_AUTH_TIMEOUT = 0.3
    cookie = await session_cookie(alice)
    alice.is_active = False
    await db(alice.save)(update_fields=["is_active"])
    socket = await ws.open(headers=[(b"cookie", cookie)])
    await assert_closed(socket, 4401)


async def test_an_unknown_session_cookie_does_not_authenticate(ws, settings):
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await ws.open(headers=[(b"cookie", b"sessionid=no-such-session")])
    await assert_closed(socket, 4401)


# ==================================================================================
# Events, with the REST shapes
# ==================================================================================
async def test_message_created_by_the_service_reaches_every_participant_socket_in_the_rest_shape(
    ws, alice, bob, mallory
):
    """Every participant (the sender included, on every socket of theirs) gets the message as REST returns it."""
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_phone, bob_laptop = await ws.login(alice), await ws.login(bob), await ws.login(bob)
    outsider = await ws.login(mallory)

    message = await db(send)(conversation, alice, "hello over the wire", client_id="c-1")
    rest_message = await rest(bob, "get", message_url(message.pk))
    for socket in (alice_socket, bob_phone, bob_laptop):
        assert_message_event(await receive(socket), "message.created", rest_message)
    assert rest_message["message_body"] == "hello over the wire" and rest_message["client_id"] == "c-1"
    await assert_silent(alice_socket, bob_phone, bob_laptop, outsider)


async def test_message_created_through_the_rest_api_equals_the_rest_response(ws, alice, bob, carol):
    conversation = await db(make_conversation)(alice, bob, carol)
    sockets = [await ws.login(u) for u in (alice, bob, carol)]
    created = await rest(
        bob, "post", f"{conversation_url(conversation.pk)}messages/", {"message_body": "via REST"}, status=201
    )
    for socket in sockets:
        assert_message_event(await receive(socket), "message.created", created)
    # A reply through the flat endpoint carries its parent.
    reply = await rest(
        carol,
        "post",
        "/api/messages/",
        {"conversation": str(conversation.pk), "message_body": "re", "parent_message": created["message_id"]},
        status=201,
    )
    for socket in sockets:
        assert_message_event(await receive(socket), "message.created", reply)
    assert reply["parent_message"] == created["message_id"]
    await assert_silent(*sockets)


async def test_message_updated_reaches_every_participant_with_the_edited_message(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob)
    message = await db(send)(conversation, alice, "first draft")
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)

    await db(services.message_edit)(message=message, actor=alice, message_body="final text")
    rest_message = await rest(bob, "get", message_url(message.pk))
    for socket in (alice_socket, bob_socket):
        assert_message_event(await receive(socket), "message.updated", rest_message)
    assert rest_message["message_body"] == "final text" and rest_message["edited_at"] is not None
    # An edit to the same text changes nothing and sends nothing.
    await db(services.message_edit)(message=message, actor=alice, message_body="final text")
    await assert_silent(alice_socket, bob_socket)


async def test_message_deleted_reaches_every_participant_as_the_tombstone(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob)
    message = await db(send)(conversation, alice, "oops")
    await db(services.message_edit)(message=message, actor=alice, message_body="oops, edited")
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)

    await db(services.message_delete)(message=message, actor=alice)
    rest_message = await rest(bob, "get", message_url(message.pk))
    for socket in (alice_socket, bob_socket):
        event = await receive(socket)
        assert_message_event(event, "message.deleted", rest_message)
        tombstone = event["message"]
        assert tombstone["is_deleted"] is True
        assert tombstone["message_body"] == ""
        assert tombstone["edited_at"] is None
        assert tombstone["message_id"] == str(message.pk)
    # Deleting again changes nothing and sends nothing.
    await db(services.message_delete)(message=message, actor=alice)
    await assert_silent(alice_socket, bob_socket)


async def test_conversation_created_after_connecting_reaches_every_participant_with_their_own_unread_count(
    ws, alice, bob, carol, mallory
):
    """
    A conversation opened after the sockets connected reaches them; each gets it as
    GET /api/conversations/{id}/ returns it to them. Its first messages come inside
    it (last_message, message_count), not as separate message.created events.
    """
    sockets = {u.pk: await ws.login(u) for u in (alice, bob, carol)}
    outsider = await ws.login(mallory)

    created = await rest(
        alice,
        "post",
        "/api/conversations/",
        {"participants": [str(bob.pk), str(carol.pk)], "messages": [{"message_body": "hi"}, {"message_body": "all"}]},
        status=201,
    )
    for user in (alice, bob, carol):
        rest_conversation = await rest(user, "get", conversation_url(created["conversation_id"]))
        assert_conversation_event(await receive(sockets[user.pk]), "conversation.created", rest_conversation)
        assert rest_conversation["message_count"] == 2
        assert rest_conversation["last_message"]["message_body"] == "all"
        assert rest_conversation["unread_count"] == (0 if user == alice else 2)
    assert participant_ids(created) == {str(alice.pk), str(bob.pk), str(carol.pk)}
    await assert_silent(*sockets.values(), outsider)


async def test_reopening_an_existing_two_person_conversation_sends_message_created_not_conversation_created(
    ws, alice, bob
):
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    again, created = await db(services.conversation_create)(
        creator=bob, participant_ids=[alice.pk], message_bodies=["back again"]
    )
    assert not created and again.pk == conversation.pk
    for socket in (alice_socket, bob_socket):
        event = await receive(socket)
        assert event["type"] == "message.created"
        assert event["conversation_id"] == str(conversation.pk)
        assert event["message"]["message_body"] == "back again"
    await assert_silent(alice_socket, bob_socket)


async def test_adding_a_participant_sends_conversation_updated_to_the_others_and_created_to_the_added(
    ws, alice, bob, carol, mallory
):
    conversation = await db(make_conversation)(alice, bob, messages=("before carol",))
    alice_socket, bob_socket, carol_socket = await ws.login(alice), await ws.login(bob), await ws.login(carol)
    outsider = await ws.login(mallory)

    await rest(alice, "post", f"{conversation_url(conversation.pk)}participants/", {"user_id": str(carol.pk)}, 201)
    for user, socket in ((alice, alice_socket), (bob, bob_socket)):
        rest_conversation = await rest(user, "get", conversation_url(conversation.pk))
        assert_conversation_event(await receive(socket), "conversation.updated", rest_conversation)
        assert str(carol.pk) in participant_ids(rest_conversation)
    carol_view = await rest(carol, "get", conversation_url(conversation.pk))
    assert_conversation_event(await receive(carol_socket), "conversation.created", carol_view)
    assert carol_view["unread_count"] == 0  # the history before joining counts as read
    await assert_silent(alice_socket, bob_socket, carol_socket, outsider)

    # From now on the added person gets the conversation's events too.
    message = await db(send)(conversation, bob, "welcome carol")
    for socket in (alice_socket, bob_socket, carol_socket):
        event = await receive(socket)
        assert (event["type"], event["message"]["message_id"]) == ("message.created", str(message.pk))
    await assert_silent(outsider)


@pytest.mark.parametrize("remover", ["creator removes", "leaves"])
async def test_removing_a_participant_sends_removed_to_them_updated_to_the_rest_and_nothing_more_to_them(
    ws, alice, bob, carol, remover
):
    """
    The removed person gets {"type": "conversation.removed", "conversation_id"} and
    then nothing of that conversation (messages, edits, membership changes, typing);
    the remaining participants get conversation.updated without them.
    """
    conversation = await db(make_conversation)(alice, bob, carol)
    old_message = await db(send)(conversation, alice, "carol can see this")
    alice_socket, bob_socket, carol_socket = await ws.login(alice), await ws.login(bob), await ws.login(carol)

    actor = alice if remover == "creator removes" else carol
    await rest(actor, "delete", f"{conversation_url(conversation.pk)}participants/{carol.pk}/", status=204)
    removed = await receive(carol_socket)
    assert removed == {"type": "conversation.removed", "conversation_id": str(conversation.pk),
                       "event_id": removed["event_id"]}
    for user, socket in ((alice, alice_socket), (bob, bob_socket)):
        rest_conversation = await rest(user, "get", conversation_url(conversation.pk))
        assert_conversation_event(await receive(socket), "conversation.updated", rest_conversation)
        assert participant_ids(rest_conversation) == {str(alice.pk), str(bob.pk)}
    await assert_silent(carol_socket)

    # Nothing more of this conversation reaches the removed person.
    await db(send)(conversation, alice, "after carol left")
    await db(services.message_edit)(message=old_message, actor=alice, message_body="edited after")
    await db(services.message_delete)(message=old_message, actor=alice)
    newcomer = await db(UserFactory)()
    await db(services.conversation_add_participant)(conversation=conversation, actor=alice, user_id=newcomer.pk)
    await db(services.conversation_mark_read)(conversation=conversation, user=carol)  # no longer hers: no-op
    await bob_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    expected = ["message.created", "message.updated", "message.deleted", "conversation.updated"]
    assert [(await receive(alice_socket))["type"] for _ in expected] == expected
    assert [(await receive(bob_socket))["type"] for _ in expected] == expected
    assert (await receive(alice_socket))["type"] == "typing"
    await assert_silent(carol_socket, alice_socket, bob_socket)


async def test_conversation_read_goes_to_the_readers_own_sockets_only(ws, alice, bob, carol):
    """
    {"type": "conversation.read", "conversation_id", "last_read_at", "unread_count", "unread_mentions"}:
    the read state the REST call returns, to every socket of the reader and nobody else. The
    others get read_marker.moved ("seen by": whose marker, where to), without the reader's unread count.
    """
    conversation = await db(make_conversation)(alice, bob, carol, messages=("one", "two"))
    alice_socket, bob_phone, bob_laptop, carol_socket = (
        await ws.login(alice),
        await ws.login(bob),
        await ws.login(bob),
        await ws.login(carol),
    )
    messages = await rest(bob, "get", f"{conversation_url(conversation.pk)}messages/")
    oldest = min(messages["results"], key=lambda m: m["sent_at"])

    state = await rest(bob, "post", f"{conversation_url(conversation.pk)}read/", {"message_id": oldest["message_id"]})
    assert state["unread_count"] == 1 and state["last_read_at"] == oldest["sent_at"]
    seen = set()
    for socket in (bob_phone, bob_laptop):
        event = await receive(socket)
        assert set(event) == {"type", "conversation_id", "last_read_at", "unread_count", "unread_mentions", "event_id"}
        assert event == {"type": "conversation.read", **state, "event_id": event["event_id"]}
        seen.add(event["event_id"])
    assert len(seen) == 1  # the same event: the same event_id on every socket of the user
    for socket in (alice_socket, carol_socket):
        moved = await receive(socket)
        assert moved == {
            "type": "read_marker.moved",
            "conversation_id": str(conversation.pk),
            "user_id": str(bob.pk),
            "last_read_at": state["last_read_at"],
            "event_id": moved["event_id"],
        }
    await assert_silent(alice_socket, carol_socket, bob_phone, bob_laptop)

    # The service, up to the newest message.
    await db(services.conversation_mark_read)(conversation=conversation, user=bob)
    fresh = await rest(bob, "get", conversation_url(conversation.pk))
    for socket in (bob_phone, bob_laptop):
        event = await receive(socket)
        assert event["type"] == "conversation.read"
        assert event["unread_count"] == fresh["unread_count"] == 0
        assert event["last_read_at"] == fresh["last_message"]["sent_at"]
    for socket in (alice_socket, carol_socket):
        moved = await receive(socket)
        assert moved["type"] == "read_marker.moved" and moved["last_read_at"] == fresh["last_message"]["sent_at"]

    # A marker that does not move (already read) sends nothing.
    await rest(bob, "post", f"{conversation_url(conversation.pk)}read/", {"message_id": oldest["message_id"]})
    await db(services.conversation_mark_read)(conversation=conversation, user=bob)
    await assert_silent(alice_socket, carol_socket, bob_phone, bob_laptop)


# ==================================================================================
# Privacy
# ==================================================================================
async def test_a_non_participant_receives_nothing_of_a_conversation(ws, alice, bob, carol, mallory):
    """Created, message created/updated/deleted, participant added/removed, read, typing: none reach Mallory."""
    outsider = await ws.login(mallory)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)

    conversation = await db(make_conversation)(alice, bob, messages=("secret",))
    message = await db(send)(conversation, alice, "more secrets")
    await db(services.message_edit)(message=message, actor=alice, message_body="edited secret")
    await db(services.message_delete)(message=message, actor=alice)
    await db(services.conversation_add_participant)(conversation=conversation, actor=alice, user_id=carol.pk)
    await db(services.conversation_remove_participant)(conversation=conversation, actor=alice, user_id=carol.pk)
    await db(services.conversation_mark_read)(conversation=conversation, user=bob)
    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})

    bob_saw = [(await receive(bob_socket))["type"] for _ in range(8)]
    assert bob_saw == [
        "conversation.created",
        "message.created",
        "message.updated",
        "message.deleted",
        "conversation.updated",
        "conversation.updated",
        "conversation.read",
        "typing",
    ]
    await assert_silent(outsider)


async def test_typing_into_a_conversation_you_are_not_in_is_not_found_and_reaches_nobody(ws, alice, bob, mallory):
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket, outsider = await ws.login(alice), await ws.login(bob), await ws.login(mallory)

    await outsider.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    error = await receive(outsider)
    assert set(error) == {"type", "code", "detail"}
    assert (error["type"], error["code"]) == ("error", "not_found")
    await assert_silent(alice_socket, bob_socket, outsider)
    await assert_open(outsider)


@pytest.mark.parametrize(
    "conversation_id",
    ["not-a-uuid", "", "00000000-0000-0000-0000-00000000000Z", 12345, -1, 2**200, 1.5, None, [], {"id": 1}, True],
)
async def test_typing_with_a_malformed_conversation_id_is_an_error_and_the_socket_stays_open(
    ws, alice, bob, conversation_id
):
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    await alice_socket.send_json_to({"type": "typing", "conversation_id": conversation_id})
    error = await receive(alice_socket)
    assert (error["type"], error["code"]) == ("error", "not_found")
    await assert_open(alice_socket)
    await assert_silent(bob_socket)
    # Still serves the conversations it is in.
    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    assert (await receive(bob_socket))["type"] == "typing"


async def test_typing_without_a_conversation_id_is_an_error(ws, alice):
    socket = await ws.login(alice)
    await socket.send_json_to({"type": "typing"})
    error = await receive(socket)
    assert (error["type"], error["code"]) == ("error", "not_found")
    await assert_open(socket)


# ==================================================================================
# Typing
# ==================================================================================
async def test_typing_reaches_the_other_participants_with_the_typist_summary_but_not_the_sender(
    ws, alice, bob, carol, mallory
):
    conversation = await db(make_conversation)(alice, bob, carol)
    alice_socket, bob_socket, carol_socket = await ws.login(alice), await ws.login(bob), await ws.login(carol)
    outsider = await ws.login(mallory)

    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    expected = {
        "type": "typing",
        "conversation_id": str(conversation.pk),
        "user": {"user_id": str(alice.pk), "first_name": "Alice", "last_name": "Archer"},
    }
    assert await receive(bob_socket) == expected
    assert await receive(carol_socket) == expected
    await assert_silent(alice_socket, bob_socket, carol_socket, outsider)


async def test_a_second_typing_frame_within_the_interval_is_dropped(ws, alice, bob, carol, monkeypatch):
    """At most one typing event per conversation per TYPING_INTERVAL per socket; dropped silently."""
    monkeypatch.setattr(consumers, "TYPING_INTERVAL", 0.5)
    first = await db(make_conversation)(alice, bob)
    second = await db(make_conversation)(alice, bob, carol)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    frame = {"type": "typing", "conversation_id": str(first.pk)}

    await alice_socket.send_json_to(frame)
    assert (await receive(bob_socket))["conversation_id"] == str(first.pk)
    await alice_socket.send_json_to(frame)
    await assert_silent(bob_socket, alice_socket)  # dropped, without an error to the sender
    # The interval is per conversation: another conversation is not held back.
    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(second.pk)})
    assert (await receive(bob_socket))["conversation_id"] == str(second.pk)
    # After the interval the first conversation's typing goes through again.
    await asyncio.sleep(0.6)
    await alice_socket.send_json_to(frame)
    assert (await receive(bob_socket))["conversation_id"] == str(first.pk)
    await assert_silent(bob_socket)


async def test_the_typing_interval_is_per_socket(ws, alice, bob, monkeypatch):
    """Another device of the same person types independently."""
    monkeypatch.setattr(consumers, "TYPING_INTERVAL", 60.0)
    conversation = await db(make_conversation)(alice, bob)
    phone, laptop, bob_socket = await ws.login(alice), await ws.login(alice), await ws.login(bob)
    frame = {"type": "typing", "conversation_id": str(conversation.pk)}
    await phone.send_json_to(frame)
    await laptop.send_json_to(frame)
    assert (await receive(bob_socket))["type"] == "typing"
    assert (await receive(bob_socket))["type"] == "typing"
    await assert_silent(bob_socket, phone, laptop)


async def test_more_than_typing_drops_before_close_dropped_frames_close_the_socket_with_4429(
    ws, alice, bob, monkeypatch
):
    monkeypatch.setattr(consumers, "TYPING_INTERVAL", 60.0)
    monkeypatch.setattr(consumers, "TYPING_DROPS_BEFORE_CLOSE", 3)
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    frame = {"type": "typing", "conversation_id": str(conversation.pk)}

    await alice_socket.send_json_to(frame)
    assert (await receive(bob_socket))["type"] == "typing"
    for _ in range(3):  # up to the limit: dropped, the socket stays open
        await alice_socket.send_json_to(frame)
    await assert_open(alice_socket)
    await alice_socket.send_json_to(frame)  # one more than allowed
    await assert_closed(alice_socket, 4429)
    await assert_silent(bob_socket)
    await assert_open(bob_socket)  # only the flooding socket is closed


@db
def _database_snapshot():
    return (
        list(Message.objects.order_by("pk").values()),
        list(MessageEdit.objects.order_by("pk").values()),
        list(Conversation.objects.order_by("pk").values()),
        list(ConversationMembership.objects.order_by("pk").values()),
    )


async def test_typing_stores_nothing(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob, messages=("hi",))
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    before = await _database_snapshot()
    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    assert (await receive(bob_socket))["type"] == "typing"
    await bob_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    assert (await receive(alice_socket))["type"] == "typing"
    assert await _database_snapshot() == before
    listing = await rest(bob, "get", f"{conversation_url(conversation.pk)}messages/")
    assert [m["message_body"] for m in listing["results"]] == ["hi"]


async def test_the_typing_interval_is_per_conversation_however_its_id_is_spelled(ws, alice, bob, monkeypatch):
    """
    "At most one per conversation every 3 seconds per socket": writing the same
    conversation's UUID another way (upper case, without dashes, in braces, as a
    URN) is still the same conversation, so those frames are dropped too.
    """
    monkeypatch.setattr(consumers, "TYPING_INTERVAL", 60.0)
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    spellings = [
        str(conversation.pk),
        str(conversation.pk).upper(),
        conversation.pk.hex,
        "{%s}" % conversation.pk,
        conversation.pk.urn,
    ]
    for spelling in spellings:
        await alice_socket.send_json_to({"type": "typing", "conversation_id": spelling})
    assert (await receive(bob_socket))["type"] == "typing"
    delivered = 1
    while not await bob_socket.receive_nothing(timeout=QUIET):
        await receive(bob_socket)
        delivered += 1
    assert delivered == 1, f"{delivered} typing events within one interval for one conversation"


async def test_the_typing_event_carries_the_conversation_id_as_the_rest_api_writes_it(ws, alice, bob):
    """The REST API writes UUIDs lower-case with dashes; a client spelling it otherwise must not change the event."""
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    await alice_socket.send_json_to({"type": "typing", "conversation_id": str(conversation.pk).upper()})
    event = await receive(bob_socket)
    assert event["conversation_id"] == str(conversation.pk)


# ==================================================================================
# Control frames after authentication
# ==================================================================================
async def test_ping_is_answered_with_pong(ws, alice):
    socket = await ws.login(alice)
    for _ in range(3):
        await socket.send_json_to({"type": "ping"})
        assert await receive(socket) == {"type": "pong"}


async def test_an_unknown_frame_type_is_error_unknown_type_and_the_socket_stays_open(ws, alice):
    socket = await ws.login(alice)
    await socket.send_json_to({"type": "subscribe", "conversation_id": "x"})
    error = await receive(socket)
    assert set(error) == {"type", "code", "detail"}
    assert (error["type"], error["code"]) == ("error", "unknown_type")
    # A very long type is not echoed back in full.
    await socket.send_json_to({"type": "x" * 10_000})
    error = await receive(socket)
    assert error["code"] == "unknown_type" and len(error["detail"]) < 200
    await assert_open(socket)


async def test_a_second_auth_frame_is_error_already_authenticated(ws, alice, bob):
    socket = await ws.login(alice)
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(bob))})
    error = await receive(socket)
    assert (error["type"], error["code"]) == ("error", "already_authenticated")
    await assert_open(socket)
    # Still Alice's socket: Bob's conversations do not reach it.
    bob_socket = await ws.login(bob)
    carol = await db(UserFactory)()
    await db(make_conversation)(bob, carol)
    assert (await receive(bob_socket))["type"] == "conversation.created"
    await assert_silent(socket)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"ping"', '{"no": "type"}', '{"type": null}'])
async def test_a_malformed_frame_after_auth_is_error_bad_frame_and_the_socket_stays_open(ws, alice, text):
    socket = await ws.login(alice)
    await socket.send_to(text_data=text)
    error = await receive(socket)
    assert set(error) == {"type", "code", "detail"}
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    await assert_open(socket)


async def test_a_binary_json_frame_after_auth_is_understood(ws, alice):
    socket = await ws.login(alice)
    await socket.send_to(bytes_data=json.dumps({"type": "ping"}).encode())
    assert await receive(socket) == {"type": "pong"}


# ==================================================================================
# Delivery only after commit
# ==================================================================================
class Rollback(Exception):
    pass


async def test_writes_rolled_back_send_nothing(ws, alice, bob, carol):
    """Service calls inside a transaction that rolls back deliver no event, and leave nothing behind."""
    conversation = await db(make_conversation)(alice, bob)
    message = await db(send)(conversation, alice, "kept")
    alice_socket, bob_socket, carol_socket = await ws.login(alice), await ws.login(bob), await ws.login(carol)

    def write_then_fail():
        with transaction.atomic():
            send(conversation, bob, "never committed")
            services.message_edit(message=message, actor=alice, message_body="never edited")
            services.conversation_create(creator=alice, participant_ids=[bob.pk, carol.pk])
            services.conversation_add_participant(conversation=conversation, actor=alice, user_id=carol.pk)
            services.conversation_mark_read(conversation=conversation, user=bob)
            raise Rollback

    with pytest.raises(Rollback):
        await db(write_then_fail)()
    await assert_silent(alice_socket, bob_socket, carol_socket)
    assert await db(Message.objects.filter(message_body="never committed").exists)() is False
    assert await db(Conversation.objects.count)() == 1


async def test_a_service_that_fails_sends_nothing(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob)
    message = await db(send)(conversation, alice, "mine")
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)
    with pytest.raises(PermissionDenied):
        await db(services.message_edit)(message=message, actor=bob, message_body="not yours")
    with pytest.raises(ValidationError):
        await db(services.message_send)(conversation=conversation, sender=alice, message_body="")
    await assert_silent(alice_socket, bob_socket)


async def test_events_wait_for_the_outermost_commit(ws, alice, bob):
    """A service called inside a larger transaction sends its event when that transaction commits, not before."""
    conversation = await db(make_conversation)(alice, bob)
    alice_socket, bob_socket = await ws.login(alice), await ws.login(bob)

    def send_inside_a_transaction():
        try:
            with transaction.atomic():
                message = send(conversation, alice, "held until commit")
                # The service's own atomic block has ended, the outer one has not: nothing yet.
                assert async_to_sync(bob_socket.receive_nothing)(QUIET), "delivered before the commit"
            return message
        finally:
            connections.close_all()

    # Not the shared ORM thread: the consumers need it (they close stale connections before
    # every handler), and would otherwise be held up by this open transaction, not by the rule.
    message = await sync_to_async(send_inside_a_transaction, thread_sensitive=False)()
    for socket in (alice_socket, bob_socket):
        event = await receive(socket)
        assert (event["type"], event["message"]["message_id"]) == ("message.created", str(message.pk))
