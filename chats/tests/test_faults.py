"""
Database failures injected in the middle of writes: every write is all-or-nothing.

A fault raises OperationalError at one SQL statement, as a connection lost right there would
(Django's execute_wrapper hook: the statements before it really ran). The API must answer 503
with Retry-After, and the database must hold exactly what it held before: no message without
its counters, no conversation without its members, no event for a write that was rolled back.
The tests run with real transactions (transaction=True), committed or rolled back by the
database as in production; on SQLite here and on MariaDB and PostgreSQL in CI.

A real outage (database server stopped under traffic) is tested in
integration/test_db_outage.py; a failing read and a failing membership insert in
test_abuse_limits.py (TestDatabaseOutage).
"""
import re

import pytest
from django.db import OperationalError, connection, connections
from rest_framework.test import APIClient

from chats import events, services, stream
from chats.models import Conversation, ConversationMembership, Event, EventStream, Message, MessageEdit
from chats.tests.factories import PASSWORD
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db(transaction=True)


def table(verb: str, name: str) -> str:
    """A statement on one table, however the backend quotes its name."""
    return rf'^{verb} [`"]{name}[`"]'


LOST = "(2013, 'Lost connection to server during query')"


class Fault:
    """
    An execute_wrapper that fails the first statement matching `fail_at` once a statement
    matching `armed_by` has run; or, with fail_at=None, the first COMMIT after it (see commit_fault).
    """

    def __init__(self, fail_at: str | None, armed_by: str):
        self.fail_at, self.armed_by = fail_at and re.compile(fail_at), re.compile(armed_by)
        self.ran: list[str] = []  # statements that really ran
        self.fired = False

    @property
    def armed(self) -> bool:
        return not self.fired and any(self.armed_by.match(sql) for sql in self.ran)

    def __call__(self, execute, sql, params, many, context):
        if self.fail_at and self.armed and self.fail_at.match(sql):
            self.fired = True
            raise OperationalError(LOST)
        self.ran.append(sql)
        return execute(sql, params, many, context)


def commit_fault(monkeypatch, fault: Fault, *, applied: bool) -> None:
    """
    The driver's COMMIT fails once `fault` is armed: before reaching the database, or, if
    `applied`, after the database committed (only its answer is lost).
    """
    wrapper_class = type(connections["default"])
    real_commit = wrapper_class._commit

    def _commit(self):
        if not fault.armed:
            return real_commit(self)
        fault.fired = True
        if applied:
            real_commit(self)
        raise OperationalError(LOST)

    monkeypatch.setattr(wrapper_class, "_commit", _commit)


@pytest.fixture
def client_for():
    """Like the shared fixture, but a 5xx comes back as a response instead of re-raising."""

    def make(user):
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def sent_events(monkeypatch):
    """Every event handed to the channel layer (they go out only after a commit)."""
    sent = []
    monkeypatch.setattr(  # each delivery's kinds of event, in order (one frame per recipient)
        events, "deliver", lambda numbered: sent.extend(dict.fromkeys(frame["type"] for frame, _ in numbered))
    )
    return sent


def snapshot() -> dict:
    """Every row the writes under test touch, as plain values."""
    return {
        "conversations": sorted(
            Conversation.objects.values_list("pk", "message_count", "last_message_id", "last_activity_at", "direct_key")
        ),
        "memberships": sorted(
            ConversationMembership.objects.values_list("conversation_id", "user_id", "unread_count", "last_read_at")
        ),
        "messages": sorted(Message.objects.values_list("pk", "message_body", "is_deleted", "edited_at", "client_id")),
        "edits": sorted(MessageEdit.objects.values_list("pk", "message_body")),
        "events": sorted(Event.objects.values_list("user_id", "event_id")),
        "streams": sorted(EventStream.objects.values_list("user_id", "last_event_id")),
    }


def request_with(fault: Fault, send):
    with connection.execute_wrapper(fault):
        response = send()
    assert fault.fired, f"the statement to fail never ran; statements: {fault.ran}"
    return response


def assert_unavailable(response) -> None:
    body = assert_error(response, 503, code="service_unavailable")
    assert body["type"] == "server_error" and response["Retry-After"] == "5"
    assert "Lost connection" not in response.content.decode()  # no driver detail leaks


def messages_url(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/messages/"


def post_message(client, conversation, body: dict):
    return client.post(messages_url(conversation), body, format="json")


class TestSend:
    @pytest.mark.parametrize(
        "fail_at",
        [
            table("UPDATE", "chats_conversation"),
            table("UPDATE", "chats_conversationmembership"),
            table("UPDATE", "chats_eventstream"),
            table("INSERT INTO", "chats_event"),
        ],
        ids=["at-the-conversation-counters", "at-the-unread-counts", "at-the-event-numbers", "at-the-event-rows"],
    )
    def test_a_failure_after_the_message_insert_leaves_nothing(
        self, conversation, alice, client_for, sent_events, fail_at
    ):
        before = snapshot()
        fault = Fault(fail_at, armed_by=table("INSERT INTO", "chats_message"))
        response = request_with(fault, lambda: post_message(client_for(alice), conversation, {"message_body": "lost"}))
        assert_unavailable(response)
        assert snapshot() == before
        assert sent_events == []

    def test_a_failed_commit_leaves_nothing_and_the_retry_is_stored_once(
        self, conversation, alice, bob, client_for, sent_events, monkeypatch
    ):
        before = snapshot()
        fault = Fault(None, armed_by=table("INSERT INTO", "chats_message"))
        commit_fault(monkeypatch, fault, applied=False)
        body = {"message_body": "retried", "client_id": "c-commit"}
        assert_unavailable(request_with(fault, lambda: post_message(client_for(alice), conversation, body)))
        assert snapshot() == before and sent_events == []

        retry = post_message(client_for(alice), conversation, body)
        assert retry.status_code == 201, retry.content
        assert_one_more_message(conversation, bob, retry.json()["message_id"])
        assert sent_events == ["message.created"]

    def test_a_commit_whose_answer_is_lost_is_503_and_the_retry_returns_the_stored_message(
        self, conversation, alice, bob, client_for, monkeypatch
    ):
        """The client cannot know the send was stored; its retry with the same client_id says so, once."""
        fault = Fault(None, armed_by=table("INSERT INTO", "chats_message"))
        commit_fault(monkeypatch, fault, applied=True)
        body = {"message_body": "stored anyway", "client_id": "c-after-commit"}
        assert_unavailable(request_with(fault, lambda: post_message(client_for(alice), conversation, body)))
        stored = Message.objects.get(client_id="c-after-commit")

        retry = post_message(client_for(alice), conversation, body)
        assert retry.status_code == 200 and retry.json()["message_id"] == str(stored.pk), retry.content
        assert_one_more_message(conversation, bob, str(stored.pk))
        # Its event was never delivered live (the commit's answer was lost), but the stream has it,
        # once: the retry found the stored message and announced nothing new.
        for user in (alice, bob):
            created = [frame for frame in stream.after(user.pk, 0, 10_000)
                       if frame["type"] == "message.created" and frame["message"]["message_id"] == str(stored.pk)]
            assert len(created) == 1


def assert_one_more_message(conversation, other, message_id: str) -> None:
    """The conversation fixture had two messages, both unread by `other`; now exactly one more."""
    fresh = Conversation.objects.get(pk=conversation.pk)
    assert Message.objects.filter(conversation=conversation).count() == fresh.message_count == 3
    assert str(fresh.last_message_id) == message_id
    assert ConversationMembership.objects.get(conversation=conversation, user=other).unread_count == 3


class TestConversationCreate:
    @pytest.mark.parametrize("kind", ["direct", "group"])
    @pytest.mark.parametrize(
        "fail_at",
        [
            table("INSERT INTO", "chats_message"),
            table("UPDATE", "chats_conversationmembership"),
            table("UPDATE", "chats_conversation"),
        ],
        ids=["at-the-first-messages", "at-the-unread-counts", "at-the-conversation-counters"],
    )
    def test_a_failure_after_the_members_are_inserted_leaves_nothing(
        self, alice, bob, carol, client_for, sent_events, kind, fail_at
    ):
        before = snapshot()
        participants = [str(bob.pk)] if kind == "direct" else [str(bob.pk), str(carol.pk)]
        fault = Fault(fail_at, armed_by=table("INSERT INTO", "chats_conversationmembership"))
        response = request_with(fault, lambda: client_for(alice).post(
            "/api/conversations/",
            {"participants": participants, "messages": [{"message_body": "one"}, {"message_body": "two"}]},
            format="json",
        ))
        assert_unavailable(response)
        assert snapshot() == before
        assert sent_events == []

        # Nothing stands in the way of the same create afterwards (no half-made direct pair).
        again = client_for(alice).post(
            "/api/conversations/",
            {"participants": participants, "messages": [{"message_body": "one"}, {"message_body": "two"}]},
            format="json",
        )
        assert again.status_code == 201, again.content
        assert again.json()["message_count"] == 2


class TestOtherWrites:
    def test_add_participant_failing_after_the_membership_insert_leaves_nothing(
        self, conversation, alice, carol, client_for, sent_events
    ):
        before = snapshot()
        fault = Fault(table("UPDATE", "chats_conversation"),
                      armed_by=table("INSERT INTO", "chats_conversationmembership"))
        response = request_with(fault, lambda: client_for(alice).post(
            f"/api/conversations/{conversation.pk}/participants/", {"user_id": str(carol.pk)}, format="json"
        ))
        assert_unavailable(response)
        assert snapshot() == before and sent_events == []

    def test_edit_failing_after_the_history_insert_leaves_nothing(self, conversation, alice, client_for, sent_events):
        message = conversation.last_message
        before = snapshot()
        fault = Fault(table("UPDATE", "chats_message"), armed_by=table("INSERT INTO", "chats_messageedit"))
        response = request_with(fault, lambda: client_for(alice).patch(
            f"{messages_url(conversation)}{message.pk}/", {"message_body": "edited"}, format="json"
        ))
        assert_unavailable(response)
        assert snapshot() == before and sent_events == []

    def test_delete_failing_after_the_unread_counts_leaves_nothing(
        self, conversation, alice, client_for, sent_events
    ):
        message = conversation.last_message
        services.message_edit(message=message, actor=alice, message_body="second, edited")  # history to erase
        sent_events.clear()
        before = snapshot()
        fault = Fault(table("UPDATE", "chats_message"), armed_by=table("UPDATE", "chats_conversationmembership"))
        response = request_with(fault, lambda: client_for(alice).delete(f"{messages_url(conversation)}{message.pk}/"))
        assert_unavailable(response)
        assert snapshot() == before and sent_events == []

    def test_password_change_failing_at_the_logout_keeps_the_old_password(self, alice):
        """Never a new password with the old refresh tokens still alive: both happen or neither."""
        api = APIClient(raise_request_exception=False)
        tokens = api.post("/api/token/", {"email": alice.email, "password": PASSWORD}, format="json").json()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
        fault = Fault(table("INSERT INTO", "token_blacklist_blacklistedtoken"),
                      armed_by=table("UPDATE", "chats_user"))
        response = request_with(fault, lambda: api.post(
            "/api/users/me/password/",
            {"current_password": PASSWORD, "new_password": "another-Strong-passphrase-42"},
            format="json",
        ))
        assert_unavailable(response)
        alice.refresh_from_db()
        assert alice.check_password(PASSWORD)
        refreshed = APIClient().post("/api/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
        assert refreshed.status_code == 200, refreshed.content
