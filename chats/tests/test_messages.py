"""Messages through the nested and flat endpoints: who may send and read, filters, search, ordering."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from chats import services
from chats.models import MESSAGE_BODY_MAX_LENGTH, Conversation, Message
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db
FLAT = "/api/messages/"


def nested(conversation, message=None):
    url = f"/api/conversations/{conversation.pk}/messages/"
    return f"{url}{message.pk}/" if message else url


def bodies(response):
    assert response.status_code == 200, response.content
    return [m["message_body"] for m in response.json()["results"]]


class TestSend:
    def test_nested_send_returns_the_message_and_updates_the_conversation(self, conversation, bob, client_for):
        response = client_for(bob).post(nested(conversation), {"message_body": "  hi alice  "}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == {
            "message_id", "conversation", "sender", "message_body", "sent_at",
            "edited_at", "is_deleted", "parent_message", "client_id", "attachments", "reactions", "mentions",
        }
        assert body["conversation"] == str(conversation.pk)
        assert body["sender"] == {"user_id": str(bob.pk), "first_name": "Bob", "last_name": "Baker"}
        assert body["message_body"] == "hi alice"  # surrounding whitespace is trimmed
        conversation.refresh_from_db()
        assert conversation.message_count == 3
        assert str(conversation.last_message_id) == body["message_id"]
        assert conversation.last_activity_at.isoformat().replace("+00:00", "Z") == body["sent_at"]

    def test_flat_send(self, conversation, bob, client_for):
        response = client_for(bob).post(
            FLAT, {"conversation": str(conversation.pk), "message_body": "flat"}, format="json"
        )
        assert response.status_code == 201, response.content
        assert Message.objects.get(pk=response.json()["message_id"]).conversation_id == conversation.pk

    def test_sender_is_always_the_authenticated_user(self, conversation, alice, bob, client_for):
        client = client_for(bob)
        payload = {"message_body": "spoof", "sender": str(alice.pk), "sender_id": str(alice.pk)}
        response = client.post(nested(conversation), payload, format="json")
        assert response.json()["sender"]["user_id"] == str(bob.pk)
        response = client.post(FLAT, {**payload, "conversation": str(conversation.pk)}, format="json")
        assert response.json()["sender"]["user_id"] == str(bob.pk)
        assert not Message.objects.filter(message_body="spoof", sender=alice).exists()

    def test_client_cannot_choose_ids_or_timestamps(self, conversation, bob, client_for):
        chosen_id, past = str(uuid.uuid4()), "2001-01-01T00:00:00Z"
        response = client_for(bob).post(
            nested(conversation), {"message_body": "x", "message_id": chosen_id, "sent_at": past}, format="json"
        )
        assert response.json()["message_id"] != chosen_id
        assert not response.json()["sent_at"].startswith("2001")

    def test_outsider_cannot_post_nested(self, conversation, mallory, client_for):
        response = client_for(mallory).post(nested(conversation), {"message_body": "intrusion"}, format="json")
        assert_error(response, 404)
        assert not Message.objects.filter(message_body="intrusion").exists()

    def test_outsider_cannot_post_flat_and_learns_nothing(self, conversation, mallory, client_for):
        client = client_for(mallory)
        real = client.post(FLAT, {"conversation": str(conversation.pk), "message_body": "intrusion"}, format="json")
        missing = client.post(FLAT, {"conversation": str(uuid.uuid4()), "message_body": "intrusion"}, format="json")
        assert_error(real, 400, attr="conversation")
        assert real.json() == missing.json()
        assert not Message.objects.filter(message_body="intrusion").exists()

    @pytest.mark.parametrize("body", ["", "   \n\t", None])
    def test_blank_body_is_a_400(self, conversation, alice, client_for, body):
        response = client_for(alice).post(nested(conversation), {"message_body": body}, format="json")
        assert_error(response, 400, attr="message_body")

    def test_body_length_limit(self, conversation, alice, client_for):
        client = client_for(alice)
        ok = client.post(nested(conversation), {"message_body": "x" * MESSAGE_BODY_MAX_LENGTH}, format="json")
        assert ok.status_code == 201
        too_long = client.post(
            nested(conversation), {"message_body": "x" * (MESSAGE_BODY_MAX_LENGTH + 1)}, format="json"
        )
        assert_error(too_long, 400, code="max_length", attr="message_body")

    def test_unicode_round_trips(self, conversation, alice, client_for):
        text = "héllo 👋 你好 — ok"
        response = client_for(alice).post(nested(conversation), {"message_body": text}, format="json")
        assert response.status_code == 201
        assert Message.objects.get(pk=response.json()["message_id"]).message_body == text

    def test_flat_send_needs_a_conversation(self, alice, client_for):
        assert_error(client_for(alice).post(FLAT, {"message_body": "x"}, format="json"), 400, attr="conversation")


class TestRead:
    def test_nested_list_newest_first(self, conversation, bob, client_for):
        send(conversation, bob, "third")
        assert bodies(client_for(bob).get(nested(conversation))) == ["third", "second", "first"]

    def test_flat_list_covers_only_my_conversations(self, conversation, alice, bob, carol, client_for):
        other = make_conversation(bob, carol, messages=("private",))
        assert bodies(client_for(alice).get(FLAT)) == ["second", "first"]
        assert "private" in bodies(client_for(bob).get(FLAT))
        assert bodies(client_for(carol).get(FLAT)) == ["private"]
        assert other.message_count == 1

    @pytest.mark.django_db(transaction=True)  # it searches: MariaDB's FULLTEXT index shows only committed rows
    def test_flat_count_is_every_message_of_mine_tombstones_included(self, conversation, alice, bob, carol, client_for):
        make_conversation(bob, carol, messages=("private",))
        mine = make_conversation(alice, carol, messages=("x", "yonder"))
        services.message_delete(message=mine.messages.order_by("sent_at").first(), actor=alice)
        body = client_for(alice).get(FLAT, {"page_size": 1}).json()
        assert body["count"] == 4 == Message.objects.filter(conversation__in=[conversation, mine]).count()
        assert client_for(alice).get(FLAT, {"search": "yonder"}).json()["count"] == 1  # filtered: counted

    def test_retrieve_nested_and_flat(self, conversation, bob, client_for):
        message = conversation.messages.order_by("sent_at").first()
        client = client_for(bob)
        for url in (nested(conversation, message), f"{FLAT}{message.pk}/"):
            response = client.get(url)
            assert response.status_code == 200
            assert response.json()["message_body"] == "first"

    def test_outsider_cannot_read_a_message_by_id(self, conversation, mallory, client_for):
        message = conversation.messages.first()
        assert_error(client_for(mallory).get(f"{FLAT}{message.pk}/"), 404)
        assert bodies(client_for(mallory).get(FLAT, {"conversation": str(conversation.pk)})) == []

    def test_message_is_only_found_under_its_own_conversation(self, conversation, alice, carol, client_for):
        other = make_conversation(alice, carol, messages=("elsewhere",))
        message = conversation.messages.first()
        assert_error(client_for(alice).get(nested(other, message)), 404)

    def test_message_cannot_be_moved_or_rewritten(self, conversation, alice, carol, client_for):
        other = make_conversation(alice, carol)
        message = conversation.messages.first()
        client = client_for(alice)
        assert_error(client.put(f"{FLAT}{message.pk}/", {"conversation": str(other.pk)}, format="json"), 405)
        response = client.patch(f"{FLAT}{message.pk}/", {"conversation": str(other.pk)}, format="json")
        assert_error(response, 400, attr="message_body")  # only the text can change
        assert Message.objects.get(pk=message.pk).conversation_id == conversation.pk


def test_timelines_render_exactly_what_the_message_serializer_gives(conversation, alice, bob, client_for):
    """Timelines build their JSON from value rows (a fast path); it must match the serializer's."""
    from rest_framework.renderers import JSONRenderer

    from chats.serializers import MessageSerializer

    first = conversation.messages.order_by("sent_at").first()
    send(conversation, bob, "a reply ✓", parent_message_id=first.pk, client_id="retry-1")
    edited = send(conversation, alice, "to edit")
    services.message_edit(message=edited, actor=alice, message_body="edited")
    services.message_delete(message=send(conversation, bob, "to delete"), actor=bob)
    expected = [MessageSerializer(m).data for m in conversation.messages.select_related("sender")]
    assert len(expected) == 5
    client = client_for(alice)
    for url, params, want in [
        (nested(conversation), {}, expected),
        (FLAT, {}, expected),
        (nested(conversation), {"page_size": 2, "page": 2}, expected[2:4]),
        (nested(conversation), {"before": expected[1]["message_id"]}, expected[2:]),
        (FLAT, {"after": expected[3]["message_id"], "conversation": str(conversation.pk)}, expected[:3][::-1]),
    ]:
        response = client.get(url, params)
        assert response.status_code == 200, response.content
        # Byte for byte: same keys in the same order, same formats of ids, times and nulls.
        assert JSONRenderer().render(response.data["results"]) == JSONRenderer().render(want), (url, params)


def test_send_responses_and_events_render_exactly_what_the_message_serializer_gives(conversation, alice, bob):
    """The send response and message events build their JSON without a serializer (a fast path)."""
    from rest_framework.renderers import JSONRenderer

    from chats.serializers import MessageSerializer, message_representation

    first = conversation.messages.order_by("sent_at").first()
    send(conversation, bob, "a reply ✓", parent_message_id=first.pk, client_id="retry-1")
    edited = send(conversation, alice, "to edit")
    services.message_edit(message=edited, actor=alice, message_body="edited")
    services.message_delete(message=send(conversation, bob, "to delete"), actor=bob)
    messages = list(conversation.messages.select_related("sender"))
    assert len(messages) == 5
    for message in messages:
        fast = message_representation(message)
        assert JSONRenderer().render(fast) == JSONRenderer().render(MessageSerializer(message).data)
        assert all(value is None or isinstance(value, (str, bool, dict, list)) for value in fast.values())


def test_flat_list_pages_merge_conversations_exactly_as_one_sort_would(alice, client_for):
    """
    The unfiltered flat list takes each page from the most recently active conversations'
    own timelines (no sort of the whole history); it must give exactly the global order,
    ties on sent_at across conversations included, on every page the merge serves.
    """
    import random

    from chats.models import User
    from chats.tests.factories import UserFactory

    rng = random.Random(7)
    others = UserFactory.create_batch(6)
    conversations = [make_conversation(alice, other) for other in others]
    conversations.append(make_conversation(alice, *others[:3]))  # a group
    make_conversation(others[0], others[1], messages=("not alice's",))
    for number in range(90):  # uneven: some conversations much busier than others
        conversation = rng.choice(conversations[:3] * 4 + conversations)
        send(conversation, rng.choice([alice, *conversation.participants.exclude(pk=alice.pk)]), f"m{number}")
    # Messages of different conversations at the very same instant: the id settles the order.
    tied = Message.objects.filter(conversation__in=conversations[3:5]).order_by("-sent_at")[:2]
    instant = Message.objects.order_by("-sent_at").values_list("sent_at", flat=True).first()
    Message.objects.filter(pk__in=[m.pk for m in tied]).update(sent_at=instant)
    for conversation in conversations[3:5]:
        newest = conversation.messages.order_by("-sent_at", "-message_id").first()
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=newest.sent_at)
    assert User.objects.count() == 7

    everything = [
        str(pk) for pk in Message.objects.filter(conversation__in=conversations)
        .order_by("-sent_at", "-message_id").values_list("pk", flat=True)
    ]
    client = client_for(alice)
    for size in (1, 7, 20, 50):
        for page in range(1, 200 // size + 1):
            response = client.get(FLAT, {"page_size": size, "page": page})
            if page > 1 and (page - 1) * size >= len(everything):
                assert response.status_code == 404
                break
            body = response.json()
            assert body["count"] == len(everything)
            got = [m["message_id"] for m in body["results"]]
            assert got == everything[(page - 1) * size:page * size], (size, page)


class TestFilters:
    def test_filter_by_conversation_and_sender(self, conversation, alice, bob, carol, client_for):
        send(conversation, bob, "from bob")
        other = make_conversation(alice, carol, messages=("to carol",))
        client = client_for(alice)
        assert bodies(client.get(FLAT, {"conversation": str(other.pk)})) == ["to carol"]
        assert bodies(client.get(FLAT, {"sender": str(bob.pk)})) == ["from bob"]
        assert bodies(client.get(nested(conversation), {"sender": str(alice.pk)})) == ["second", "first"]

    def test_filter_by_sent_at_range(self, conversation, alice, client_for):
        old = conversation.messages.get(message_body="first")
        Message.objects.filter(pk=old.pk).update(sent_at=timezone.now() - timedelta(days=3))
        cutoff = (timezone.now() - timedelta(days=1)).isoformat()
        client = client_for(alice)
        assert bodies(client.get(FLAT, {"sent_after": cutoff})) == ["second"]
        assert bodies(client.get(FLAT, {"sent_before": cutoff})) == ["first"]

    @pytest.mark.django_db(transaction=True)  # MariaDB's FULLTEXT index shows only committed rows
    def test_search_in_body_is_limited_to_my_conversations(self, conversation, alice, bob, carol, client_for):
        send(conversation, bob, "Lunch at noon?")
        make_conversation(bob, carol, messages=("secret lunch plans",))
        assert bodies(client_for(alice).get(FLAT, {"search": "LUNCH"})) == ["Lunch at noon?"]
        assert len(bodies(client_for(bob).get(FLAT, {"search": "lunch"}))) == 2

    def test_ordering_by_sent_at(self, conversation, alice, client_for):
        client = client_for(alice)
        assert bodies(client.get(FLAT, {"ordering": "sent_at"})) == ["first", "second"]
        assert bodies(client.get(nested(conversation), {"ordering": "-sent_at"})) == ["second", "first"]

    def test_unknown_ordering_field_is_ignored_not_an_error(self, conversation, alice, client_for):
        assert bodies(client_for(alice).get(FLAT, {"ordering": "message_body"})) == ["second", "first"]


def test_conversation_counts_stay_exact_over_many_sends(conversation, alice, bob):
    for i in range(10):
        send(conversation, alice if i % 2 else bob, f"m{i}")
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert conversation.message_count == 12 == conversation.messages.count()
    assert conversation.last_message.message_body == "m9"
