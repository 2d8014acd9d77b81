"""
Mute and archive, per member: GET/PATCH /api/conversations/{id}/membership/, what they change
in /api/users/me/ and the inbox, the unarchiving by a new message, and the membership.updated event.
"""
import pytest

from chats import services_membership
from chats.models import ConversationMembership, Event
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db


def membership_url(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/membership/"


def inbox(client, query: str = "") -> list[str]:
    response = client.get(f"/api/conversations/{query}")
    assert response.status_code == 200, response.content
    return [c["conversation_id"] for c in response.json()["results"]]


def own_frames(user, event_type="membership.updated"):
    return [e.frame for e in Event.objects.filter(user=user).order_by("event_id") if e.frame["type"] == event_type]


class TestMembershipEndpoint:
    def test_defaults_then_mute_and_archive_answer_the_new_state(self, conversation, alice, client_for):
        client = client_for(alice)
        assert client.get(membership_url(conversation)).json() == {
            "conversation_id": str(conversation.pk), "muted": False, "archived": False, "archived_at": None,
            "notifications": "all",
        }
        body = client.patch(membership_url(conversation), {"muted": True, "archived": True}, format="json").json()
        assert body["muted"] is True and body["archived"] is True and body["archived_at"]
        row = ConversationMembership.objects.get(conversation=conversation, user=alice)
        assert row.muted and row.archived_at is not None
        # Omitted fields stay; archiving again keeps the first time.
        again = client.patch(membership_url(conversation), {"archived": True}, format="json").json()
        assert again == body

    def test_only_the_callers_membership_changes(self, conversation, alice, bob, client_for):
        client_for(alice).patch(membership_url(conversation), {"muted": True}, format="json")
        assert client_for(bob).get(membership_url(conversation)).json()["muted"] is False

    def test_non_participants_get_404_like_an_unknown_id(self, conversation, carol, client_for):
        for method in ("get", "patch"):
            response = getattr(client_for(carol), method)(membership_url(conversation), {"muted": True}, format="json")
            assert_error(response, 404)
        assert_error(client_for(carol).patch("/api/conversations/not-an-id/membership/", {}, format="json"), 404)
        assert not ConversationMembership.objects.filter(muted=True).exists()

    def test_bad_values_are_400_on_their_field(self, conversation, alice, client_for):
        response = client_for(alice).patch(membership_url(conversation), {"muted": "loud"}, format="json")
        assert_error(response, 400, attr="muted")
        response = client_for(alice).patch(membership_url(conversation), {"archived": None}, format="json")
        assert_error(response, 400, attr="archived")

    def test_event_to_the_members_own_stream_only_when_something_changed(self, conversation, alice, bob, client_for):
        client = client_for(alice)
        client.patch(membership_url(conversation), {"muted": True}, format="json")
        client.patch(membership_url(conversation), {"muted": True}, format="json")  # no change: no event
        client.patch(membership_url(conversation), {"archived": True}, format="json")
        frames = own_frames(alice)
        assert [(f["muted"], f["archived"]) for f in frames] == [(True, False), (True, True)]
        assert frames[0]["conversation_id"] == str(conversation.pk)
        assert own_frames(bob) == []


class TestMute:
    def test_muted_conversations_leave_the_unread_total(self, alice, bob, carol, client_for):
        loud = make_conversation(alice, bob)
        quiet = make_conversation(alice, carol)
        send(loud, bob, "one")
        send(quiet, carol, "two")
        send(quiet, carol, "three")
        client = client_for(alice)
        assert client.get("/api/users/me/").json()["unread_count"] == 3
        client.patch(membership_url(quiet), {"muted": True}, format="json")
        assert client.get("/api/users/me/").json()["unread_count"] == 1
        # The conversation itself still counts its unread messages.
        assert client.get(f"/api/conversations/{quiet.pk}/").json()["unread_count"] == 2
        client.patch(membership_url(quiet), {"muted": False}, format="json")
        assert client.get("/api/users/me/").json()["unread_count"] == 3


class TestArchive:
    def test_archived_leave_the_inbox_and_are_listed_with_archived_true(self, alice, bob, carol, client_for):
        kept = make_conversation(alice, bob)
        archived = make_conversation(alice, carol)
        client = client_for(alice)
        client.patch(membership_url(archived), {"archived": True}, format="json")
        response = client.get("/api/conversations/")
        assert response.json()["count"] == 1
        assert inbox(client) == [str(kept.pk)]
        assert inbox(client, "?archived=true") == [str(archived.pk)]
        assert inbox(client, "?archived=false") == [str(kept.pk)]
        # Filtered and ordered lists leave them out too; the conversation itself is still there.
        assert inbox(client, "?ordering=created_at") == [str(kept.pk)]
        assert inbox(client, f"?participant={carol.pk}") == []
        assert inbox(client, f"?archived=true&participant={carol.pk}") == [str(archived.pk)]
        assert client.get(f"/api/conversations/{archived.pk}/").status_code == 200
        # Only for the one who archived it.
        assert inbox(client_for(carol)) == [str(archived.pk)]

    def test_bad_archived_value_is_400(self, alice, client_for):
        assert_error(client_for(alice).get("/api/conversations/?archived=maybe"), 400, attr="archived")

    def test_a_new_message_unarchives_unless_muted(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol)
        services_membership.membership_update(conversation=conversation, user=alice, archived=True)
        services_membership.membership_update(conversation=conversation, user=bob, archived=True, muted=True)
        services_membership.membership_update(conversation=conversation, user=carol, archived=True)
        send(conversation, carol, "back to the top")
        state = {m.user_id: m for m in ConversationMembership.objects.filter(conversation=conversation)}
        assert state[alice.pk].archived_at is None  # not muted: back in the inbox
        assert state[bob.pk].archived_at is not None  # muted: stays archived
        assert state[carol.pk].archived_at is not None  # the sender's own message does not unarchive
        assert state[alice.pk].unread_count == 1 and state[bob.pk].unread_count == 1
        assert inbox(client_for(alice)) == [str(conversation.pk)]
        assert inbox(client_for(bob)) == []


def test_inbox_and_me_run_the_same_queries_with_archived_and_muted(alice, client_for, django_assert_num_queries):
    for n in range(6):
        other = UserFactory()
        conversation = make_conversation(alice, other)
        send(conversation, other, f"m{n}")
        services_membership.membership_update(conversation=conversation, user=alice, archived=n % 2 == 0, muted=n < 3)
    client = client_for(alice)
    client.get("/api/conversations/")  # warm: the statements compiled once
    # The page and its participants; the page holds the whole list, so no count (filtered or not).
    with django_assert_num_queries(2):
        assert client.get("/api/conversations/").json()["count"] == 3
    with django_assert_num_queries(2):
        assert client.get("/api/conversations/?archived=true").json()["count"] == 3
    with django_assert_num_queries(3):  # a page that does not hold it all: its COUNT too
        assert client.get("/api/conversations/?archived=true&page_size=2").json()["count"] == 3
    with django_assert_num_queries(1):  # the unread total (the token names the user)
        assert client.get("/api/users/me/").json()["unread_count"] == 3
