"""
Read receipts ("seen by"): GET /api/conversations/{id}/read-markers/ and the read_marker.moved
event to the other participants when someone's marker moves forward (and only then).
"""
import pytest

from chats import services
from chats.models import Event
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db


def markers(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/read-markers/"


def frames(user, event_type):
    return [e.frame for e in Event.objects.filter(user=user).order_by("event_id") if e.frame["type"] == event_type]


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


class TestList:
    def test_every_participant_with_their_marker(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol, messages=("one", "two"))
        one, two = conversation.messages.order_by("sent_at")
        services.conversation_mark_read(conversation=conversation, user=bob, message=one)
        body = client_for(carol).get(markers(conversation)).json()
        by_user = {row["user"]["user_id"]: row for row in body}
        assert set(by_user) == {str(alice.pk), str(bob.pk), str(carol.pk)}
        assert by_user[str(bob.pk)] == {
            "user": {"user_id": str(bob.pk), "first_name": bob.first_name, "last_name": bob.last_name},
            "last_read_at": iso(one.sent_at),
        }
        assert by_user[str(carol.pk)]["last_read_at"] is None

    def test_outsiders_get_404_and_anonymous_401(self, conversation, mallory, client_for, api):
        assert_error(client_for(mallory).get(markers(conversation)), 404)
        assert_error(client_for(mallory).get("/api/conversations/not-an-id/read-markers/"), 404)
        assert api.get(markers(conversation)).status_code == 401

    def test_someone_who_left_is_not_listed(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol)
        services.conversation_remove_participant(conversation=conversation, actor=carol, user_id=carol.pk)
        body = client_for(alice).get(markers(conversation)).json()
        assert {row["user"]["user_id"] for row in body} == {str(alice.pk), str(bob.pk)}


class TestEvent:
    def test_the_others_learn_when_a_marker_moves_forward(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol, messages=("one", "two"))
        one, two = conversation.messages.order_by("sent_at")
        client = client_for(bob)
        response = client.post(f"/api/conversations/{conversation.pk}/read/", {"message_id": str(two.pk)})
        assert response.status_code == 200
        for other in (alice, carol):
            [moved] = frames(other, "read_marker.moved")
            assert {k: v for k, v in moved.items() if k != "event_id"} == {
                "type": "read_marker.moved",
                "conversation_id": str(conversation.pk),
                "user_id": str(bob.pk),
                "last_read_at": iso(two.sent_at),
            }
        # The reader's own sockets get conversation.read, not this.
        assert frames(bob, "read_marker.moved") == []
        assert len(frames(bob, "conversation.read")) == 1

    def test_no_event_when_the_marker_does_not_move(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("one", "two"))
        one, two = conversation.messages.order_by("sent_at")
        url = f"/api/conversations/{conversation.pk}/read/"
        client_for(bob).post(url, {"message_id": str(two.pk)})
        client_for(bob).post(url, {"message_id": str(one.pk)})  # backwards: no change
        client_for(bob).post(url, {})  # already at the newest
        assert len(frames(alice, "read_marker.moved")) == 1
        send(conversation, alice, "three")
        client_for(bob).post(url, {})
        assert len(frames(alice, "read_marker.moved")) == 2
