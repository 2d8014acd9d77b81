"""
The event outbox (chats/outbox.py): a change whose events go to more than
EVENTS_INLINE_RECIPIENTS people queues them as one row per conversation, and a drain numbers
them into every recipient's stream after the commit. What must hold: each event in each stream
exactly once, ids 1, 2, 3... with no gap, every conversation's events in the order its changes
committed (queued or inline), rows left by a stopped process drained by the sweeper, concurrent
drains numbering each event once, and live sockets receiving queued events with their event_id.

The threshold is lowered here (2 or 3 people) so small groups exercise the outbox; a few tests
use 0 (everything queued). Runs on every database (SQLite, MariaDB, PostgreSQL).
"""
import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chats import events, outbox, services, services_membership, services_reactions, stream
from chats.models import EventOutbox, EventStream
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.test_concurrency import run_concurrently
from chats.tests.test_realtime import (  # noqa: F401 - fixtures
    TIMEOUT,
    assert_silent,
    db,
    fresh_live_delivery,
    receive,
    ws,
)


def positions(people) -> dict:
    return dict(EventStream.objects.filter(user__in=people).values_list("user_id", "last_event_id"))


def stream_of(user, since: int = 0) -> list[dict]:
    return stream.after(user.pk, since, 10_000)


def labels(frames: list[dict]) -> list[tuple]:
    """What each event says, compactly: (type, the message body or emoji where there is one)."""
    out = []
    for frame in frames:
        detail = frame.get("message", {}).get("message_body") if "message" in frame else frame.get("emoji")
        out.append((frame["type"], detail))
    return out


def assert_exact(frames: list[dict], since: int) -> None:
    """Numbered since+1, since+2... with no gap and no duplicate."""
    assert [f["event_id"] for f in frames] == list(range(since + 1, since + 1 + len(frames)))


@pytest.fixture
def few_inline(settings):
    """Events to more than 2 people are queued."""
    settings.EVENTS_INLINE_RECIPIENTS = 2
    return settings


@pytest.fixture
def group(few_inline, django_capture_on_commit_callbacks):
    """Five people in one conversation (its creation already queued and drained)."""
    people = UserFactory.create_batch(5)
    with django_capture_on_commit_callbacks(execute=True):
        conversation = make_conversation(*people)
    assert not EventOutbox.objects.exists()
    return people, conversation


@pytest.mark.django_db
class TestQueued:
    def test_a_send_to_a_group_is_queued_then_in_every_stream_once(self, group, django_capture_on_commit_callbacks):
        people, conversation = group
        before = positions(people)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            message = send(conversation, people[0], "to the group")
            # Queued in the change's transaction: one row, no stream touched yet.
            (row,) = EventOutbox.objects.all()
            assert row.key == conversation.pk
            assert [sorted(hexes) for _frame, hexes in row.runs] == [sorted(p.pk.hex for p in people)]
            assert row.runs[0][0]["type"] == "message.created"
            assert positions(people) == before
        assert callbacks  # the drain ran after the commit
        assert not EventOutbox.objects.exists()
        for person in people:
            (frame,) = stream_of(person, before[person.pk])
            assert frame["event_id"] == before[person.pk] + 1
            assert (frame["type"], frame["message"]["message_id"]) == ("message.created", str(message.pk))

    def test_queueing_is_one_insert_whatever_the_group_size(self, few_inline, django_capture_on_commit_callbacks):
        counts = []
        for size in (3, 40):
            people = UserFactory.create_batch(size)
            with django_capture_on_commit_callbacks(execute=True):
                conversation = make_conversation(*people)
            with CaptureQueriesContext(connection) as queries:
                send(conversation, people[0], "hi")  # its drain would run after a commit: not here
            sqls = [q["sql"] for q in queries.captured_queries]
            outbox_writes = [sql for sql in sqls if "chats_eventoutbox" in sql]
            assert len(outbox_writes) == 1 and outbox_writes[0].startswith("INSERT")
            assert not any("chats_eventstream" in sql or "chats_eventframe" in sql for sql in sqls)
            counts.append(len(sqls))
        assert counts[0] == counts[1]

    def test_a_large_group_s_participants_are_written_into_the_row_by_the_database(
        self, group, django_capture_on_commit_callbacks
    ):
        """No read of the participants' ids into Python: one INSERT ... SELECT (outbox.Participants)."""
        people, conversation = group
        before = positions(people)
        with django_capture_on_commit_callbacks(execute=True):
            with CaptureQueriesContext(connection) as queries:
                message = send(conversation, people[1], "to all of you")
                (row,) = EventOutbox.objects.all()
                assert [sorted(hexes) for _frame, hexes in row.runs] == [sorted(p.pk.hex for p in people)]
            sqls = [q["sql"] for q in queries.captured_queries]
            (insert,) = [sql for sql in sqls if sql.startswith("INSERT") and "chats_eventoutbox" in sql]
            assert "SELECT" in insert and "chats_conversationmembership" in insert
            member_reads = [sql for sql in sqls if sql.startswith("SELECT") and "chats_conversationmembership" in sql
                            and "chats_eventoutbox" not in sql]
            assert member_reads == [], member_reads
            services.message_edit(message=message, actor=people[1], message_body="edited, to all of you")
        for person in people:
            assert labels(stream_of(person, before[person.pk])) == [
                ("message.created", "to all of you"), ("message.updated", "edited, to all of you")]

    def test_a_burst_of_changes_ends_in_commit_order_in_every_stream(self, group, django_capture_on_commit_callbacks):
        """Sends, an edit, reactions, a delete, a read and a member's own settings: none drained
        until the end (a slow drainer); the inline-sized ones queue behind the others."""
        people, conversation = group
        alice, bob, carol = people[:3]
        before = positions(people)
        with django_capture_on_commit_callbacks(execute=False):
            first = send(conversation, alice, "one")
            services.message_edit(message=first, actor=alice, message_body="one, edited")
            services_reactions.reaction_add(message=first, user=bob, emoji="\N{THUMBS UP SIGN}")
            send(conversation, bob, "two")
            services_membership.membership_update(conversation=conversation, user=carol, muted=True)  # 1 person
            services.message_delete(message=first, actor=alice)
            services.conversation_mark_read(conversation=conversation, user=carol)
            send(conversation, carol, "three")
        assert positions(people) == before  # everything waits in the outbox
        assert EventOutbox.objects.filter(key=conversation.pk).count() == 8
        assert outbox.sweep(older_than=0) > 0
        assert not EventOutbox.objects.exists()
        shared = [
            ("message.created", "one"), ("message.updated", "one, edited"), ("reaction.added", "\N{THUMBS UP SIGN}"),
            ("message.created", "two"), ("message.deleted", ""),
        ]
        for person in people:
            frames = stream_of(person, before[person.pk])
            assert_exact(frames, before[person.pk])
            expected = list(shared)
            if person == carol:
                expected.insert(4, ("membership.updated", None))
                expected.append(("conversation.read", None))
            else:
                expected.append(("read_marker.moved", None))
            expected.append(("message.created", "three"))
            assert labels(frames) == expected, person

    def test_inline_events_keep_their_place_among_queued_ones(self, group, django_capture_on_commit_callbacks):
        people, conversation = group
        carol = people[2]
        start = positions([carol])[carol.pk]
        with django_capture_on_commit_callbacks(execute=False):
            send(conversation, people[0], "queued")
            # One recipient, so inline-sized; but its conversation has events queued: behind them.
            services_membership.membership_update(conversation=conversation, user=carol, archived=True)
        assert positions([carol])[carol.pk] == start
        assert EventOutbox.objects.count() == 2
        outbox.drain(conversation.pk)
        assert labels(stream_of(carol, start)) == [("message.created", "queued"), ("membership.updated", None)]
        # Nothing queued any more: the next one-person event is numbered in its own transaction.
        services_membership.membership_update(conversation=conversation, user=carol, archived=False)
        assert not EventOutbox.objects.exists()
        frames = stream_of(carol, start)
        assert_exact(frames, start)
        assert labels(frames)[-1] == ("membership.updated", None) and len(frames) == 3

    def test_a_queued_conversation_holds_back_only_itself(self, group, django_capture_on_commit_callbacks):
        """Another conversation's inline events go ahead: the order holds per conversation."""
        people, conversation = group
        pair = make_conversation(people[0], people[1])
        start = positions([people[1]])[people[1].pk]
        with django_capture_on_commit_callbacks(execute=False):
            send(conversation, people[0], "queued in the group")
            send(pair, people[0], "inline in the pair")
        assert labels(stream_of(people[1], start)) == [("message.created", "inline in the pair")]
        outbox.drain(conversation.pk)
        assert labels(stream_of(people[1], start)) == [
            ("message.created", "inline in the pair"), ("message.created", "queued in the group")]

    def test_a_deleted_group_still_tells_everyone(self, group, django_capture_on_commit_callbacks):
        people, conversation = group
        before = positions(people)
        with django_capture_on_commit_callbacks(execute=True):
            services.conversation_delete(conversation=conversation)
        for person in people:
            assert labels(stream_of(person, before[person.pk])) == [("conversation.removed", None)]

    def test_frames_of_several_conversations_queue_one_row_each_in_one_insert(self, few_inline):
        one, two = UserFactory.create_batch(2)
        frames = [(one.pk, {"type": "a", "conversation_id": "6d9ed5c4-6ea3-418c-a254-67644fe42aca"}),
                  (two.pk, {"type": "b", "conversation_id": "0b5a3d7e-0000-4000-8000-000000000001"}),
                  (two.pk, {"type": "c"})]  # no conversation: keyed by its recipient
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            keys = outbox.defer(frames)
        assert len(queries.captured_queries) == 1
        assert [str(key) for key in keys[:2]] == [f[1]["conversation_id"] for f in frames[:2]] and keys[2] == two.pk
        assert {row.key: row.runs for row in EventOutbox.objects.all()} == {
            keys[0]: [[frames[0][1], [one.pk.hex]]], keys[1]: [[frames[1][1], [two.pk.hex]]],
            keys[2]: [[frames[2][1], [two.pk.hex]]],
        }


@pytest.mark.django_db
def test_rows_left_by_a_stopped_process_are_drained_by_the_sweeper(group, django_capture_on_commit_callbacks):
    people, conversation = group
    before = positions(people)
    with django_capture_on_commit_callbacks(execute=False):  # committed, then the process "died"
        send(conversation, people[0], "left behind")
    assert outbox.sweep() == 0  # younger than EVENTS_OUTBOX_SWEEP_SECONDS: its own process drains it
    EventOutbox.objects.update(created_at=timezone.now() - timedelta(seconds=60))
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.sweep() == len(people)
    assert outbox.sweep() == 0
    for person in people:
        assert labels(stream_of(person, before[person.pk])) == [("message.created", "left behind")]


@pytest.mark.django_db
def test_drain_events_command_drains_what_is_queued(group, django_capture_on_commit_callbacks):
    people, conversation = group
    with django_capture_on_commit_callbacks(execute=False):
        send(conversation, people[0], "a")
        send(conversation, people[0], "b")
    out = StringIO()
    call_command("drain_events", stdout=out)
    assert out.getvalue().strip() == f"Numbered {2 * len(people)} queued events."
    assert not EventOutbox.objects.exists()


# --- real concurrency: threads, each on its own connection ----------------------------------
@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_of_one_conversation_number_each_event_once(settings, monkeypatch):
    settings.EVENTS_INLINE_RECIPIENTS = 0  # everything queued
    people = UserFactory.create_batch(4)
    conversation = make_conversation(*people)  # drained now (no drainer thread): a clean start
    before = positions(people)
    monkeypatch.setattr(outbox, "schedule", lambda keys: None)  # nobody drains: rows pile up
    for i in range(10):
        send(conversation, people[i % 4], f"m{i}")
    monkeypatch.undo()
    assert EventOutbox.objects.count() == 10
    numbered = run_concurrently([lambda: outbox.drain(conversation.pk) for _ in range(4)])
    assert sum(numbered) == 10 * len(people) and sorted(numbered)[:3] == [0, 0, 0]
    for person in people:
        frames = stream_of(person, before[person.pk])
        assert_exact(frames, before[person.pk])
        assert labels(frames) == [("message.created", f"m{i}") for i in range(10)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_and_drains_keep_every_stream_in_commit_order(settings):
    """Large and small conversations sharing people, sends from threads while drains run."""
    settings.EVENTS_INLINE_RECIPIENTS = 3
    people = UserFactory.create_batch(6)
    big = make_conversation(*people)  # 6 people: queued
    small = make_conversation(*people[:2])  # 2 people: inline
    before = positions(people)

    def sends(conversation, sender, tag):
        return lambda: [send(conversation, sender, f"{tag}{i}") for i in range(6)]

    def drains():
        for _ in range(20):
            outbox.sweep(older_than=0)
            time.sleep(0.005)

    run_concurrently([sends(big, people[0], "a"), sends(big, people[3], "b"), sends(small, people[1], "s"), drains])
    outbox.sweep(older_than=0)
    assert not EventOutbox.objects.exists()
    # Commit order of each conversation's sends: sent_at (strictly increasing under its lock).
    in_order = {c.pk: [m.message_body for m in c.messages.order_by("sent_at")] for c in (big, small)}
    for person in people:
        frames = stream_of(person, before[person.pk])
        assert_exact(frames, before[person.pk])
        for conversation in (big, small):
            bodies = [f["message"]["message_body"] for f in frames if f["conversation_id"] == str(conversation.pk)]
            assert bodies == (in_order[conversation.pk] if person in people[:2] or conversation == big else [])


@pytest.mark.django_db(transaction=True)
def test_the_inline_check_takes_no_outbox_lock(settings, monkeypatch):
    """
    A change numbered inline reads the outbox without locking it, so a drain is never stuck
    behind it (PostgreSQL, MariaDB: the drain goes ahead while the change is still open). SQLite
    has no row locks: its writers take turns, and the drain goes once the change commits.
    """
    settings.EVENTS_INLINE_RECIPIENTS = 0
    queued_to, checker = UserFactory.create_batch(2)
    monkeypatch.setattr(outbox, "schedule", lambda keys: None)
    conversation = make_conversation(*UserFactory.create_batch(2), queued_to)
    monkeypatch.undo()
    checked, release, drained = threading.Event(), threading.Event(), threading.Event()
    answers = []

    def check():
        with transaction.atomic():
            answers.append(stream.record([(checker.pk, {"type": "x"})], unless_queued=[conversation.pk]))
            checked.set()
            release.wait(TIMEOUT)
            answers.append(drained.is_set())

    def drain():
        checked.wait(TIMEOUT)
        outbox.drain(conversation.pk)
        drained.set()
        release.set()

    row_locks = connection.features.has_select_for_update
    run_concurrently([check, drain])
    assert answers[0] is None  # the conversation had events queued: nothing numbered
    assert answers[1] is row_locks  # drained while the change was open, where rows lock one by one
    assert not EventOutbox.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_drain_does_not_wait_for_a_change_still_open(settings, monkeypatch):
    """
    A change that queued a row and goes on (locking streams, say) while a drain of the same
    conversation runs: the drain numbers the committed rows without waiting for the open one,
    which its own drain numbers after its commit (PostgreSQL, MariaDB; SQLite's writers take turns).
    """
    settings.EVENTS_INLINE_RECIPIENTS = 0
    people = UserFactory.create_batch(3)
    monkeypatch.setattr(outbox, "schedule", lambda keys: None)
    conversation = make_conversation(*people)  # a committed row
    queued, release, drained = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def change():
        with transaction.atomic():
            outbox.defer([(person.pk, {"type": "x", "conversation_id": str(conversation.pk)}) for person in people])
            queued.set()
            release.wait(TIMEOUT)
            seen["drained while open"] = drained.is_set()

    def drain():
        queued.wait(TIMEOUT)
        seen["numbered"] = outbox.drain(conversation.pk)
        drained.set()
        release.set()

    run_concurrently([change, drain])
    if connection.features.has_select_for_update:  # the drain went first, with the committed row only
        assert seen == {"drained while open": True, "numbered": len(people)}
    else:  # SQLite: after the change committed, both rows
        assert seen == {"drained while open": False, "numbered": 2 * len(people)}
    monkeypatch.undo()
    outbox.drain(conversation.pk)
    assert not EventOutbox.objects.exists()
    for person in people:
        assert [f["type"] for f in stream_of(person)] == ["conversation.created", "x"]


# --- the drainer thread and live sockets ----------------------------------------------------
@pytest.fixture
def drainer_thread(settings):
    settings.EVENTS_OUTBOX_SWEEP_SECONDS = 0.2
    drainer = outbox.start_drainer()
    yield drainer
    outbox.stop_drainer()
    assert not drainer.is_alive()


def wait_for(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)
def test_a_server_drains_on_its_own_thread_and_sweeps(settings, drainer_thread, monkeypatch, caplog):
    settings.EVENTS_INLINE_RECIPIENTS = 2
    people = UserFactory.create_batch(4)
    conversation = make_conversation(*people)
    wait_for(lambda: not EventOutbox.objects.exists())
    before = positions(people)
    request_thread = threading.get_ident()
    drained_on = []
    real_drain = outbox.drain
    monkeypatch.setattr(outbox, "drain", lambda key: drained_on.append(threading.get_ident()) or real_drain(key))
    send(conversation, people[0], "handed to the drainer")
    wait_for(lambda: positions(people) != before)
    assert drained_on and request_thread not in drained_on
    # A row whose process never handed it over: the thread's sweep finds it, and says so.
    monkeypatch.setattr(outbox, "schedule", lambda keys: None)
    with caplog.at_level(logging.WARNING, logger="chats.outbox"):
        send(conversation, people[1], "never handed over")
        assert EventOutbox.objects.count() == 1
        wait_for(lambda: "left queued" in caplog.text)
    assert f"numbered {len(people)} events left queued" in caplog.text
    assert not EventOutbox.objects.exists()
    for person in people:
        assert labels(stream_of(person, before[person.pk])) == [
            ("message.created", "handed to the drainer"), ("message.created", "never handed over")]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("on_a_thread", [False, True])
async def test_queued_events_reach_live_sockets_with_their_event_ids(ws, settings, on_a_thread):  # noqa: F811
    settings.EVENTS_INLINE_RECIPIENTS = 2
    settings.EVENTS_OUTBOX_SWEEP_SECONDS = 0.2
    people = await db(UserFactory.create_batch)(4)
    conversation = await db(make_conversation)(*people)
    sockets = [await ws.login(person) for person in people]
    if on_a_thread:
        outbox.start_drainer()
    try:
        for body in ("first", "second"):
            await db(send)(conversation, people[0], body)
        for person, socket in zip(people, sockets):
            frames = [await receive(socket), await receive(socket)]
            assert [f["message"]["message_body"] for f in frames] == ["first", "second"]
            position = await db(stream.position)(person.pk)
            assert [f["event_id"] for f in frames] == [position - 1, position]
        await assert_silent(*sockets)
    finally:
        await asyncio.to_thread(outbox.stop_drainer)
    assert not await db(EventOutbox.objects.exists)()


@pytest.mark.django_db
def test_announce_is_what_inline_recording_and_drains_share(group, django_capture_on_commit_callbacks, monkeypatch):
    """Webhooks hang on events_committed: sent once per drain, with every recipient."""
    people, conversation = group
    received = []

    def listener(sender, recipients, **kwargs):
        received.append(recipients)

    events.events_committed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, people[0], "hi")
    finally:
        events.events_committed.disconnect(listener)
    assert received == [{p.pk for p in people}]


@pytest.mark.parametrize("url, refused", [
    ("mysql://root@127.0.0.1:3306/x?isolation_level=repeatable%20read", True),
    ("mysql://root@127.0.0.1:3306/x?isolation_level=read%20committed", False),
    ("mysql://root@127.0.0.1:3306/x", False),
])
def test_settings_refuse_an_isolation_level_the_outbox_order_check_cannot_trust(url, refused):
    """Its check reads the latest committed rows: READ COMMITTED only."""
    env = {**os.environ, "DJANGO_DEBUG": "1", "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "messaging_app.settings"}
    code = "from django.conf import settings; settings.DATABASES"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode != 0) is refused, result.stderr
    assert ("must stay READ COMMITTED" in result.stderr) is refused


def test_the_worker_hook_starts_no_drainer_for_an_app_that_is_not_ours():
    """
    gunicorn.conf.py also serves the benchmark's reference floors (a raw ASGI app, a bare Django
    project): its post_worker_init hook must leave them alone instead of failing their workers' boot.
    """
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    code = ("import gc, runpy; runpy.run_path('gunicorn.conf.py')['post_worker_init'](None); "
            "print('booted', gc.get_freeze_count())")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "booted" in result.stdout, result.stderr
    # What the worker loaded is frozen out of the collector's full collections, floors included.
    assert int(result.stdout.split()[-1]) > 1000


def test_a_request_hands_its_keys_to_the_drainer_once_its_response_is_complete(monkeypatch):
    """Numbering a large fan-out would share the process's CPU with the rest of the request."""
    from django.core.signals import request_finished, request_started

    handed = []
    drainer = outbox.Drainer()  # not started: only what it is given is looked at
    monkeypatch.setattr(drainer, "is_alive", lambda: True)
    monkeypatch.setattr(drainer, "put", lambda keys: handed.append(list(keys)))
    monkeypatch.setattr(outbox, "_drainer", drainer)
    request_started.connect(outbox._hold, dispatch_uid="test.hold")
    request_finished.connect(outbox._hand_over, dispatch_uid="test.hand_over")
    try:
        first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        request_started.send(sender=None)
        outbox.schedule([first])
        outbox.schedule([second])
        assert handed == []  # the response is not complete yet
        request_finished.send(sender=None)
        assert handed == [[first, second]]
        outbox.schedule([third])  # outside a request (a Celery task, the admin's shell): at once
        assert handed == [[first, second], [third]]
        # A request of this thread that never finished: the next one hands its keys over first.
        request_started.send(sender=None)
        outbox.schedule([first])
        request_started.send(sender=None)
        assert handed[-1] == [first]
        request_finished.send(sender=None)
        assert len(handed) == 3  # nothing more was held
    finally:
        request_started.disconnect(dispatch_uid="test.hold")
        request_finished.disconnect(dispatch_uid="test.hand_over")
        outbox._request.keys = None


@pytest.mark.django_db(transaction=True)
def test_a_send_through_the_api_is_drained_after_its_response(settings, drainer_thread, client_for):
    settings.EVENTS_INLINE_RECIPIENTS = 2
    people = UserFactory.create_batch(4)
    conversation = make_conversation(*people)
    wait_for(lambda: not EventOutbox.objects.exists())
    before = positions(people)
    response = client_for(people[0]).post(f"/api/conversations/{conversation.pk}/messages/", {"message_body": "hi"})
    assert response.status_code == 201
    wait_for(lambda: all(positions(people)[p.pk] == before[p.pk] + 1 for p in people))
    assert not EventOutbox.objects.exists()
