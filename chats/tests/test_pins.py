"""
Pins: POST/GET /api/conversations/{id}/pins/, DELETE .../pins/{message_id}/, the
message.pinned / message.unpinned events, the cap, and what a delete unpins.
"""
import pytest

from chats import services, services_reactions
from chats.models import MAX_PINS, Event, MessagePin
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db


def pins(conversation) -> str:
    return f"/api/conversations/{conversation.pk}/pins/"


def frames(user, event_type):
    return [e.frame for e in Event.objects.filter(user=user).order_by("event_id") if e.frame["type"] == event_type]


@pytest.fixture
def first(conversation):
    return conversation.messages.order_by("sent_at").first()


@pytest.fixture
def second(conversation):
    return conversation.messages.order_by("sent_at").last()


class TestPin:
    def test_pin_201_then_200_with_the_same_pin(self, conversation, first, bob, client_for):
        response = client_for(bob).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == {"message", "pinned_by", "pinned_at"}
        assert body["message"]["message_id"] == str(first.pk)
        assert body["message"]["message_body"] == "first"
        assert body["pinned_by"] == {"user_id": str(bob.pk), "first_name": bob.first_name, "last_name": bob.last_name}
        again = client_for(bob).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        assert again.status_code == 200
        assert again.json() == body
        assert MessagePin.objects.count() == 1

    def test_list_newest_pin_first_with_me_in_reactions(self, conversation, first, second, alice, bob, client_for):
        services_reactions.reaction_add(message=first, user=alice, emoji="\N{THUMBS UP SIGN}")
        client_for(alice).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        client_for(bob).post(pins(conversation), {"message_id": str(second.pk)}, format="json")
        for viewer, me in ((alice, True), (bob, False)):
            body = client_for(viewer).get(pins(conversation)).json()
            assert body["count"] == 2
            assert [p["message"]["message_id"] for p in body["results"]] == [str(second.pk), str(first.pk)]
            assert [p["pinned_by"]["user_id"] for p in body["results"]] == [str(bob.pk), str(alice.pk)]
            assert body["results"][1]["message"]["reactions"] == [{"emoji": "\N{THUMBS UP SIGN}", "count": 1, "me": me}]

    def test_unpin_is_idempotent(self, conversation, first, alice, bob, client_for):
        client_for(alice).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        assert client_for(bob).delete(f"{pins(conversation)}{first.pk}/").status_code == 204
        assert client_for(bob).delete(f"{pins(conversation)}{first.pk}/").status_code == 204
        assert client_for(bob).delete(f"{pins(conversation)}not-an-id/").status_code == 204
        assert client_for(bob).get(pins(conversation)).json()["count"] == 0

    def test_a_deleted_message_cannot_be_pinned(self, conversation, first, alice, bob, client_for):
        services.message_delete(message=first, actor=alice)
        response = client_for(bob).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        assert_error(response, 400, attr="message_id")

    def test_a_message_of_another_conversation_is_a_400(self, conversation, alice, carol, client_for):
        elsewhere = send(make_conversation(alice, carol), alice, "elsewhere")
        response = client_for(alice).post(pins(conversation), {"message_id": str(elsewhere.pk)}, format="json")
        assert_error(response, 400, attr="message_id")
        assert_error(client_for(alice).post(pins(conversation), {"message_id": "nope"}, format="json"), 400)

    def test_at_most_so_many_pins(self, conversation, alice, client_for):
        messages = [send(conversation, alice, f"m{i}") for i in range(MAX_PINS + 1)]
        for message in messages[:-1]:
            services_reactions.pin_add(conversation=conversation, user=alice, message_id=message.pk)
        response = client_for(alice).post(pins(conversation), {"message_id": str(messages[-1].pk)}, format="json")
        assert_error(response, 400, attr="message_id")
        assert MessagePin.objects.count() == MAX_PINS

    def test_outsiders_get_404(self, conversation, first, mallory, client_for, api):
        client = client_for(mallory)
        assert_error(client.get(pins(conversation)), 404)
        assert_error(client.post(pins(conversation), {"message_id": str(first.pk)}, format="json"), 404)
        assert_error(client.delete(f"{pins(conversation)}{first.pk}/"), 404)
        assert api.get(pins(conversation)).status_code == 401
        assert not MessagePin.objects.exists()


class TestEvents:
    def test_pinned_and_unpinned_go_to_every_participant(self, conversation, first, alice, bob, mallory, client_for):
        client_for(alice).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        client_for(alice).post(pins(conversation), {"message_id": str(first.pk)}, format="json")  # no change
        client_for(bob).delete(f"{pins(conversation)}{first.pk}/")
        client_for(bob).delete(f"{pins(conversation)}{first.pk}/")  # no change
        for user in (alice, bob):
            [pinned] = frames(user, "message.pinned")
            assert pinned["message_id"] == str(first.pk) and pinned["conversation_id"] == str(conversation.pk)
            assert pinned["pinned_by"]["user_id"] == str(alice.pk)
            assert pinned["message"]["message_body"] == "first"
            [unpinned] = frames(user, "message.unpinned")
            assert {k: v for k, v in unpinned.items() if k != "event_id"} == {
                "type": "message.unpinned", "conversation_id": str(conversation.pk),
                "message_id": str(first.pk), "user_id": str(bob.pk),
            }
        assert not Event.objects.filter(user=mallory).exists()

    def test_deleting_a_pinned_message_unpins_it(self, conversation, first, alice, bob, client_for):
        client_for(bob).post(pins(conversation), {"message_id": str(first.pk)}, format="json")
        services.message_delete(message=first, actor=alice)
        assert not MessagePin.objects.exists()
        [unpinned] = frames(bob, "message.unpinned")
        assert unpinned["user_id"] is None
        assert frames(bob, "message.deleted")[-1]["message"]["message_id"] == str(first.pk)
