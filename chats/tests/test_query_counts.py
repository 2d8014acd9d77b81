"""
List endpoints run a fixed number of SQL queries whatever the page length.
Each test measures a page of 1 and a full page of 20 and pins both numbers.
"""
import pytest

from chats.tests.factories import UserFactory, make_conversation, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_alice(alice):
    """Alice with 20 group conversations of 3 people, 2 messages each."""
    for _ in range(20):
        others = UserFactory.create_batch(2)
        make_conversation(alice, *others, messages=("a", "b"))
    return alice


def assert_fixed_queries(django_assert_num_queries, client, url, expected, *, whole_at_20=False):
    """
    `expected` queries for a page of 1 and a full page of 20, whatever the page length. With
    `whole_at_20` the list has exactly 20 items: that page holds all of it, so it needs no COUNT,
    one query fewer (its length is the count: chats/pagination.py, CountingPaginator).
    """
    for page_size in (1, 20):
        # count + page + prefetches; authentication is forced, so no user lookup.
        with django_assert_num_queries(expected - (whole_at_20 and page_size == 20)):
            response = client.get(url, {"page_size": page_size})
        assert response.status_code == 200
        assert len(response.json()["results"]) == page_size


def test_conversation_list(busy_alice, client_for, django_assert_num_queries):
    # count, page (with last message and its sender joined), participants prefetch
    assert_fixed_queries(django_assert_num_queries, client_for(busy_alice), "/api/conversations/", 3, whole_at_20=True)


def test_conversation_search(busy_alice, client_for, django_assert_num_queries):
    client = client_for(busy_alice)
    for page_size in (1, 20):
        with django_assert_num_queries(3 if page_size == 1 else 2):  # 20 of 20: no COUNT
            response = client.get("/api/conversations/", {"search": "Alice", "page_size": page_size})
        assert len(response.json()["results"]) == page_size


def test_flat_message_list(busy_alice, client_for, django_assert_num_queries):
    # count (the conversations' stored counts), the most recently active conversations, the
    # page's ids merged from their timelines, those rows (sender joined)
    assert_fixed_queries(django_assert_num_queries, client_for(busy_alice), "/api/messages/", 4)


def test_nested_message_list(alice, bob, client_for, django_assert_num_queries):
    conversation = make_conversation(alice, bob)
    for i in range(20):
        send(conversation, alice if i % 2 else bob, f"m{i}")
    url = f"/api/conversations/{conversation.pk}/messages/"
    # conversation access check, the page's ids, those rows (sender joined); the count is the
    # conversation's denormalised message_count, so no COUNT(*) over a long history
    assert_fixed_queries(django_assert_num_queries, client_for(alice), url, 3)


def test_user_list(busy_alice, client_for, django_assert_num_queries):
    # count, page
    assert_fixed_queries(django_assert_num_queries, client_for(busy_alice), "/api/users/", 2)


@pytest.fixture(autouse=True)
def _webhook_flag_known(_fresh_cache):
    """
    After each commit with events, "does anyone have an active webhook?" is answered from the
    cache (notifications/services.py): one query per process at most once a minute, made here,
    so the counts below are those of every other send. With a webhook, a send costs one query
    more (notifications/tests/test_webhooks.py).
    """
    from notifications.services import any_active_webhooks

    any_active_webhooks()


@pytest.mark.parametrize("client_id", [None, "retry-key"])
def test_send_runs_the_same_queries_for_two_people_or_twelve(
    alice, bob, client_for, django_assert_num_queries, django_capture_on_commit_callbacks, client_id
):
    # access check, sender lock (client_id only), conversation lock, retry lookup (client_id
    # only), insert (in a savepoint with a client_id), counters, unread counts; then the event:
    # the participants, their event streams locked and advanced, the frame stored once, the
    # events inserted. The transaction's own SAVEPOINT/RELEASE count here too.
    expected = 12 if client_id is None else 16
    for people in (UserFactory.create_batch(1), UserFactory.create_batch(11)):
        conversation = make_conversation(alice, *people)
        body = {"message_body": "hi", **({"client_id": client_id + str(len(people))} if client_id else {})}
        with django_assert_num_queries(expected):
            with django_capture_on_commit_callbacks(execute=True):
                response = client_for(alice).post(f"/api/conversations/{conversation.pk}/messages/", body)
        assert response.status_code == 201, response.content


def test_timeline_page_selects_ids_without_joining_users(alice, bob, client_for):
    """The page itself is chosen on the timeline index alone: with the sender joined, MariaDB
    planned a two-person conversation from the users table and sorted its whole history."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    conversation = make_conversation(alice, bob, messages=("a", "b", "c"))
    for params in ({}, {"page": 2, "page_size": 1}, {"before": str(conversation.last_message_id)}):
        with CaptureQueriesContext(connection) as captured:
            response = client_for(alice).get(f"/api/conversations/{conversation.pk}/messages/", params)
        assert response.status_code == 200
        limited = [q["sql"] for q in captured.captured_queries if "LIMIT" in q["sql"] and "chats_message" in q["sql"]]
        assert limited and all("chats_user" not in sql for sql in limited), limited


# --- Attachments: one more query per page when a message on it has some, whatever the page length
def _send_with_attachment(conversation, sender, body=""):
    from attachments import services as attachment_services
    from attachments.tests.helpers import upload

    attachment = attachment_services.attachment_create(uploader=sender, upload=upload())
    return send(conversation, sender, body, attachment_ids=[attachment.pk])


def test_nested_message_list_with_attachments(alice, bob, client_for, django_assert_num_queries):
    conversation = make_conversation(alice, bob)
    for i in range(20):
        _send_with_attachment(conversation, alice if i % 2 else bob)
    url = f"/api/conversations/{conversation.pk}/messages/"
    # access check, the page's ids, those rows, their attachments
    assert_fixed_queries(django_assert_num_queries, client_for(alice), url, 4)
    page = client_for(alice).get(url).json()["results"]
    assert all(len(message["attachments"]) == 1 for message in page)


def test_flat_message_list_with_attachments(alice, client_for, django_assert_num_queries):
    for _ in range(20):
        others = UserFactory.create_batch(2)
        _send_with_attachment(make_conversation(alice, *others), alice)
    # count, active conversations, merged ids, rows, their attachments
    assert_fixed_queries(django_assert_num_queries, client_for(alice), "/api/messages/", 5, whole_at_20=True)


def test_conversation_list_with_attachments(alice, client_for, django_assert_num_queries):
    for _ in range(20):
        others = UserFactory.create_batch(2)
        _send_with_attachment(make_conversation(alice, *others), alice)
    # count, page, participants, the last messages' attachments
    assert_fixed_queries(django_assert_num_queries, client_for(alice), "/api/conversations/", 4, whole_at_20=True)


@pytest.mark.parametrize("count", [1, 10])
def test_send_with_attachments_runs_the_same_queries_for_one_or_ten(
    alice, bob, client_for, django_assert_num_queries, django_capture_on_commit_callbacks, count
):
    from attachments import services as attachment_services
    from attachments.tests.helpers import upload

    conversation = make_conversation(alice, bob)
    ids = [str(attachment_services.attachment_create(uploader=alice, upload=upload()).pk) for _ in range(count)]
    # the send's 12, plus: the uploads locked and checked, attached, and read for the response and the event
    with django_assert_num_queries(15):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(alice).post(
                f"/api/conversations/{conversation.pk}/messages/", {"attachments": ids}, format="json"
            )
    assert response.status_code == 201, response.content
    assert len(response.json()["attachments"]) == count


def _react_to_everything(conversation, users):
    from chats.services_reactions import reaction_add

    for message in conversation.messages.all():
        for user in users:
            reaction_add(message=message, user=user, emoji="\N{THUMBS UP SIGN}")


def test_message_lists_with_reactions_run_the_same_queries(alice, bob, client_for, django_assert_num_queries):
    # Reactions are read with each message's row (Message.reaction_summary): no extra query.
    conversation = make_conversation(alice, bob)
    for i in range(20):
        send(conversation, alice if i % 2 else bob, f"m{i}")
    _react_to_everything(conversation, (alice, bob))
    client = client_for(alice)
    assert_fixed_queries(django_assert_num_queries, client, f"/api/conversations/{conversation.pk}/messages/", 3)
    assert_fixed_queries(django_assert_num_queries, client, "/api/messages/", 4, whole_at_20=True)
    response = client.get("/api/messages/", {"page_size": 1})
    assert response.json()["results"][0]["reactions"] == [{"emoji": "\N{THUMBS UP SIGN}", "count": 2, "me": True}]


def test_conversation_list_with_reactions(busy_alice, client_for, django_assert_num_queries):
    for conversation in busy_alice.conversations.all():
        _react_to_everything(conversation, (busy_alice,))
    assert_fixed_queries(django_assert_num_queries, client_for(busy_alice), "/api/conversations/", 3, whole_at_20=True)


@pytest.mark.parametrize("people", [1, 11])
def test_reacting_runs_the_same_queries_for_two_people_or_twelve(
    alice, client_for, django_assert_num_queries, django_capture_on_commit_callbacks, people
):
    # message access check, SAVEPOINT, conversation lock, message lock, existing reaction?, insert,
    # summary update; then the event: participants, their streams locked and advanced, the frame
    # stored once, events inserted; RELEASE.
    conversation = make_conversation(alice, *UserFactory.create_batch(people))
    message = send(conversation, alice, "hi")
    with django_assert_num_queries(13):
        with django_capture_on_commit_callbacks(execute=True):
            response = client_for(alice).post(
                f"/api/messages/{message.pk}/reactions/", {"emoji": "\N{THUMBS UP SIGN}"}, format="json"
            )
    assert response.status_code == 201, response.content


def test_pin_list(alice, bob, client_for, django_assert_num_queries):
    from chats.services_reactions import pin_add

    conversation = make_conversation(alice, bob)
    for i in range(20):
        pin_add(conversation=conversation, user=bob, message_id=send(conversation, alice, f"m{i}").pk)
    # conversation access check, count, the page (message, its sender and who pinned, joined)
    assert_fixed_queries(
        django_assert_num_queries, client_for(alice), f"/api/conversations/{conversation.pk}/pins/", 3, whole_at_20=True
    )


def test_pin_list_with_attachments(alice, bob, client_for, django_assert_num_queries):
    from chats.services_reactions import pin_add

    conversation = make_conversation(alice, bob)
    for _ in range(20):
        pin_add(conversation=conversation, user=bob, message_id=_send_with_attachment(conversation, alice).pk)
    # ... and the page's attachments: one more query, only when a pinned message has some
    assert_fixed_queries(
        django_assert_num_queries, client_for(alice), f"/api/conversations/{conversation.pk}/pins/", 4, whole_at_20=True
    )


def test_read_markers(alice, client_for, django_assert_num_queries):
    # conversation access check, the memberships with their users joined: whatever the group's size
    for people in (1, 20):
        conversation = make_conversation(alice, *UserFactory.create_batch(people))
        with django_assert_num_queries(2):
            response = client_for(alice).get(f"/api/conversations/{conversation.pk}/read-markers/")
        assert len(response.json()) == people + 1


@pytest.mark.parametrize("conversations", [0, 1, 19, 20, 21])
def test_a_first_page_counts_without_count_only_when_it_holds_the_whole_list(
    alice, client_for, django_assert_num_queries, conversations
):
    """CountingPaginator reads the first page one row long: the count, `next` and later pages stay exact."""
    for _ in range(conversations):
        make_conversation(alice, UserFactory())
    client = client_for(alice)
    whole = conversations <= 20
    # the page, its participants (none for an empty list); and the count only when the page is full
    with django_assert_num_queries((2 if conversations else 1) + (not whole)):
        first = client.get("/api/conversations/").json()
    assert first["count"] == conversations
    assert len(first["results"]) == min(conversations, 20)
    assert (first["next"] is None) == whole
    if not whole:
        second = client.get(first["next"]).json()
        assert second["count"] == conversations and len(second["results"]) == conversations - 20
        last = client.get("/api/conversations/", {"page": "last"}).json()
        assert [c["conversation_id"] for c in last["results"]] == [c["conversation_id"] for c in second["results"]]
    ids = {c["conversation_id"] for c in first["results"]}
    assert len(ids) == len(first["results"])  # the extra row read is not shown
