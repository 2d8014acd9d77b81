"""
Bots on the WebSocket (docs/websocket.md): a personal access token (bots/) in the auth frame,
`{"type": "auth", "token": "mat_..."}`, opens a socket when it has the `read` scope and receives
every event its user would; `typing`, the one frame that acts for the user, needs `send` as REST
writes do. Revoking the token (DELETE /api/tokens/{id}/) closes its sockets with 4401 and no
others; bad, revoked or deactivated users' tokens are refused like bad JWTs (4401); a token
without `read` gets 4403. Its sockets count against WS_MAX_SOCKETS_PER_USER, but not as its user
being connected (presence, pushes, digests), in-process and in a real Redis.

Same machinery as test_realtime.py: the real ASGI application, its `ws` fixture and helpers.
"""
import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from bots import services as bot_services
from bots.models import PersonalAccessToken
from chats import services, socket_slots
from chats.models import User
from chats.tests import test_realtime as realtime
from chats.tests.factories import PASSWORD, make_conversation
from chats.tests.test_delivery import live_redis  # noqa: F401 - fixture
from chats.tests.test_realtime import TIMEOUT, assert_closed, assert_open, assert_silent, receive
from chats.tests.utils import assert_auth_ok

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
ws = realtime.ws  # fixture: sockets closed after each test
fresh_live_delivery = realtime.fresh_live_delivery  # autouse fixture: a new in-memory layer per test


@db
def make_token(user, *scopes) -> tuple[PersonalAccessToken, str]:
    return bot_services.access_token_create(user=user, name="bot", scopes=scopes or ("read", "send"))


async def bot_socket(ws, user, value: str):
    """A socket authenticated with a personal access token, live at once (a ping after auth.ok)."""
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": value})
    assert_auth_ok(await receive(socket), user)
    await assert_open(socket)
    return socket


async def refused(ws, value, code: int):
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": value})
    await assert_closed(socket, code)


@db
def rest(user, method: str, path: str, data=None, status: int = 200, token: str | None = None):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    else:
        client.force_authenticate(user)
    response = getattr(client, method)(path, data, format="json")
    assert response.status_code == status, response.content
    return response.json() if response.content else None


async def test_a_read_token_receives_events_and_revoking_it_closes_only_its_sockets_with_4401(ws, alice, bob):
    token, value = await make_token(alice, "read")
    other_token, other_value = await make_token(alice, "read")
    bot = await bot_socket(ws, alice, value)

    conversation = await db(make_conversation)(bob, alice)
    assert (await receive(bot))["type"] == "conversation.created"
    await rest(bob, "post", f"/api/conversations/{conversation.pk}/messages/", {"message_body": "hi bot"}, status=201)
    event = await receive(bot)
    assert event["type"] == "message.created" and event["message"]["message_body"] == "hi bot"
    assert isinstance(event["event_id"], int)

    other_bot = await bot_socket(ws, alice, other_value)
    alice_phone, bob_socket = await ws.login(alice), await ws.login(bob)

    await rest(alice, "delete", f"/api/tokens/{token.pk}/", status=204)
    await assert_closed(bot, 4401, timeout=TIMEOUT)
    for socket in (other_bot, alice_phone, bob_socket):
        await assert_open(socket)
    await refused(ws, value, 4401)  # and it opens nothing more
    assert await db(lambda: PersonalAccessToken.objects.get(pk=other_token.pk).last_used_at is not None)()


async def test_a_read_only_token_cannot_type_and_a_send_token_can(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob)
    _, read_only = await make_token(alice, "read")
    _, read_send = await make_token(alice, "read", "send")
    reader, sender = await bot_socket(ws, alice, read_only), await bot_socket(ws, alice, read_send)
    bob_socket = await ws.login(bob)

    await reader.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    error = await receive(reader)
    assert (error["type"], error["code"]) == ("error", "permission_denied")
    await assert_silent(bob_socket)
    # As over REST: the same token may read the conversation but not write to it.
    messages = f"/api/conversations/{conversation.pk}/messages/"
    await rest(alice, "get", messages, token=read_only)
    await rest(alice, "post", messages, {"message_body": "no"}, status=403, token=read_only)
    await assert_open(reader)  # refused, not closed; it still reads
    await reader.send_json_to({"type": "resume", "since": 0})
    assert (await receive(reader))["type"] == "conversation.created"
    assert (await receive(reader))["type"] == "resumed"

    await sender.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    typing = await receive(bob_socket)
    assert typing["type"] == "typing" and typing["user"]["user_id"] == str(alice.pk)


async def test_a_read_only_token_typing_in_a_loop_is_closed_like_a_flood(ws, alice, bob):
    conversation = await db(make_conversation)(alice, bob)
    _, read_only = await make_token(alice, "read")
    reader = await bot_socket(ws, alice, read_only)
    for _ in range(51):  # one more than TYPING_DROPS_BEFORE_CLOSE
        await reader.send_json_to({"type": "typing", "conversation_id": str(conversation.pk)})
    for _ in range(51):
        assert (await receive(reader))["code"] == "permission_denied"
    await assert_closed(reader, 4429)


async def test_a_token_without_the_read_scope_is_refused_with_4403(ws, alice):
    _, send_only = await make_token(alice, "send")
    await refused(ws, send_only, 4403)


@db
def deactivated_users_token(user) -> str:
    _, value = bot_services.access_token_create(user=user, name="bot", scopes=["read"])
    User.objects.filter(pk=user.pk).update(is_active=False)
    return value


@db
def revoked_token(user) -> str:
    token, value = bot_services.access_token_create(user=user, name="bot", scopes=["read"])
    bot_services.access_token_revoke(token=token)
    return value


@db
def unknown_token(user) -> str:
    return "mat_" + "x" * 43


@db
def prefix_only(user) -> str:
    return "mat_"


@pytest.mark.parametrize("make_value", [unknown_token, prefix_only, revoked_token, deactivated_users_token])
async def test_bad_revoked_or_deactivated_users_tokens_close_with_4401(ws, alice, make_value):
    await refused(ws, await make_value(alice), 4401)


async def test_deactivating_the_user_closes_their_token_sockets(ws, alice, bob):
    _, value = await make_token(alice, "read")
    bot = await bot_socket(ws, alice, value)
    bob_socket = await ws.login(bob)
    user = await db(User.objects.get)(pk=alice.pk)
    await db(services.user_set_active)(user=user, is_active=False)
    await assert_closed(bot, 4401, timeout=TIMEOUT)
    await assert_open(bob_socket)


async def test_logging_out_a_login_leaves_the_token_sockets_open(ws, alice):
    _, value = await make_token(alice, "read")
    bot = await bot_socket(ws, alice, value)
    login = await rest(alice, "post", "/api/token/", {"email": alice.email, "password": PASSWORD})
    phone = await ws.open()
    await phone.send_json_to({"type": "auth", "token": login["access"]})
    assert_auth_ok(await receive(phone), alice)
    await rest(alice, "post", "/api/token/blacklist/", {"refresh": login["refresh"]})
    await assert_closed(phone, 4401, timeout=TIMEOUT)
    await assert_open(bot)


async def test_token_sockets_count_against_the_cap(ws, settings, alice):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    _, value = await make_token(alice, "read")
    await bot_socket(ws, alice, value)
    await ws.login(alice)
    await refused(ws, value, 4409)
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(alice))})
    await assert_closed(socket, 4409)


async def test_a_token_socket_is_not_its_user_being_connected(ws, alice, bob):
    """Presence, pushes and digests ask socket_slots.connected: a bot listening is not the person."""
    await db(make_conversation)(alice, bob)
    _, value = await make_token(alice, "read")
    await bot_socket(ws, alice, value)
    assert await socket_slots.connected([alice.pk]) == set()
    assert await db(socket_slots.connected_now)([alice.pk]) == set()
    presence = await rest(bob, "get", f"/api/presence/?user_id={alice.pk}")
    assert [p["online"] for p in presence] == [False]
    await ws.login(alice)
    assert await socket_slots.connected([alice.pk]) == {alice.pk}
    assert [p["online"] for p in await rest(bob, "get", f"/api/presence/?user_id={alice.pk}")] == [True]


async def test_with_redis_a_token_socket_takes_a_slot_but_is_not_connected(
    live_redis, ws, settings, alice  # noqa: F811
):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    _, value = await make_token(alice, "read")
    await bot_socket(ws, alice, value)
    slots = live_redis.client.zrange(f"ws:sockets:{alice.pk.hex}", 0, -1)
    assert [name.decode().startswith(socket_slots.BOT_PREFIX) for name in slots] == [True]
    assert await socket_slots.connected([alice.pk]) == set()
    assert await db(socket_slots.connected_now)([alice.pk]) == set()
    await ws.login(alice)
    assert await socket_slots.connected([alice.pk]) == {alice.pk}
    assert await db(socket_slots.connected_now)([alice.pk]) == {alice.pk}
    await refused(ws, value, 4409)  # two slots taken, one of them the bot's


async def test_a_token_revoked_while_its_socket_authenticates_still_closes_it(ws, alice, monkeypatch):
    """The revocation goes out before the socket listens for it (here: while it takes its slot)."""
    token, value = await make_token(alice, "read")
    claim = socket_slots.claim

    async def revoked_meanwhile(user_id, socket_id):
        await db(bot_services.access_token_revoke)(token=token)
        return await claim(user_id, socket_id)

    monkeypatch.setattr(socket_slots, "claim", revoked_meanwhile)
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": value})
    assert_auth_ok(await receive(socket), alice)
    await assert_closed(socket, 4401)


async def test_a_socket_whose_slot_cannot_be_taken_while_redis_is_down_is_closed_1013(ws, alice, settings):
    """A Redis outage while a socket authenticates: a clear close code to retry on (1013), never an unhandled error."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(alice))})
    await assert_closed(socket, 1013)
