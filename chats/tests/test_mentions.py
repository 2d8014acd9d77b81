"""
Mentions (chats/services_mentions.py, docs/mentions.md): `mentions` and `@[user_id]` on sends and
edits, MessageMention rows, each member's exact `unread_mentions`, `?mentions_me=true`, events.
"""
import pytest

from chats import services
from chats.models import MAX_MENTIONS, ConversationMembership, Event, MessageMention
from chats.services_mentions import unread_mentions_count
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(alice, bob, carol):
    return make_conversation(alice, bob, carol)


def unread_mentions(conversation, user) -> int:
    return ConversationMembership.objects.get(conversation=conversation, user=user).unread_mentions


def assert_exact(conversation):
    """Every member's stored count equals a recount from the mention rows and their marker."""
    for membership in ConversationMembership.objects.filter(conversation=conversation):
        assert membership.unread_mentions == unread_mentions_count(
            conversation_id=conversation.pk, user_id=membership.user_id, after=membership.last_read_at
        ), membership.user_id


def post(client, conversation, body="hi", **data):
    return client.post(
        f"/api/conversations/{conversation.pk}/messages/", {"message_body": body, **data}, format="json"
    )


class TestSend:
    def test_listed_mentions_are_shown_and_counted(self, group, alice, bob, carol, client_for):
        response = post(client_for(alice), group, mentions=[str(bob.pk), str(bob.pk)])
        assert response.status_code == 201, response.content
        assert response.json()["mentions"] == [str(bob.pk)]
        assert unread_mentions(group, bob) == 1
        assert unread_mentions(group, carol) == 0
        assert MessageMention.objects.filter(user=bob, conversation=group).count() == 1

    def test_inline_tokens_are_resolved_in_order_with_the_listed_ones(self, group, alice, bob, carol, client_for):
        body = f"@[{carol.pk}] and @[{str(bob.pk).upper()}], also @[{carol.pk}]; not @[bob] nor @{bob.pk}"
        response = post(client_for(alice), group, body, mentions=[str(bob.pk)])
        assert response.json()["mentions"] == [str(bob.pk), str(carol.pk)]
        assert response.json()["message_body"] == body  # the text keeps its tokens
        assert (unread_mentions(group, bob), unread_mentions(group, carol)) == (1, 1)

    def test_mentioning_yourself_is_ignored(self, group, alice, client_for):
        response = post(client_for(alice), group, f"note to @[{alice.pk}]", mentions=[str(alice.pk)])
        assert response.json()["mentions"] == []
        assert unread_mentions(group, alice) == 0

    @pytest.mark.parametrize("how", ["listed", "inline"])
    def test_a_non_participant_is_a_400_like_an_unknown_id(self, group, alice, mallory, client_for, how):
        for stranger in (mallory.pk, "7e1b7a3e-0000-4000-8000-000000000000"):
            data = {"mentions": [str(stranger)]} if how == "listed" else {}
            body = f"hey @[{stranger}]" if how == "inline" else "hey"
            response = post(client_for(alice), group, body, **data)
            error = assert_error(response, 400, "not_participant", "mentions")
            assert str(stranger) in error["errors"][0]["detail"]
        assert not group.messages.exists()

    def test_mentions_are_bounded(self, alice, client_for):
        others = UserFactory.create_batch(MAX_MENTIONS + 1)
        conversation = make_conversation(alice, *others)
        ids = [str(user.pk) for user in others]
        assert_error(post(client_for(alice), conversation, mentions=ids), 400, "max_length", "mentions")
        body = " ".join(f"@[{pk}]" for pk in ids)
        assert_error(post(client_for(alice), conversation, body[:4000]), 400, "max_length", "mentions")

    def test_the_flat_endpoint_takes_mentions_too(self, group, alice, bob, client_for):
        response = client_for(alice).post(
            "/api/messages/", {"conversation": str(group.pk), "message_body": "x", "mentions": [str(bob.pk)]},
            format="json",
        )
        assert response.status_code == 201 and response.json()["mentions"] == [str(bob.pk)]

    def test_initial_messages_resolve_their_tokens(self, alice, bob, client_for):
        response = client_for(alice).post(
            "/api/conversations/",
            {"participants": [str(bob.pk)], "messages": [{"message_body": f"hi @[{bob.pk}]"}, {"message_body": "x"}]},
            format="json",
        )
        assert response.status_code == 201, response.content
        conversation = ConversationMembership.objects.get(user=bob).conversation
        assert unread_mentions(conversation, bob) == 1
        assert_exact(conversation)

    def test_the_created_event_carries_the_mentions(self, group, alice, bob, carol):
        send(group, alice, f"@[{bob.pk}]")
        frame = Event.objects.filter(user=carol).order_by("-event_id").first().frame
        assert frame["type"] == "message.created"
        assert frame["message"]["mentions"] == [str(bob.pk)]


class TestCounts:
    def test_me_and_the_conversation_list_show_unread_mentions(self, group, alice, bob, client_for):
        other = make_conversation(alice, bob)
        send(group, alice, "a", mention_ids=[bob.pk])
        send(group, alice, "b", mention_ids=[bob.pk])
        send(other, alice, "c", mention_ids=[bob.pk])
        client = client_for(bob)
        assert client.get("/api/users/me/").json()["unread_mentions"] == 3
        rows = {row["conversation_id"]: row for row in client.get("/api/conversations/").json()["results"]}
        assert rows[str(group.pk)]["unread_mentions"] == 2
        assert rows[str(other.pk)]["unread_mentions"] == 1
        assert rows[str(group.pk)]["last_message"]["mentions"] == [str(bob.pk)]
        assert client.get(f"/api/conversations/{group.pk}/").json()["unread_mentions"] == 2

    def test_reading_recounts(self, group, alice, bob, client_for):
        first = send(group, alice, "a", mention_ids=[bob.pk])
        send(group, alice, "b", mention_ids=[bob.pk])
        response = client_for(bob).post(f"/api/conversations/{group.pk}/read/", {"message_id": str(first.pk)})
        assert response.json()["unread_mentions"] == 1
        assert unread_mentions(group, bob) == 1
        read = Event.objects.filter(user=bob).order_by("-event_id").first().frame
        assert read["type"] == "conversation.read" and read["unread_mentions"] == 1
        client_for(bob).post(f"/api/conversations/{group.pk}/read/", {})
        assert unread_mentions(group, bob) == 0
        assert_exact(group)

    def test_deleting_an_unread_mention_takes_it_off(self, group, alice, bob, carol):
        message = send(group, alice, "a", mention_ids=[bob.pk, carol.pk])
        services.conversation_mark_read(conversation=group, user=carol)
        services.message_delete(message=message, actor=alice)
        assert (unread_mentions(group, bob), unread_mentions(group, carol)) == (0, 0)
        message.refresh_from_db()
        assert message.mentions == [] and not MessageMention.objects.filter(message=message).exists()
        assert_exact(group)

    def test_edits_resolve_mentions_again(self, group, alice, bob, carol, client_for):
        message = send(group, alice, f"hi @[{bob.pk}]", mention_ids=[carol.pk])
        client = client_for(alice)
        url = f"/api/messages/{message.pk}/"
        # Listed mentions are kept when the edit lists none; the text's tokens follow the text.
        response = client.patch(url, {"message_body": "hi all"}, format="json")
        assert response.json()["mentions"] == [str(carol.pk)]
        assert (unread_mentions(group, bob), unread_mentions(group, carol)) == (0, 1)
        frame = Event.objects.filter(user=bob).order_by("-event_id").first().frame
        assert frame["type"] == "message.updated" and frame["message"]["mentions"] == [str(carol.pk)]
        # An edit that lists mentions replaces the listed ones.
        response = client.patch(url, {"message_body": "hi all", "mentions": [str(bob.pk)]}, format="json")
        assert response.json()["mentions"] == [str(bob.pk)]
        assert (unread_mentions(group, bob), unread_mentions(group, carol)) == (1, 0)
        assert_exact(group)

    def test_an_edit_does_not_count_a_mention_already_read(self, group, alice, bob):
        message = send(group, alice, "hi")
        services.conversation_mark_read(conversation=group, user=bob)
        services.message_edit(message=message, actor=alice, message_body=f"hi @[{bob.pk}]")
        assert unread_mentions(group, bob) == 0
        assert_exact(group)

    def test_an_edit_to_a_stranger_is_a_400(self, group, alice, mallory, client_for):
        message = send(group, alice, "hi")
        response = client_for(alice).patch(
            f"/api/messages/{message.pk}/", {"message_body": f"hi @[{mallory.pk}]"}, format="json"
        )
        assert_error(response, 400, "not_participant", "mentions")

    def test_a_kept_mention_of_someone_who_left_is_dropped(self, group, alice, carol):
        message = send(group, alice, "hi", mention_ids=[carol.pk])
        services.conversation_remove_participant(conversation=group, actor=carol, user_id=carol.pk)
        edited = services.message_edit(message=message, actor=alice, message_body="hello")
        assert edited.mentions == []


class TestMentionsMe:
    def test_filters_flat_and_nested_lists(self, group, alice, bob, carol, client_for):
        other = make_conversation(alice, bob)
        mine = [send(group, alice, "a", mention_ids=[bob.pk]), send(other, alice, "b", mention_ids=[bob.pk])]
        send(group, alice, "c", mention_ids=[carol.pk])
        send(group, alice, "d")
        client = client_for(bob)
        flat = client.get("/api/messages/", {"mentions_me": "true"}).json()
        assert [m["message_id"] for m in flat["results"]] == [str(mine[1].pk), str(mine[0].pk)]
        nested = client.get(f"/api/conversations/{group.pk}/messages/", {"mentions_me": "true"}).json()
        assert [m["message_id"] for m in nested["results"]] == [str(mine[0].pk)]
        only_group = client.get("/api/messages/", {"mentions_me": "true", "conversation": str(group.pk)}).json()
        assert only_group["count"] == 1
        assert client.get("/api/messages/", {"mentions_me": "false"}).json()["count"] == 4 + 0

    def test_a_bad_value_is_a_400(self, group, bob, client_for):
        assert_error(client_for(bob).get("/api/messages/", {"mentions_me": "maybe"}), 400, attr="mentions_me")


def test_message_lists_with_mentions_run_the_same_queries(alice, bob, carol, client_for, django_assert_num_queries):
    """Mentions come with each message's row (Message.mentions): no query per message."""
    conversation = make_conversation(alice, bob, carol)
    for i in range(20):
        send(conversation, alice, f"m{i}", mention_ids=[bob.pk, carol.pk])
    client = client_for(bob)
    for page_size in (1, 20):
        with django_assert_num_queries(3):  # access check, page ids, rows
            response = client.get(f"/api/conversations/{conversation.pk}/messages/", {"page_size": page_size})
        assert response.json()["results"][0]["mentions"] == [str(bob.pk), str(carol.pk)]
        # access check, count (not when the page holds all 20), page ids (mention index), rows
        with django_assert_num_queries(4 if page_size == 1 else 3):
            response = client.get(
                f"/api/conversations/{conversation.pk}/messages/", {"page_size": page_size, "mentions_me": "true"}
            )
        assert len(response.json()["results"]) == page_size
