"""
Live delivery (chats/delivery.py): one Redis PUBLISH per write, whatever the number of
recipients; every process hands it to its own sockets; what the live path loses (Redis down, a
socket that stopped reading) comes from the stream, and a socket that stops reading is closed.
"""
import asyncio
import logging

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework_simplejwt.tokens import AccessToken

from chats import delivery, stream
from chats.consumers import CLOSE_TOO_SLOW
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.test_connection_reuse import PrivateRedis
from chats.tests.test_realtime import (  # noqa: F401 - fixtures
    TIMEOUT,
    assert_closed,
    assert_silent,
    db,
    fresh_live_delivery,
    receive,
    ws,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_redis(tmp_path, settings):
    """REDIS_URL on a redis-server of the test's own (slots and live delivery use it)."""
    server = PrivateRedis(tmp_path)
    server.start()
    settings.REDIS_URL = f"redis://127.0.0.1:{server.port}/0"
    delivery._sync_client = None
    yield server
    delivery._sync_client = None
    server.stop()


def publishes(server) -> int:
    stats = server.client.info("commandstats")
    return stats.get("cmdstat_publish", {}).get("calls", 0)


@db
def group_of(size):
    people = UserFactory.create_batch(size)
    return people, make_conversation(*people)


def messages_sent_slowly(monkeypatch, seconds: float) -> None:
    """The client takes each message.created frame only after `seconds` (it stopped reading: a long time)."""
    real_send_json = AsyncJsonWebsocketConsumer.send_json

    async def slow(consumer, content, close=False):
        if content.get("type") == "message.created":
            await asyncio.sleep(seconds)
        await real_send_json(consumer, content, close)

    monkeypatch.setattr(AsyncJsonWebsocketConsumer, "send_json", slow)


async def until(condition, timeout=TIMEOUT):
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition()


async def test_a_send_to_sixty_people_is_one_publish_and_reaches_every_socket(live_redis, ws):  # noqa: F811
    people, conversation = await group_of(60)
    sockets = [await ws.login(person) for person in people[:20]]
    await until(lambda: live_redis.client.pubsub_numsub("messaging:live")[0][1] == 1)
    before = publishes(live_redis)
    await db(send)(conversation, people[0], "to everyone")
    assert publishes(live_redis) - before == 1
    for person, socket in zip(people, sockets):
        frame = await receive(socket)
        assert frame["message"]["message_body"] == "to everyone"
        assert frame["event_id"] == await db(stream.position)(person.pk)


async def test_events_published_while_redis_was_down_arrive_when_it_is_back(live_redis, ws, caplog):  # noqa: F811
    alice, bob = await db(UserFactory.create_batch)(2)
    conversation = await db(make_conversation)(alice, bob)
    socket = await ws.login(bob)
    await until(lambda: live_redis.client.pubsub_numsub("messaging:live")[0][1] == 1)
    live_redis.stop()
    with caplog.at_level(logging.WARNING):
        await db(send)(conversation, alice, "while Redis was down")  # stored; its publish fails
    live_redis.start()
    frame = await receive(socket, timeout=10)  # the subscription comes back and checks the stream
    assert frame["message"]["message_body"] == "while Redis was down"
    await assert_silent(socket)


async def test_a_socket_that_stops_reading_is_closed_with_4408(ws, settings, monkeypatch, caplog):  # noqa: F811
    settings.WS_SEND_TIMEOUT = 0.3
    alice, bob = await db(UserFactory.create_batch)(2)
    conversation = await db(make_conversation)(alice, bob)
    socket = await ws.login(bob)
    messages_sent_slowly(monkeypatch, 3600)  # the frame never goes out
    before = delivery.slow_sockets_closed()
    with caplog.at_level(logging.WARNING, logger="chats.consumers"):
        await db(send)(conversation, alice, "never taken")
        await assert_closed(socket, CLOSE_TOO_SLOW)
    assert delivery.slow_sockets_closed() == before + 1
    assert "stopped reading" in caplog.text
    assert delivery.local_socket_count() == 0


async def test_too_many_waiting_events_close_the_socket(ws, settings, monkeypatch):  # noqa: F811
    settings.WS_MAX_PENDING_EVENTS = 3
    alice, bob = await db(UserFactory.create_batch)(2)
    conversation = await db(make_conversation)(alice, bob)
    socket = await ws.login(bob)
    messages_sent_slowly(monkeypatch, 0.5)
    for n in range(6):  # the first is being sent (slowly); three wait; the fifth is one too many
        await db(send)(conversation, alice, f"m{n}")
    await assert_closed(socket, CLOSE_TOO_SLOW)


async def test_auth_with_since_replays_before_any_live_event(ws):  # noqa: F811
    alice, bob = await db(UserFactory.create_batch)(2)
    conversation = await db(make_conversation)(alice, bob)
    seen = await db(stream.position)(bob.pk)
    await db(send)(conversation, alice, "missed")
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(bob)), "since": seen})
    assert (await receive(socket))["type"] == "auth.ok"
    replayed = await receive(socket)
    assert (replayed["event_id"], replayed["message"]["message_body"]) == (seen + 1, "missed")
    assert await receive(socket) == {"type": "resumed", "last_event_id": seen + 1}
    await db(send)(conversation, alice, "live")
    assert (await receive(socket))["event_id"] == seen + 2
