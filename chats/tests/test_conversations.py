"""Conversations through the API: creation rules, visibility, filters, search, ordering."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from chats import selectors, services
from chats.models import Conversation, ConversationMembership, Message, User
from chats.serializers import ConversationSerializer
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db
URL = "/api/conversations/"


def ids(results, key="conversation_id"):
    return [r[key] for r in results]


class TestCreate:
    def test_creator_is_always_a_participant_and_nested_messages_are_sent_in_order(self, alice, bob, client_for):
        response = client_for(alice).post(
            URL,
            {"participants": [str(bob.pk)], "messages": [{"message_body": "one"}, {"message_body": "two"}]},
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert {p["user_id"] for p in body["participants"]} == {str(alice.pk), str(bob.pk)}
        assert body["created_by"]["user_id"] == str(alice.pk)
        assert body["message_count"] == 2
        assert body["last_message"]["message_body"] == "two"
        assert body["last_message"]["sender"]["user_id"] == str(alice.pk)
        conversation = Conversation.objects.get(pk=body["conversation_id"])
        bodies = list(conversation.messages.order_by("sent_at").values_list("message_body", flat=True))
        assert bodies == ["one", "two"]
        assert set(conversation.messages.values_list("sender_id", flat=True)) == {alice.pk}

    def test_messages_are_optional_and_last_message_is_null_without_them(self, alice, bob, client_for):
        response = client_for(alice).post(URL, {"participants": [str(bob.pk)]}, format="json")
        assert response.status_code == 201
        assert response.json()["message_count"] == 0
        assert response.json()["last_message"] is None

    def test_duplicate_participants_collapse_including_the_creator(self, alice, bob, client_for):
        response = client_for(alice).post(
            URL, {"participants": [str(bob.pk), str(bob.pk), str(alice.pk)]}, format="json"
        )
        assert response.status_code == 201
        assert len(response.json()["participants"]) == 2
        assert ConversationMembership.objects.filter(conversation_id=response.json()["conversation_id"]).count() == 2

    @pytest.mark.parametrize("participants", [[], "self-only"])
    def test_at_least_two_distinct_participants(self, alice, client_for, participants):
        if participants == "self-only":
            participants = [str(alice.pk)]
        response = client_for(alice).post(URL, {"participants": participants}, format="json")
        assert_error(response, 400, attr="participants")
        assert Conversation.objects.count() == 0

    def test_unknown_participant_is_a_400_and_nothing_is_created(self, alice, bob, client_for):
        response = client_for(alice).post(
            URL, {"participants": [str(bob.pk), str(uuid.uuid4())]}, format="json"
        )
        assert_error(response, 400, attr="participants")
        assert Conversation.objects.count() == 0

    def test_malformed_participant_id_is_a_400(self, alice, client_for):
        response = client_for(alice).post(URL, {"participants": ["not-a-uuid"]}, format="json")
        assert_error(response, 400, code="invalid")
        assert Conversation.objects.count() == 0

    def test_inactive_user_cannot_be_added(self, alice, client_for):
        gone = UserFactory(is_active=False)
        response = client_for(alice).post(URL, {"participants": [str(gone.pk)]}, format="json")
        assert_error(response, 400, attr="participants")

    @pytest.mark.parametrize("body", ["", "   ", None])
    def test_every_nested_message_needs_a_non_blank_body(self, alice, bob, client_for, body):
        payload = {"participants": [str(bob.pk)], "messages": [{"message_body": "fine"}, {"message_body": body}]}
        response = client_for(alice).post(URL, payload, format="json")
        assert_error(response, 400, attr="messages.1.message_body")
        assert Conversation.objects.count() == 0
        assert Message.objects.count() == 0

    def test_nested_message_sender_in_payload_is_ignored(self, alice, bob, client_for):
        payload = {"participants": [str(bob.pk)], "messages": [{"message_body": "x", "sender": str(bob.pk)}]}
        response = client_for(alice).post(URL, payload, format="json")
        assert response.status_code == 201
        assert response.json()["last_message"]["sender"]["user_id"] == str(alice.pk)

    def test_too_many_nested_messages_is_a_400(self, alice, bob, client_for):
        payload = {"participants": [str(bob.pk)], "messages": [{"message_body": "x"}] * 51}
        assert_error(client_for(alice).post(URL, payload, format="json"), 400, attr="messages")

    def test_anonymous_cannot_create(self, api, bob):
        assert_error(api.post(URL, {"participants": [str(bob.pk)]}, format="json"), 401)


class TestVisibility:
    def test_list_shows_only_my_conversations(self, alice, bob, carol, client_for):
        mine = make_conversation(alice, bob)
        make_conversation(bob, carol)
        response = client_for(alice).get(URL)
        assert response.status_code == 200
        assert ids(response.json()["results"]) == [str(mine.pk)]
        assert response.json()["count"] == 1

    def test_outsider_gets_404_for_conversation_and_its_messages(self, conversation, mallory, client_for):
        client = client_for(mallory)
        assert_error(client.get(f"{URL}{conversation.pk}/"), 404, code="not_found")
        assert_error(client.get(f"{URL}{conversation.pk}/messages/"), 404)
        message = conversation.messages.first()
        assert_error(client.get(f"{URL}{conversation.pk}/messages/{message.pk}/"), 404)

    def test_outsider_404_is_indistinguishable_from_a_missing_conversation(self, conversation, mallory, client_for):
        client = client_for(mallory)
        real = client.get(f"{URL}{conversation.pk}/")
        missing = client.get(f"{URL}{uuid.uuid4()}/")
        assert real.status_code == missing.status_code == 404
        assert real.json() == missing.json()

    def test_participant_sees_detail_with_counts_and_last_message(self, conversation, bob, client_for):
        response = client_for(bob).get(f"{URL}{conversation.pk}/")
        assert response.status_code == 200
        body = response.json()
        assert body["message_count"] == 2
        assert body["last_message"]["message_body"] == "second"
        assert set(body) == {
            "conversation_id", "title", "description", "avatar", "participants", "participant_count", "role",
            "created_by", "created_at", "last_activity_at", "message_count", "last_message", "unread_count",
            "unread_mentions",
        }
        assert set(body["participants"][0]) == {"user_id", "first_name", "last_name", "role"}

    def test_anonymous_gets_401(self, api, conversation):
        assert_error(api.get(URL), 401)
        assert_error(api.get(f"{URL}{conversation.pk}/"), 401)


class TestListing:
    def test_list_rows_are_exactly_what_the_conversation_serializer_gives(self, alice, bob, carol, client_for):
        """The inbox builds its JSON from value rows (a fast path); it must match the serializer's."""

        dave = UserFactory(first_name="Áron", last_name="O'Brien")
        plain = make_conversation(alice, bob)  # no messages: last_message null
        group = make_conversation(bob, alice, carol, dave, messages=("first",))
        first = group.messages.get()
        send(group, carol, "a reply", parent_message_id=first.pk, client_id="retry-1")
        edited = send(make_conversation(alice, carol), alice, "to edit")
        services.message_edit(message=edited, actor=alice, message_body="edited ✓")
        deleted = send(make_conversation(dave, alice), dave, "to delete")
        services.message_delete(message=deleted, actor=dave)
        orphan = make_conversation(carol, alice, bob)  # its creator's account goes: created_by null
        send(orphan, alice, "still here")
        services.conversation_remove_participant(conversation=orphan, actor=carol, user_id=carol.pk)
        User.objects.filter(pk=carol.pk).update(is_active=False)
        orphan.created_by = None
        orphan.save(update_fields=["created_by"])

        response = client_for(alice).get(URL)
        assert response.status_code == 200
        expected = [ConversationSerializer(c).data for c in selectors.conversation_list_for_user(user=alice)]
        assert response.data["count"] == len(expected) == 5
        assert str(plain.pk) in {c["conversation_id"] for c in expected}
        # Byte for byte: same keys in the same order, same formats of ids, times and nulls.
        assert JSONRenderer().render(response.data["results"]) == JSONRenderer().render(expected)

    def test_newest_activity_first(self, alice, bob, carol, client_for):
        old = make_conversation(alice, bob)
        new = make_conversation(alice, carol)
        assert ids(client_for(alice).get(URL).json()["results"]) == [str(new.pk), str(old.pk)]
        send(old, bob, "bump")
        assert ids(client_for(alice).get(URL).json()["results"]) == [str(old.pk), str(new.pk)]

    def test_filter_by_participant(self, alice, bob, carol, client_for):
        with_bob = make_conversation(alice, bob)
        make_conversation(alice, carol)
        response = client_for(alice).get(URL, {"participant": str(bob.pk)})
        assert ids(response.json()["results"]) == [str(with_bob.pk)]

    def test_filter_by_created_time(self, alice, bob, carol, client_for):
        old = make_conversation(alice, bob)
        Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
        new = make_conversation(alice, carol)
        cutoff = (timezone.now() - timedelta(days=1)).isoformat()
        client = client_for(alice)
        assert ids(client.get(URL, {"created_after": cutoff}).json()["results"]) == [str(new.pk)]
        assert ids(client.get(URL, {"created_before": cutoff}).json()["results"]) == [str(old.pk)]

    def test_bad_filter_values_are_400(self, alice, client_for):
        assert_error(client_for(alice).get(URL, {"participant": "nope"}), 400, attr="participant")
        assert_error(client_for(alice).get(URL, {"created_after": "yesterday"}), 400, attr="created_after")

    def test_search_by_participant_name_or_email_without_duplicates(self, alice, bob, carol, client_for):
        group = make_conversation(alice, bob, carol)
        pair = make_conversation(alice, bob)
        client = client_for(alice)
        found = ids(client.get(URL, {"search": "carol"}).json()["results"])
        assert found == [str(group.pk)]
        found = ids(client.get(URL, {"search": bob.email.upper()}).json()["results"])
        assert sorted(found) == sorted([str(group.pk), str(pair.pk)])
        # "a" matches several participants of each conversation; each is listed once.
        response = client.get(URL, {"search": "a"})
        assert response.json()["count"] == 2

    def test_ordering_by_created_at(self, alice, bob, carol, client_for):
        first = make_conversation(alice, bob)
        second = make_conversation(alice, carol)
        send(first, alice)
        response = client_for(alice).get(URL, {"ordering": "created_at"})
        assert ids(response.json()["results"]) == [str(first.pk), str(second.pk)]
        response = client_for(alice).get(URL, {"ordering": "-created_at"})
        assert ids(response.json()["results"]) == [str(second.pk), str(first.pk)]

    def test_pagination_shape_default_size_and_cap(self, alice, client_for):
        others = UserFactory.create_batch(25)
        for other in others:
            make_conversation(alice, other)
        client = client_for(alice)
        body = client.get(URL).json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == 25 and len(body["results"]) == 20
        assert body["next"] is not None and body["previous"] is None
        page2 = client.get(URL, {"page": 2}).json()
        assert len(page2["results"]) == 5 and page2["next"] is None
        assert len(client.get(URL, {"page_size": 7}).json()["results"]) == 7


def test_conversation_search_does_not_match_partial_emails(alice, bob, client_for):
    """Co-participants see no emails, so search must not reveal one letter by letter."""
    make_conversation(alice, bob)
    prefix = bob.email.split("@")[0][:4]
    assert client_for(alice).get(URL, {"search": f"{prefix}"}).json()["count"] == 0
    assert client_for(alice).get(URL, {"search": bob.email}).json()["count"] == 1
