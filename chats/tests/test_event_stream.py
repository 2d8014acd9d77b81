"""
Each user's event stream (chats/stream.py): every event numbered 1, 2, 3... per user, stored in
the change's transaction, replayed exactly by GET /api/events/?since= and by the socket's
`resume` frame, and filled in by a live socket that sees a gap.
"""
import asyncio
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from chats import delivery, events, services, socket_slots, stream
from chats.models import Event, EventFrame, EventStream
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.test_realtime import (  # noqa: F401 - fixtures
    TIMEOUT,
    assert_silent,
    db,
    fresh_live_delivery,
    receive,
    rest,
    ws,
)
from chats.tests.utils import assert_error

EVENTS = "/api/events/"


def all_events(client, since=0, page_size=100) -> list[dict]:
    """Every page from `since`, following `next`."""
    frames, url = [], f"{EVENTS}?since={since}&page_size={page_size}"
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next", "last_event_id"}
        frames += body["results"]
        url = body["next"]
    return frames


@pytest.fixture
def trio(alice, bob, carol):
    return alice, bob, carol


@pytest.mark.django_db
class TestRest:
    def test_events_are_numbered_from_one_per_user_in_order(self, client_for, trio):
        alice, bob, carol = trio
        conversation = make_conversation(alice, bob)
        for body in ("one", "two", "three"):
            send(conversation, alice, body)
        frames = all_events(client_for(bob))
        assert [f["event_id"] for f in frames] == list(range(1, len(frames) + 1))
        assert [f["message"]["message_body"] for f in frames if f["type"] == "message.created"][-3:] == [
            "one", "two", "three"]
        assert all_events(client_for(carol)) == []  # nothing of a conversation she is not in

    def test_without_since_only_the_position(self, client_for, trio):
        alice, bob, _ = trio
        send(make_conversation(alice, bob), alice, "hi")
        body = client_for(bob).get(EVENTS).json()
        assert body["results"] == [] and body["next"] is None
        assert body["last_event_id"] == EventStream.objects.get(user=bob).last_event_id > 0

    def test_pages_follow_next_to_the_end(self, client_for, trio):
        alice, bob, _ = trio
        conversation = make_conversation(alice, bob)
        for i in range(7):
            send(conversation, alice, f"m{i}")
        assert all_events(client_for(bob), page_size=2) == all_events(client_for(bob))
        first = client_for(bob).get(f"{EVENTS}?since=0&page_size=2").json()
        assert len(first["results"]) == 2 and "since=2" in first["next"]

    def test_since_the_position_is_empty_and_ahead_of_it_is_400(self, client_for, trio):
        alice, bob, _ = trio
        send(make_conversation(alice, bob), alice, "hi")
        now_at = client_for(bob).get(EVENTS).json()["last_event_id"]
        body = client_for(bob).get(f"{EVENTS}?since={now_at}").json()
        assert body == {"results": [], "next": None, "last_event_id": now_at}
        assert_error(client_for(bob).get(f"{EVENTS}?since={now_at + 1}"), 400, code="cursor_ahead", attr="since")
        assert_error(client_for(bob).get(f"{EVENTS}?since=-1"), 400, attr="since")
        assert_error(client_for(bob).get(f"{EVENTS}?since=abc"), 400, attr="since")

    def test_a_pruned_cursor_is_410_cursor_expired(self, client_for, trio):
        alice, bob, _ = trio
        conversation = make_conversation(alice, bob)
        send(conversation, alice, "old")
        assert stream.prune(days=-1) > 0  # everything is older than tomorrow
        send(conversation, alice, "new")
        assert_error(client_for(bob).get(f"{EVENTS}?since=0"), 410, code="cursor_expired")
        now_at = client_for(bob).get(EVENTS).json()["last_event_id"]
        assert [f["event_id"] for f in all_events(client_for(bob), since=now_at - 1)] == [now_at]

    def test_someone_removed_gets_the_removal_and_nothing_after(self, client_for, trio):
        alice, bob, carol = trio
        group = make_conversation(alice, bob, carol)
        send(group, alice, "before")
        services.conversation_remove_participant(conversation=group, actor=alice, user_id=carol.pk)
        send(group, alice, "after")
        frames = all_events(client_for(carol))
        assert frames[-1] == {"type": "conversation.removed", "conversation_id": str(group.pk),
                              "event_id": frames[-1]["event_id"]}
        assert "after" not in str(frames)

    def test_a_rolled_back_change_leaves_no_event_and_its_numbers_are_reused(self, trio):
        alice, bob, _ = trio
        conversation = make_conversation(alice, bob)
        before = EventStream.objects.get(user=bob).last_event_id

        @events.atomic
        def send_then_fail():
            services.message_send(conversation=conversation, sender=alice, message_body="rolled back")
            raise RuntimeError

        with pytest.raises(RuntimeError):
            send_then_fail()
        assert EventStream.objects.get(user=bob).last_event_id == before
        assert not Event.objects.filter(user=bob, event_id__gt=before).exists()
        send(conversation, alice, "kept")
        assert Event.objects.get(user=bob, event_id=before + 1).frame["message"]["message_body"] == "kept"

    def test_events_of_one_service_are_recorded_together_in_call_order(self, trio):
        alice, bob, carol = trio
        group = make_conversation(alice, bob, carol)
        services.conversation_remove_participant(conversation=group, actor=alice, user_id=carol.pk)
        kinds = [frame["type"] for frame in stream.after(carol.pk, 0, 100)]
        assert kinds[-1] == "conversation.removed"
        bob_last = Event.objects.filter(user=bob).order_by("event_id").last().frame
        assert bob_last["type"] == "conversation.updated"

    def test_a_frame_sent_to_many_is_stored_once_with_each_recipients_own_number(self, trio):
        alice, bob, carol = trio
        group = make_conversation(alice, bob, carol)
        with_carol = make_conversation(alice, carol)
        send(with_carol, alice, "carol's stream moves on")  # so theirs stand at different positions
        before = {user.pk: stream.position(user.pk) for user in trio}
        frames_before = EventFrame.objects.count()
        send(group, alice, "to all three")
        assert EventFrame.objects.count() == frames_before + 1
        for user in trio:
            (frame,) = stream.after(user.pk, before[user.pk], 10)
            assert frame["event_id"] == before[user.pk] + 1 and frame["message"]["message_body"] == "to all three"
            assert Event.objects.get(user=user, event_id=frame["event_id"]).frame == frame
        assert len({before[bob.pk], before[carol.pk]}) == 2

    def test_the_prune_events_command(self, trio):
        alice, bob, _ = trio
        send(make_conversation(alice, bob), alice, "hi")
        out = StringIO()
        call_command("prune_events", stdout=out)
        assert out.getvalue() == "Deleted 0 events older than 7 days.\n"
        total = Event.objects.count()
        call_command("prune_events", "--days", "0", stdout=out)
        assert f"Deleted {total} events older than 0 days." in out.getvalue() and not Event.objects.exists()
        assert not EventFrame.objects.exists()  # the frames they shared went with them
        with pytest.raises(CommandError):
            call_command("prune_events", "--days", "-1")

    def test_prune_keeps_what_is_within_the_retention(self, trio):
        alice, bob, _ = trio
        send(make_conversation(alice, bob), alice, "recent")
        count, frames = Event.objects.count(), EventFrame.objects.count()
        assert stream.prune() == 0 and Event.objects.count() == count and EventFrame.objects.count() == frames


# --- the socket ---------------------------------------------------------------------


@db
def make_pair():
    alice, bob = UserFactory(first_name="Alice"), UserFactory(first_name="Bob")
    return alice, bob, make_conversation(alice, bob)


@db
def position(user) -> int:
    return stream.position(user.pk)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_resume_replays_what_was_missed_then_goes_on_live(ws):  # noqa: F811
    alice, bob, conversation = await make_pair()
    seen = await position(bob)
    for i in range(3):  # while bob is away
        await db(send)(conversation, alice, f"missed {i}")
    socket = await ws.login(bob, live=False)
    await socket.send_json_to({"type": "resume", "since": seen})
    replayed = [await receive(socket) for _ in range(3)]
    assert [f["event_id"] for f in replayed] == [seen + 1, seen + 2, seen + 3]
    assert [f["message"]["message_body"] for f in replayed] == ["missed 0", "missed 1", "missed 2"]
    assert await receive(socket) == {"type": "resumed", "last_event_id": seen + 3}
    await db(send)(conversation, alice, "live")
    live = await receive(socket)
    assert live["event_id"] == seen + 4 and live["message"]["message_body"] == "live"
    await assert_silent(socket)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_resume_while_events_are_produced_has_no_gap_and_no_duplicate(ws):  # noqa: F811
    alice, bob, conversation = await make_pair()
    seen = await position(bob)
    for i in range(5):
        await db(send)(conversation, alice, f"before {i}")
    socket = await ws.login(bob, live=False)

    async def keep_sending():
        for i in range(10):
            await db(send)(conversation, alice, f"during {i}")

    sender = asyncio.create_task(keep_sending())
    await socket.send_json_to({"type": "resume", "since": seen})
    await sender
    ids = []
    while len(ids) < 15:
        frame = await receive(socket)
        if frame["type"] != "resumed":
            ids.append(frame["event_id"])
    assert ids == list(range(seen + 1, seen + 16))
    await assert_silent(socket)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_live_socket_fills_a_gap_from_the_stream(ws):  # noqa: F811
    """An event live delivery never brought: the next one that arrives brings it along."""
    alice, bob, conversation = await make_pair()
    socket = await ws.login(bob)
    start = await position(bob)
    delivered = []
    original = events.deliver
    events.deliver = lambda numbered: delivered.append(numbered)  # live delivery loses this one
    try:
        await db(send)(conversation, alice, "lost live")
    finally:
        events.deliver = original
    assert delivered
    await db(send)(conversation, alice, "delivered")
    first, second = await receive(socket), await receive(socket)
    assert (first["event_id"], first["message"]["message_body"]) == (start + 1, "lost live")
    assert (second["event_id"], second["message"]["message_body"]) == (start + 2, "delivered")
    # A late duplicate of an event already sent is dropped.
    delivery.dispatch(delivery.batches([(first, {bob.pk: first["event_id"]})]))
    await assert_silent(socket)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_resume_errors_are_frames(ws):  # noqa: F811
    alice, bob, conversation = await make_pair()
    await db(send)(conversation, alice, "x")
    socket = await ws.login(bob)
    now_at = await position(bob)
    await socket.send_json_to({"type": "resume", "since": now_at + 5})
    assert (await receive(socket))["code"] == "cursor_ahead"
    await socket.send_json_to({"type": "resume", "since": "1"})
    assert (await receive(socket))["code"] == "invalid"
    await db(stream.prune)(days=-1)
    await socket.send_json_to({"type": "resume", "since": 0})
    expired = await receive(socket)
    assert expired == {"type": "error", "code": "cursor_expired", "detail": expired["detail"], "last_event_id": now_at}
    await db(send)(conversation, alice, "after expiry")  # live delivery goes on from the position
    assert (await receive(socket, TIMEOUT))["event_id"] == now_at + 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_lost_last_event_still_arrives_at_the_next_stream_check(ws, monkeypatch):  # noqa: F811
    """No later event reveals the gap: the socket's periodic stream check sends it."""
    monkeypatch.setattr(socket_slots, "RENEW_SECONDS", 0.2)
    alice, bob, conversation = await make_pair()
    socket = await ws.login(bob)
    start = await position(bob)
    monkeypatch.setattr(events, "deliver", lambda numbered: None)  # live delivery loses everything
    await db(send)(conversation, alice, "only in the stream")
    frame = await receive(socket, timeout=2)
    assert (frame["event_id"], frame["message"]["message_body"]) == (start + 1, "only in the stream")
    await assert_silent(socket, timeout=0.5)  # and only once


@pytest.mark.django_db
def test_every_new_user_has_a_stream_row_from_the_start(alice):
    """Made with the user (post_save), so the first events never create one under load."""
    assert EventStream.objects.get(user=alice).last_event_id == 0


@pytest.mark.django_db
def test_a_nested_service_that_fails_inside_another_leaves_no_event(alice, bob):
    """Its savepoint rolls back, and so do the events it had emitted; the outer service's stay."""
    conversation = make_conversation(alice, bob)
    before = EventStream.objects.get(user=bob).last_event_id

    @events.atomic
    def send_then_a_failing_send():
        services.message_send(conversation=conversation, sender=alice, message_body="kept")
        try:
            with_a_failure()
        except RuntimeError:
            pass

    @events.atomic
    def with_a_failure():
        services.message_send(conversation=conversation, sender=alice, message_body="rolled back")
        raise RuntimeError

    send_then_a_failing_send()
    bodies = [f["message"]["message_body"] for f in
              stream.after(bob.pk, before, 1000)]
    assert bodies == ["kept"]


@pytest.mark.django_db(transaction=True)
def test_migration_0009_moves_each_stored_frame_to_a_shared_row_and_back():
    """Events recorded before frames were shared keep exactly their frames, both ways."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("chats", "0008_merge_0007_presence_0007_reactions_pins")]
    after_ = [("chats", "0009_event_frames_shared")]
    alice, bob = UserFactory(), UserFactory()
    send(make_conversation(alice, bob), alice, "recorded before")
    expected = {user.pk: stream.after(user.pk, 0, 100) for user in (alice, bob)}
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    executor.loader.build_graph()
    old_event = executor.loader.project_state(before[0]).apps.get_model("chats", "Event")
    stored = old_event.objects.filter(user_id=bob.pk).order_by("event_id").values_list("frame", flat=True)
    assert list(stored) == expected[bob.pk]
    MigrationExecutor(connection).migrate(after_)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # and the rest, as the other tests need them
    assert {user.pk: stream.after(user.pk, 0, 100) for user in (alice, bob)} == expected
    assert EventFrame.objects.count() == Event.objects.count()  # one each: they were stored apart
