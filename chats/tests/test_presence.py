"""
Presence (chats/presence.py): online from the sockets, last_seen_at otherwise, seen only by people
who share a conversation (and not at all when hidden), announced to the sockets that subscribed,
with a grace period so reloads and flapping connections announce nothing.
"""
import asyncio

import pytest

from chats.models import User
from chats.tests.factories import UserFactory, make_conversation
from chats.tests.test_delivery import live_redis  # noqa: F401 - fixture
from chats.tests.test_realtime import (  # noqa: F401 - fixtures
    TIMEOUT,
    assert_silent,
    db,
    fresh_live_delivery,
    receive,
    ws,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
GRACE = 0.3


@pytest.fixture(autouse=True)
def short_grace(settings):
    settings.PRESENCE_OFFLINE_GRACE = GRACE


@db
def trio():
    alice, bob, carol = UserFactory.create_batch(3)
    make_conversation(alice, bob)  # carol shares nothing with them
    return alice, bob, carol


async def subscribe(socket, *users):
    await socket.send_json_to({"type": "presence.subscribe", "user_ids": [str(u.pk) for u in users]})


async def test_a_subscriber_sees_a_contact_come_online_and_go_offline(ws):  # noqa: F811
    alice, bob, carol = await trio()
    bob_socket = await ws.login(bob)
    await subscribe(bob_socket, alice)
    now = await receive(bob_socket)
    assert now == {"type": "presence", "user_id": str(alice.pk), "online": False, "last_seen_at": None}
    alice_socket = await ws.login(alice)
    assert await receive(bob_socket) == {**now, "online": True}
    await alice_socket.disconnect()
    offline = await receive(bob_socket, timeout=GRACE + TIMEOUT)
    seen = await db(lambda: User.objects.get(pk=alice.pk).last_seen_at)()
    assert offline["online"] is False and seen is not None
    assert offline["last_seen_at"] == seen.isoformat().replace("+00:00", "Z")
    await assert_silent(bob_socket)


async def test_a_stranger_learns_nothing_even_when_subscribed(ws):  # noqa: F811
    alice, bob, carol = await trio()
    carol_socket = await ws.login(carol)
    await subscribe(carol_socket, alice)
    await ws.login(alice)
    await assert_silent(carol_socket, timeout=0.5)  # no presence now, no change later


async def test_a_reload_within_the_grace_period_announces_nothing(ws):  # noqa: F811
    alice, bob, _ = await trio()
    alice_socket = await ws.login(alice)
    bob_socket = await ws.login(bob)
    await subscribe(bob_socket, alice)
    assert (await receive(bob_socket))["online"] is True
    await alice_socket.disconnect()
    await ws.login(alice)  # back before the grace period ends
    await assert_silent(bob_socket, timeout=GRACE + 0.3)


async def test_two_sockets_of_one_person_are_one_online_event(ws):  # noqa: F811
    alice, bob, _ = await trio()
    bob_socket = await ws.login(bob)
    await subscribe(bob_socket, alice)
    await receive(bob_socket)  # offline now
    await ws.login(alice)
    await ws.login(alice)
    assert (await receive(bob_socket))["online"] is True
    await assert_silent(bob_socket)


async def test_hiding_presence_shows_offline_and_then_nothing(ws, client_for):  # noqa: F811
    alice, bob, _ = await trio()
    await ws.login(alice)
    bob_socket = await ws.login(bob)
    await subscribe(bob_socket, alice)
    assert (await receive(bob_socket))["online"] is True
    response = await db(lambda: client_for(alice).patch("/api/users/me/", {"presence_visible": False}, format="json"))()
    assert response.status_code == 200 and response.json()["presence_visible"] is False
    hidden = await receive(bob_socket)
    assert (hidden["online"], hidden["last_seen_at"]) == (False, None)
    await ws.login(alice)
    await assert_silent(bob_socket)
    answer = await db(lambda: client_for(bob).get(f"/api/presence/?user_id={alice.pk}").json())()
    assert answer == []


async def test_rest_presence_only_for_people_you_share_a_conversation_with(ws, client_for):  # noqa: F811
    alice, bob, carol = await trio()
    await ws.login(alice)
    query = f"/api/presence/?user_id={alice.pk}&user_id={carol.pk}&user_id={bob.pk}"
    answer = await db(lambda: client_for(bob).get(query).json())()
    assert [(p["user_id"], p["online"]) for p in answer] == [(str(alice.pk), True), (str(bob.pk), False)]
    stranger = await db(lambda: client_for(carol).get(f"/api/presence/?user_id={alice.pk}").json())()
    assert stranger == []


async def test_presence_state_is_shared_through_redis(live_redis, ws):  # noqa: F811
    """Online is read from the socket slots in Redis: what any process holds, not this one's memory."""
    alice, bob, _ = await trio()
    bob_socket = await ws.login(bob)
    await subscribe(bob_socket, alice)
    assert (await receive(bob_socket))["online"] is False
    live_redis.client.zadd(f"ws:sockets:{alice.pk.hex}", {"a-socket-of-another-process": 9e12})
    await subscribe(bob_socket, alice)
    assert (await receive(bob_socket))["online"] is True


async def test_bad_subscriptions_are_error_frames(ws):  # noqa: F811
    alice, *_ = await trio()
    socket = await ws.login(alice)
    for bad in ("x", ["not-a-uuid"], [str(alice.pk)] * 101 + ["y"]):
        await socket.send_json_to({"type": "presence.subscribe", "user_ids": bad})
        assert (await receive(socket))["code"] == "invalid"
    await asyncio.sleep(0)
