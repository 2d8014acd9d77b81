"""
Concurrency: real threads, each on its own database connection, released
together by a barrier. Proves the guarantees services.py documents: sends to
one conversation are serialised (exact counters, sent_at strictly increasing in
commit order), retries with one client_id make one message, concurrent creates
of one two-person conversation meet on one row, unread counts stay exact.

Runs on every database; the row locks and unique indexes matter on MariaDB/MySQL
and PostgreSQL (SQLite takes one write lock per transaction: IMMEDIATE mode).
"""
import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection
from rest_framework.test import APIClient

from chats import selectors, services
from chats.models import Conversation, ConversationMembership, Message, User
from chats.tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db(transaction=True)

# Generous: a thread stuck on a lock must fail the test, not hang the suite.
JOIN_TIMEOUT = 60


def run_concurrently(workers: list[Callable[[], object]]) -> list[object]:
    """
    Run each callable in its own thread, all released at once by a barrier.
    Returns their results in order; re-raises the first exception a worker raised.
    """
    barrier = threading.Barrier(len(workers))
    results: list[object] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(index: int, work: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[index] = work()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            errors.append(exc)
        finally:
            # Each thread has its own connection (django.db.connections is thread-local).
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker thread is still running (deadlock?)"
    if errors:
        raise errors[0]
    return results


def fresh(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_concurrent_sends_keep_counters_exact_and_sent_at_in_commit_order():
    """
    8 threads x 5 sends to one conversation: message_count == rows == 40, every
    sent_at distinct, sent_at order agrees with commit order (a send that
    finished before another began has the smaller sent_at, and every snapshot
    a concurrent reader takes is a prefix of the final sent_at order), and
    last_message / last_activity_at are the newest message.
    """
    threads, per_thread = 8, 5
    users = UserFactory.create_batch(threads)
    conversation = make_conversation(*users)
    # (message_id, started, finished) per send; monotonic clock, shared by all threads.
    timings: list[tuple[object, int, int]] = []
    timings_lock = threading.Lock()
    snapshots: list[list] = []
    reader_errors: list[BaseException] = []
    done = threading.Event()

    def sender(user: User) -> Callable[[], None]:
        def work():
            conv = Conversation.objects.get(pk=conversation.pk)
            for i in range(per_thread):
                started = time.monotonic_ns()
                message, created = services.message_send(
                    conversation=conv, sender=user, message_body=f"{user.first_name} #{i}"
                )
                finished = time.monotonic_ns()
                assert created
                with timings_lock:
                    timings.append((message.pk, started, finished))

        return work

    def reader():
        # Each SELECT is one snapshot of committed rows.
        try:
            while not done.is_set():
                visible = Message.objects.filter(conversation=conversation).order_by("sent_at")
                snapshots.append(list(visible.values_list("pk", flat=True)))
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread below
            reader_errors.append(exc)
        finally:
            connection.close()

    reader_thread = threading.Thread(target=reader, daemon=True)
    reader_thread.start()
    try:
        run_concurrently([sender(u) for u in users])
    finally:
        done.set()
        reader_thread.join(JOIN_TIMEOUT)
    assert not reader_thread.is_alive(), "the reader thread is still running"
    if reader_errors:
        raise reader_errors[0]

    total = threads * per_thread
    conv = fresh(conversation)
    rows = list(Message.objects.filter(conversation=conversation).order_by("sent_at"))
    assert conv.message_count == len(rows) == total
    sent = [m.sent_at for m in rows]
    assert all(a < b for a, b in zip(sent, sent[1:])), "sent_at must be strictly increasing"
    assert conv.last_message_id == rows[-1].pk
    assert conv.last_activity_at == rows[-1].sent_at

    # Real-time order implies sent_at order: if A committed before B was even sent, A < B.
    sent_at = {m.pk: m.sent_at for m in rows}
    for a_id, _, a_finished in timings:
        for b_id, b_started, _ in timings:
            if a_finished < b_started:
                assert sent_at[a_id] < sent_at[b_id]
    # Each sender's own messages are in the order it sent them.
    for user in users:
        own = [m.message_body for m in rows if m.sender_id == user.pk]
        assert own == [f"{user.first_name} #{i}" for i in range(per_thread)]
    # No reader ever saw a later message before an earlier one had committed.
    final_order = [m.pk for m in rows]
    assert snapshots, "the reader took no snapshot"
    for snapshot in snapshots:
        assert snapshot == final_order[: len(snapshot)]

    # The API agrees.
    body = api_as(users[0]).get(f"/api/conversations/{conversation.pk}/").json()
    assert body["message_count"] == total
    assert body["last_message"]["message_id"] == str(rows[-1].pk)


def test_concurrent_retries_with_one_client_id_make_exactly_one_message():
    """8 simultaneous sends with the same sender and client_id: one row, one message_id for all."""
    alice, bob = UserFactory.create_batch(2)
    conversation = make_conversation(alice, bob)

    def retry():
        message, created = services.message_send(
            conversation=Conversation.objects.get(pk=conversation.pk),
            sender=alice,
            message_body="exactly once",
            client_id="tap-tap-tap",
        )
        return message.pk, created

    results = run_concurrently([retry] * 8)
    assert len({message_id for message_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Message.objects.filter(sender=alice, client_id="tap-tap-tap").count() == 1
    assert Message.objects.count() == 1
    conv = fresh(conversation)
    assert conv.message_count == 1
    assert conv.last_message_id == results[0][0]


def test_concurrent_retries_through_the_api_make_exactly_one_message():
    """The same, end to end: one 201, the rest 200, all with the same message_id."""
    alice, bob = UserFactory.create_batch(2)
    conversation = make_conversation(alice, bob)
    url = f"/api/conversations/{conversation.pk}/messages/"

    def retry():
        response = api_as(alice).post(url, {"message_body": "once", "client_id": "api-retry"}, format="json")
        return response.status_code, response.json()["message_id"]

    results = run_concurrently([retry] * 8)
    assert sorted(status for status, _ in results) == [200] * 7 + [201]
    assert len({message_id for _, message_id in results}) == 1
    assert Message.objects.count() == 1
    assert fresh(conversation).message_count == 1


def test_concurrent_creates_of_one_pair_meet_on_one_conversation():
    """6 simultaneous creates of the same two-person conversation (by either person): one row, all get it."""
    alice, bob = UserFactory.create_batch(2)

    def create(creator: User, other: User):
        def work():
            conversation, created = services.conversation_create(creator=creator, participant_ids=[other.pk])
            return conversation.pk, created

        return work

    workers = [create(alice, bob) if i % 2 else create(bob, alice) for i in range(6)]
    results = run_concurrently(workers)
    assert Conversation.objects.count() == 1
    (conversation,) = Conversation.objects.all()
    assert {pk for pk, _ in results} == {conversation.pk}
    assert sum(created for _, created in results) == 1
    assert set(ConversationMembership.objects.values_list("user_id", flat=True)) == {alice.pk, bob.pk}
    assert ConversationMembership.objects.count() == 2


def test_concurrent_creates_with_messages_append_every_message_once():
    """Racing creates of one pair that carry messages: one conversation holding all of them, counted exactly."""
    alice, bob = UserFactory.create_batch(2)

    def create(i: int):
        creator, other = (alice, bob) if i % 2 else (bob, alice)

        def work():
            conversation, _ = services.conversation_create(
                creator=creator, participant_ids=[other.pk], message_bodies=[f"hello {i}a", f"hello {i}b"]
            )
            return conversation.pk

        return work

    results = run_concurrently([create(i) for i in range(6)])
    (conversation,) = Conversation.objects.all()
    assert set(results) == {conversation.pk}
    bodies = sorted(Message.objects.values_list("message_body", flat=True))
    assert bodies == sorted(f"hello {i}{x}" for i in range(6) for x in "ab")
    assert conversation.message_count == 12
    assert conversation.last_message_id == Message.objects.order_by("-sent_at").first().pk


def test_unread_counts_are_exact_after_concurrent_sends_from_two_users():
    """
    Alice and Bob each send from several threads at once: each sees exactly the
    other's messages as unread (selectors and API), never their own; then read
    markers bring it to zero and later sends count again.
    """
    alice, bob, carol = (
        UserFactory(first_name="Alice"), UserFactory(first_name="Bob"), UserFactory(first_name="Carol")
    )
    pair = make_conversation(alice, bob)
    group = make_conversation(alice, bob, carol)
    per_thread = 4

    def sender(user: User, conversation: Conversation, tag: str):
        def work():
            conv = Conversation.objects.get(pk=conversation.pk)
            for i in range(per_thread):
                services.message_send(conversation=conv, sender=user, message_body=f"{tag} {i}")

        return work

    run_concurrently(
        [
            sender(alice, pair, "a-pair-1"), sender(alice, pair, "a-pair-2"),
            sender(bob, pair, "b-pair-1"), sender(bob, pair, "b-pair-2"), sender(bob, pair, "b-pair-3"),
            sender(alice, group, "a-group"), sender(carol, group, "c-group-1"), sender(carol, group, "c-group-2"),
        ]
    )

    def unread(user: User) -> dict:
        rows = selectors.conversation_list_for_user(user=user)
        return {c.pk: c.unread_count for c in rows}

    expected = {
        alice: {pair.pk: 3 * per_thread, group.pk: 2 * per_thread},
        bob: {pair.pk: 2 * per_thread, group.pk: 3 * per_thread},
        carol: {group.pk: 1 * per_thread},
    }
    for user, counts in expected.items():
        assert unread(user) == counts
        assert selectors.unread_total_for_user(user=user) == sum(counts.values())
        client = api_as(user)
        assert client.get("/api/users/me/").json()["unread_count"] == sum(counts.values())
        listed = {r["conversation_id"]: r["unread_count"] for r in client.get("/api/conversations/").json()["results"]}
        assert listed == {str(pk): n for pk, n in counts.items()}

    # Alice reads the pair while Bob keeps sending to it: the count afterwards is exactly
    # Bob's messages after her marker, whatever the interleaving.
    def alice_reads():
        conv = Conversation.objects.get(pk=pair.pk)
        for _ in range(per_thread):
            services.conversation_mark_read(conversation=conv, user=alice)

    run_concurrently([alice_reads, sender(bob, pair, "b-late-1"), sender(bob, pair, "b-late-2")])
    marker = ConversationMembership.objects.get(conversation=pair, user=alice).last_read_at
    assert marker is not None
    assert Message.objects.filter(conversation=pair, sent_at=marker).exists()  # a real message's time
    after_marker = Message.objects.filter(conversation=pair, sender=bob, sent_at__gt=marker).count()
    assert unread(alice)[pair.pk] == after_marker
    assert selectors.unread_total_for_user(user=alice) == after_marker + 2 * per_thread
    response = api_as(alice).post(f"/api/conversations/{pair.pk}/read/", {}, format="json")
    assert response.json()["unread_count"] == 0
    assert unread(alice) == {pair.pk: 0, group.pk: 2 * per_thread}
    # Bob's view was never touched by Alice's reading.
    assert unread(bob)[pair.pk] == 2 * per_thread


def test_concurrent_mark_reads_never_move_the_marker_backwards():
    """Marks at different messages racing each other end at the newest one marked."""
    alice, bob = UserFactory.create_batch(2)
    conversation = make_conversation(bob, alice, messages=tuple(f"m{i}" for i in range(8)))
    messages = list(Message.objects.filter(conversation=conversation).order_by("sent_at"))

    def mark(message: Message):
        def work():
            services.conversation_mark_read(
                conversation=Conversation.objects.get(pk=conversation.pk), user=alice, message=message
            )

        return work

    run_concurrently([mark(m) for m in messages])
    membership = ConversationMembership.objects.get(conversation=conversation, user=alice)
    assert membership.last_read_at == messages[-1].sent_at
    assert selectors.unread_total_for_user(user=alice) == 0


def test_concurrent_reactions_keep_the_summary_exact():
    """
    Many people react at once, each twice with the same emoji, one adding and one taking back
    another: the summary matches the reaction rows exactly (it is rewritten under the message's
    lock), one row per person and emoji. Then pins race for the last places under the cap.
    """
    from django.core.exceptions import ValidationError

    from chats.models import MAX_PINS, MessagePin, MessageReaction
    from chats.services_groups import participant_set_role
    from chats.services_reactions import pin_add, reaction_add, reaction_remove

    sender = UserFactory()
    people = UserFactory.create_batch(6)
    conversation = make_conversation(sender, *people)
    message, _ = services.message_send(conversation=conversation, sender=sender, message_body="react to me")
    thumbs, party = "\N{THUMBS UP SIGN}", "\N{PARTY POPPER}"
    workers = []
    for person in people:
        workers.append(lambda p=person: reaction_add(message=message, user=p, emoji=thumbs))
        workers.append(lambda p=person: reaction_add(message=message, user=p, emoji=thumbs))  # the same again
    workers.append(lambda: reaction_add(message=message, user=people[0], emoji=party))
    workers.append(lambda: reaction_remove(message=message, user=people[1], emoji=party))
    run_concurrently(workers)

    message.refresh_from_db()
    rows = MessageReaction.objects.filter(message=message)
    assert rows.filter(emoji_code="1f44d").count() == len(people)
    by_emoji = {entry["emoji"]: sorted(entry["user_ids"]) for entry in message.reaction_summary}
    assert by_emoji == {
        thumbs: sorted(str(p.pk) for p in people),
        party: [str(people[0].pk)],
    }

    # Pins: the cap holds however many pin at once.
    messages = [
        services.message_send(conversation=conversation, sender=sender, message_body=f"m{i}")[0]
        for i in range(MAX_PINS + 2)
    ]
    for earlier in messages[: MAX_PINS - 2]:
        pin_add(conversation=conversation, user=sender, message_id=earlier.pk)
    racers = messages[MAX_PINS - 2:]
    # In a group, its owner and admins pin (chats/services_groups.py).
    participant_set_role(conversation=conversation, actor=sender, user_id=people[0].pk, role="admin")

    def pin(m):
        try:
            return pin_add(conversation=conversation, user=people[0], message_id=m.pk)[1]
        except ValidationError:  # the cap's refusal
            return False

    assert sum(run_concurrently([lambda m=m: pin(m) for m in racers])) == 2
    assert MessagePin.objects.filter(conversation=conversation).count() == MAX_PINS
