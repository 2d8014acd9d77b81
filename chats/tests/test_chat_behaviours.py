"""
Chat behaviours proved through the API: membership changes, direct (two-person)
conversations, inbox order, read state and unread counts, editing and deleting
messages, replies, safe retries (client_id), keyset timelines and search scope.
Each test's name (and docstring where useful) states the rule it proves.
"""
import uuid
from urllib.parse import parse_qs, urlparse

import pytest

from chats.models import MESSAGE_BODY_MAX_LENGTH, Conversation, ConversationMembership, Message, MessageEdit
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db
CONVERSATIONS = "/api/conversations/"
FLAT = "/api/messages/"
ME = "/api/users/me/"


# --- helpers ---------------------------------------------------------------------
def detail(conversation) -> str:
    return f"{CONVERSATIONS}{conversation.pk}/"


def participants_url(conversation, user=None) -> str:
    url = f"{detail(conversation)}participants/"
    return f"{url}{user.pk}/" if user is not None else url


def read_url(conversation) -> str:
    return f"{detail(conversation)}read/"


def nested(conversation, message=None) -> str:
    url = f"{detail(conversation)}messages/"
    return f"{url}{message.pk}/" if message is not None else url


def flat(message) -> str:
    return f"{FLAT}{message.pk}/"


def history(message) -> str:
    return f"{flat(message)}history/"


def ok(response, status_code: int = 200) -> dict:
    assert response.status_code == status_code, response.content
    return response.json()


def result_ids(body: dict, key: str = "message_id") -> list[str]:
    return [r[key] for r in body["results"]]


def ids_of(*objects) -> list[str]:
    return [str(o.pk) for o in objects]


def participant_ids(body: dict) -> set[str]:
    return {p["user_id"] for p in body["participants"]}


def unread_in_list(client, conversation) -> int:
    """unread_count of one conversation as the list endpoint shows it."""
    results = ok(client.get(CONVERSATIONS, {"page_size": 100}))["results"]
    (row,) = [r for r in results if r["conversation_id"] == str(conversation.pk)]
    return row["unread_count"]


def unread_everywhere(client, conversation) -> int:
    """unread_count as list and detail show it; both must agree."""
    in_detail = ok(client.get(detail(conversation)))["unread_count"]
    assert unread_in_list(client, conversation) == in_detail
    return in_detail


def unread_total(client) -> int:
    return ok(client.get(ME))["unread_count"]


def query_of(link: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(link).query).items()}


# --- membership --------------------------------------------------------------------
class TestMembership:
    def test_any_participant_can_add_someone_201_and_they_gain_access(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, messages=("hi",))
        # Bob is not the creator, yet may add.
        body = ok(client_for(bob).post(participants_url(conversation), {"user_id": str(carol.pk)}, format="json"), 201)
        assert participant_ids(body) == set(ids_of(alice, bob, carol))
        assert body["conversation_id"] == str(conversation.pk)
        carol_client = client_for(carol)
        assert ok(carol_client.get(detail(conversation)))["conversation_id"] == str(conversation.pk)
        assert [m["message_body"] for m in ok(carol_client.get(nested(conversation)))["results"]] == ["hi"]

    def test_adding_someone_already_in_is_200_and_changes_nothing(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        body = ok(client_for(alice).post(participants_url(conversation), {"user_id": str(bob.pk)}, format="json"), 200)
        assert participant_ids(body) == set(ids_of(alice, bob))
        assert ConversationMembership.objects.filter(conversation=conversation).count() == 2

    def test_adding_an_unknown_user_is_400_on_user_id(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        response = client_for(alice).post(participants_url(conversation), {"user_id": str(uuid.uuid4())}, format="json")
        assert_error(response, 400, attr="user_id")
        assert ConversationMembership.objects.filter(conversation=conversation).count() == 2

    def test_an_outsider_cannot_add_anyone_404(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob)
        response = client_for(mallory).post(
            participants_url(conversation), {"user_id": str(mallory.pk)}, format="json"
        )
        assert_error(response, 404)
        assert not ConversationMembership.objects.filter(conversation=conversation, user=mallory).exists()

    def test_a_participant_may_leave_204(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol)
        response = client_for(bob).delete(participants_url(conversation, bob))
        assert response.status_code == 204, response.content
        assert participant_ids(ok(client_for(alice).get(detail(conversation)))) == set(ids_of(alice, carol))

    def test_the_creator_may_remove_others_204(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol)
        response = client_for(alice).delete(participants_url(conversation, carol))
        assert response.status_code == 204, response.content
        assert participant_ids(ok(client_for(alice).get(detail(conversation)))) == set(ids_of(alice, bob))

    def test_a_non_creator_removing_someone_else_is_403_in_the_error_shape(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob, carol)
        for target in (carol, alice):
            response = client_for(bob).delete(participants_url(conversation, target))
            assert_error(response, 403, code="permission_denied")
        assert ConversationMembership.objects.filter(conversation=conversation).count() == 3

    def test_removing_a_non_participant_is_404(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob)
        assert_error(client_for(alice).delete(participants_url(conversation, mallory)), 404)
        assert_error(client_for(alice).delete(f"{participants_url(conversation)}{uuid.uuid4()}/"), 404)

    @pytest.mark.parametrize("how", ["left", "removed"])
    def test_a_removed_or_departed_person_loses_all_access_at_once(self, alice, bob, carol, client_for, how):
        conversation = make_conversation(alice, bob, carol, messages=("before",))
        message = conversation.messages.get()
        carol_client = client_for(carol)
        assert ok(carol_client.get(detail(conversation)))  # access before
        remover = carol if how == "left" else alice
        assert client_for(remover).delete(participants_url(conversation, carol)).status_code == 204

        assert_error(carol_client.get(detail(conversation)), 404)
        assert_error(carol_client.get(nested(conversation)), 404)
        assert_error(carol_client.get(nested(conversation, message)), 404)
        assert_error(carol_client.get(flat(message)), 404)
        assert_error(carol_client.get(history(message)), 404)
        assert_error(carol_client.post(nested(conversation), {"message_body": "still here?"}, format="json"), 404)
        response = carol_client.post(
            FLAT, {"conversation": str(conversation.pk), "message_body": "still here?"}, format="json"
        )
        assert_error(response, 400, attr="conversation")
        assert not Message.objects.filter(message_body="still here?").exists()
        assert ok(carol_client.get(FLAT, {"conversation": str(conversation.pk)}))["results"] == []
        assert_error(carol_client.post(read_url(conversation), {}, format="json"), 404)
        # Gone from the participants others see, and from the person's own inbox.
        assert str(carol.pk) not in participant_ids(ok(client_for(alice).get(detail(conversation))))
        assert str(conversation.pk) not in result_ids(ok(carol_client.get(CONVERSATIONS)), "conversation_id")
        # The others carry on.
        assert ok(client_for(bob).post(nested(conversation), {"message_body": "after"}, format="json"), 201)


# --- direct (two-person) conversations --------------------------------------------
class TestDirectConversations:
    def test_same_two_people_get_the_existing_conversation_with_200(self, alice, bob, client_for):
        first = ok(client_for(alice).post(CONVERSATIONS, {"participants": [str(bob.pk)]}, format="json"), 201)
        again = ok(client_for(alice).post(CONVERSATIONS, {"participants": [str(bob.pk)]}, format="json"), 200)
        assert again["conversation_id"] == first["conversation_id"]
        assert Conversation.objects.count() == 1

    def test_either_person_creating_it_gets_the_same_one_and_messages_are_appended(self, alice, bob, client_for):
        first = ok(
            client_for(alice).post(
                CONVERSATIONS, {"participants": [str(bob.pk)], "messages": [{"message_body": "a1"}]}, format="json"
            ),
            201,
        )
        again = ok(
            client_for(bob).post(
                CONVERSATIONS,
                {"participants": [str(alice.pk)], "messages": [{"message_body": "b1"}, {"message_body": "b2"}]},
                format="json",
            ),
            200,
        )
        assert again["conversation_id"] == first["conversation_id"]
        assert again["message_count"] == 3
        assert again["last_message"]["message_body"] == "b2"
        assert again["last_message"]["sender"]["user_id"] == str(bob.pk)
        assert again["created_by"]["user_id"] == str(alice.pk)  # still Alice's conversation
        conversation = Conversation.objects.get()
        assert list(conversation.messages.order_by("sent_at").values_list("message_body", flat=True)) == [
            "a1", "b1", "b2",
        ]

    def test_groups_of_three_or_more_are_always_new(self, alice, bob, carol, client_for):
        client = client_for(alice)
        payload = {"participants": [str(bob.pk), str(carol.pk)]}
        first = ok(client.post(CONVERSATIONS, payload, format="json"), 201)
        second = ok(client.post(CONVERSATIONS, payload, format="json"), 201)
        assert first["conversation_id"] != second["conversation_id"]
        assert Conversation.objects.count() == 2

    def test_a_pair_inside_a_group_does_not_reuse_the_group(self, alice, bob, carol, client_for):
        group = make_conversation(alice, bob, carol)
        body = ok(client_for(alice).post(CONVERSATIONS, {"participants": [str(bob.pk)]}, format="json"), 201)
        assert body["conversation_id"] != str(group.pk)

    @pytest.mark.parametrize("change", ["add-then-remove", "leave"])
    def test_after_a_membership_change_the_pair_gets_a_new_conversation(self, alice, bob, carol, client_for, change):
        """Adding someone (even if they are removed again) or someone leaving unlinks the pair."""
        original = make_conversation(alice, bob)
        alice_client = client_for(alice)
        if change == "add-then-remove":
            ok(alice_client.post(participants_url(original), {"user_id": str(carol.pk)}, format="json"), 201)
            assert alice_client.delete(participants_url(original, carol)).status_code == 204
            # Exactly Alice and Bob again, but changed: no longer "the" pair conversation.
            assert participant_ids(ok(alice_client.get(detail(original)))) == set(ids_of(alice, bob))
        else:
            assert client_for(bob).delete(participants_url(original, bob)).status_code == 204
        body = ok(alice_client.post(CONVERSATIONS, {"participants": [str(bob.pk)]}, format="json"), 201)
        assert body["conversation_id"] != str(original.pk)
        # And the new one is now the pair's conversation.
        again = ok(client_for(bob).post(CONVERSATIONS, {"participants": [str(alice.pk)]}, format="json"), 200)
        assert again["conversation_id"] == body["conversation_id"]


# --- inbox order ----------------------------------------------------------------------
def test_conversation_list_is_ordered_by_latest_activity(alice, bob, carol, mallory, client_for):
    """Newest message first; a conversation without messages ranks by its creation time."""
    oldest = make_conversation(alice, bob)
    middle = make_conversation(alice, carol)
    newest = make_conversation(alice, mallory)
    client = client_for(alice)
    assert result_ids(ok(client.get(CONVERSATIONS)), "conversation_id") == ids_of(newest, middle, oldest)
    send(oldest, bob, "bump")
    assert result_ids(ok(client.get(CONVERSATIONS)), "conversation_id") == ids_of(oldest, newest, middle)
    send(middle, alice, "bump too")
    assert result_ids(ok(client.get(CONVERSATIONS)), "conversation_id") == ids_of(middle, oldest, newest)
    # A message sent through the API moves its conversation to the top as well.
    ok(client.post(nested(newest), {"message_body": "api bump"}, format="json"), 201)
    assert result_ids(ok(client.get(CONVERSATIONS)), "conversation_id") == ids_of(newest, middle, oldest)


# --- read state and unread counts ----------------------------------------------------
class TestReadState:
    def test_mark_read_defaults_to_the_newest_message(self, alice, bob, client_for):
        conversation = make_conversation(bob, alice, messages=("one", "two", "three"))
        newest = conversation.messages.order_by("-sent_at").first()
        client = client_for(alice)
        assert unread_everywhere(client, conversation) == 3
        body = ok(client.post(read_url(conversation), {}, format="json"))
        assert set(body) == {"conversation_id", "last_read_at", "unread_count", "unread_mentions"}
        assert body["conversation_id"] == str(conversation.pk)
        assert body["last_read_at"] == ok(client.get(flat(newest)))["sent_at"]
        assert body["unread_count"] == 0
        assert unread_everywhere(client, conversation) == 0

    def test_mark_read_in_an_empty_conversation_is_200_with_nothing_read(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        body = ok(client_for(alice).post(read_url(conversation), format="json"))
        assert body == {
            "conversation_id": str(conversation.pk), "last_read_at": None, "unread_count": 0, "unread_mentions": 0
        }

    def test_the_read_marker_never_moves_backwards(self, alice, bob, client_for):
        conversation = make_conversation(bob, alice, messages=("m1", "m2", "m3", "m4"))
        m1, m2, m3, m4 = conversation.messages.order_by("sent_at")
        client = client_for(alice)
        at_m3 = ok(client.post(read_url(conversation), {"message_id": str(m3.pk)}, format="json"))
        assert at_m3["unread_count"] == 1
        back = ok(client.post(read_url(conversation), {"message_id": str(m1.pk)}, format="json"))
        assert back["unread_count"] == 1
        assert back["last_read_at"] == at_m3["last_read_at"]
        assert unread_everywhere(client, conversation) == 1
        assert ok(client.post(read_url(conversation), {"message_id": str(m4.pk)}, format="json"))["unread_count"] == 0
        assert ok(client.post(read_url(conversation), {"message_id": str(m2.pk)}, format="json"))["unread_count"] == 0

    def test_mark_read_with_a_message_of_another_conversation_or_unknown_is_400(self, alice, bob, carol, client_for):
        conversation = make_conversation(bob, alice, messages=("here",))
        elsewhere = make_conversation(alice, carol, messages=("there",)).messages.get()
        foreign = make_conversation(bob, carol, messages=("not alice's",)).messages.get()
        client = client_for(alice)
        for message_id in (elsewhere.pk, foreign.pk, uuid.uuid4()):
            response = client.post(read_url(conversation), {"message_id": str(message_id)}, format="json")
            assert_error(response, 400, attr="message_id")
        assert_error(client.post(read_url(conversation), {"message_id": "nope"}, format="json"), 400, attr="message_id")
        assert unread_everywhere(client, conversation) == 1  # nothing was marked

    def test_an_outsider_cannot_mark_read_404(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob, messages=("x",))
        assert_error(client_for(mallory).post(read_url(conversation), {}, format="json"), 404)

    def test_unread_counts_are_exact_for_two_users_per_conversation_and_in_total(self, alice, bob, carol, client_for):
        """
        unread_count = messages from others after my marker, deleted ones excluded, my own never;
        /users/me/ carries the total over all my conversations.
        """
        pair = make_conversation(alice, bob)
        group = make_conversation(alice, bob, carol)
        b1 = send(pair, bob, "b1")
        send(pair, alice, "a1")
        b2 = send(pair, bob, "b2")
        send(pair, alice, "a2")
        b3 = send(pair, bob, "b3")
        send(group, carol, "c1")
        send(group, bob, "b-group")
        send(group, alice, "a-group")
        a, b = client_for(alice), client_for(bob)

        # Alice: 3 from Bob in the pair; Carol's and Bob's in the group. Her own never count.
        assert unread_everywhere(a, pair) == 3
        assert unread_everywhere(a, group) == 2
        assert unread_total(a) == 5
        # Bob: a1, a2 in the pair; c1 and a-group in the group.
        assert unread_everywhere(b, pair) == 2
        assert unread_everywhere(b, group) == 2
        assert unread_total(b) == 4

        # Alice reads the pair up to b2: only b3 is left there (a2 after it is her own).
        assert ok(a.post(read_url(pair), {"message_id": str(b2.pk)}, format="json"))["unread_count"] == 1
        assert unread_everywhere(a, pair) == 1
        assert unread_total(a) == 3
        # Alice's marker does not touch Bob's counts.
        assert unread_everywhere(b, pair) == 2
        assert unread_total(b) == 4

        # Bob deletes b3: a deleted message is never unread.
        assert b.delete(flat(b3)).status_code == 204
        assert unread_everywhere(a, pair) == 0
        assert unread_total(a) == 2
        # Deleting an already-read message changes nothing either.
        assert b.delete(flat(b1)).status_code == 204
        assert unread_total(a) == 2

        # Bob reads everything in the group; Alice reads the group up to now.
        assert ok(b.post(read_url(group), {}, format="json"))["unread_count"] == 0
        assert unread_everywhere(b, group) == 0
        assert unread_total(b) == 2
        assert ok(a.post(read_url(group), {}, format="json"))["unread_count"] == 0
        assert unread_total(a) == 0

        # New messages after the markers count again, for the right person only.
        ok(b.post(nested(pair), {"message_body": "b4"}, format="json"), 201)
        ok(b.post(FLAT, {"conversation": str(group.pk), "message_body": "b5"}, format="json"), 201)
        assert unread_everywhere(a, pair) == 1
        assert unread_everywhere(a, group) == 1
        assert unread_total(a) == 2
        assert unread_everywhere(b, pair) == 2  # a1, a2: Bob never marked the pair
        assert unread_total(b) == 2
        assert unread_total(client_for(carol)) == 3  # b-group, a-group, b5

    def test_messages_sent_by_me_never_count_even_without_a_marker(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("one", "two"))
        send(conversation, alice, "three")
        client = client_for(alice)
        assert unread_everywhere(client, conversation) == 0
        assert unread_total(client) == 0
        assert unread_total(client_for(bob)) == 3

    def test_me_unread_count_is_zero_without_conversations(self, alice, client_for):
        assert unread_total(client_for(alice)) == 0


# --- editing ---------------------------------------------------------------------------
class TestEdit:
    def test_the_sender_edits_200_with_new_body_and_edited_at(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("orignal",))
        message = conversation.messages.get()
        client = client_for(alice)
        assert ok(client.get(flat(message)))["edited_at"] is None
        body = ok(client.patch(flat(message), {"message_body": "original"}, format="json"))
        assert body["message_body"] == "original"
        assert body["edited_at"] is not None
        assert body["message_id"] == str(message.pk)
        seen_by_bob = ok(client_for(bob).get(nested(conversation, message)))
        assert seen_by_bob["message_body"] == "original"
        assert seen_by_bob["edited_at"] == body["edited_at"]

    def test_nested_patch_works_too(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("v1",))
        message = conversation.messages.get()
        body = ok(client_for(alice).patch(nested(conversation, message), {"message_body": "v2"}, format="json"))
        assert body["message_body"] == "v2" and body["edited_at"] is not None

    def test_history_lists_earlier_versions_oldest_first_to_participants(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("v1",))
        message = conversation.messages.get()
        client = client_for(alice)
        for text in ("v2", "v3", "v4"):
            ok(client.patch(flat(message), {"message_body": text}, format="json"))
        for viewer in (alice, bob):
            body = ok(client_for(viewer).get(history(message)))
            assert set(body) == {"count", "next", "previous", "results"}
            assert body["count"] == 3
            assert [v["message_body"] for v in body["results"]] == ["v1", "v2", "v3"]
            assert all(set(v) == {"message_body", "replaced_at"} for v in body["results"])
            replaced = [v["replaced_at"] for v in body["results"]]
            assert replaced == sorted(replaced)
        assert ok(client.get(flat(message)))["message_body"] == "v4"
        nested_history = ok(client_for(bob).get(f"{nested(conversation, message)}history/"))
        assert [v["message_body"] for v in nested_history["results"]] == ["v1", "v2", "v3"]

    def test_history_is_paginated(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("v0",))
        message = conversation.messages.get()
        client = client_for(alice)
        for i in range(1, 6):
            ok(client.patch(flat(message), {"message_body": f"v{i}"}, format="json"))
        page1 = ok(client.get(history(message), {"page_size": 2}))
        assert page1["count"] == 5 and page1["next"] is not None and page1["previous"] is None
        assert [v["message_body"] for v in page1["results"]] == ["v0", "v1"]
        assert query_of(page1["next"]) == {"page": "2", "page_size": "2"}
        page3 = ok(client.get(history(message), {"page_size": 2, "page": 3}))
        assert [v["message_body"] for v in page3["results"]] == ["v4"]
        assert page3["next"] is None

    def test_history_is_404_for_an_outsider(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob, messages=("v1",))
        message = conversation.messages.get()
        ok(client_for(alice).patch(flat(message), {"message_body": "v2"}, format="json"))
        assert_error(client_for(mallory).get(history(message)), 404)

    def test_patch_with_the_same_text_creates_no_history_entry(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("same",))
        message = conversation.messages.get()
        client = client_for(alice)
        body = ok(client.patch(flat(message), {"message_body": "same"}, format="json"))
        assert body["message_body"] == "same"
        assert body["edited_at"] is None
        assert ok(client.get(history(message)))["count"] == 0
        ok(client.patch(flat(message), {"message_body": "changed"}, format="json"))
        ok(client.patch(flat(message), {"message_body": "changed"}, format="json"))
        assert [v["message_body"] for v in ok(client.get(history(message)))["results"]] == ["same"]

    def test_another_participant_cannot_edit_403(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("mine",))
        message = conversation.messages.get()
        for url in (flat(message), nested(conversation, message)):
            assert_error(client_for(bob).patch(url, {"message_body": "hijack"}, format="json"), 403)
        assert Message.objects.get(pk=message.pk).message_body == "mine"
        assert not MessageEdit.objects.exists()

    def test_an_outsider_cannot_edit_404(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob, messages=("mine",))
        message = conversation.messages.get()
        assert_error(client_for(mallory).patch(flat(message), {"message_body": "hijack"}, format="json"), 404)
        assert Message.objects.get(pk=message.pk).message_body == "mine"

    @pytest.mark.parametrize("text", ["", "   ", "x" * (MESSAGE_BODY_MAX_LENGTH + 1)])
    def test_blank_or_oversize_edit_is_400(self, alice, bob, client_for, text):
        conversation = make_conversation(alice, bob, messages=("fine",))
        message = conversation.messages.get()
        assert_error(client_for(alice).patch(flat(message), {"message_body": text}, format="json"), 400,
                     attr="message_body")
        assert Message.objects.get(pk=message.pk).message_body == "fine"
        assert not MessageEdit.objects.exists()


# --- deleting ----------------------------------------------------------------------------
class TestDelete:
    def test_sender_deletes_204_and_a_tombstone_remains(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("keep", "secret", "after"))
        message = conversation.messages.get(message_body="secret")
        client = client_for(alice)
        ok(client.patch(flat(message), {"message_body": "secret v2"}, format="json"))
        assert client.delete(flat(message)).status_code == 204
        for viewer in (alice, bob):
            for url in (flat(message), nested(conversation, message)):
                body = ok(client_for(viewer).get(url))
                assert body["is_deleted"] is True
                assert body["message_body"] == ""
                assert body["edited_at"] is None
            hist = ok(client_for(viewer).get(history(message)))
            assert hist["count"] == 0 and hist["results"] == []
        assert not MessageEdit.objects.filter(message=message).exists()
        # It keeps its place in both timelines.
        expected = [("after", False), ("", True), ("keep", False)]
        for params, url in (({}, nested(conversation)), ({"conversation": str(conversation.pk)}, FLAT)):
            results = ok(client_for(bob).get(url, params))["results"]
            assert [(m["message_body"], m["is_deleted"]) for m in results] == expected
        assert ok(client.get(detail(conversation)))["message_count"] == 3

    def test_nested_delete_works_too(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("x",))
        message = conversation.messages.get()
        assert client_for(alice).delete(nested(conversation, message)).status_code == 204
        assert Message.objects.get(pk=message.pk).is_deleted

    def test_others_get_403_on_delete_and_patch(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("mine",))
        message = conversation.messages.get()
        bob_client = client_for(bob)
        assert_error(bob_client.delete(flat(message)), 403)
        assert_error(bob_client.delete(nested(conversation, message)), 403)
        assert not Message.objects.get(pk=message.pk).is_deleted
        assert client_for(alice).delete(flat(message)).status_code == 204
        assert_error(bob_client.delete(flat(message)), 403)
        assert_error(bob_client.patch(flat(message), {"message_body": "revive"}, format="json"), 403)

    def test_an_outsider_cannot_delete_404(self, alice, bob, mallory, client_for):
        conversation = make_conversation(alice, bob, messages=("mine",))
        message = conversation.messages.get()
        assert_error(client_for(mallory).delete(flat(message)), 404)
        assert not Message.objects.get(pk=message.pk).is_deleted

    def test_editing_a_deleted_message_is_400(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("gone",))
        message = conversation.messages.get()
        client = client_for(alice)
        assert client.delete(flat(message)).status_code == 204
        assert_error(client.patch(flat(message), {"message_body": "back"}, format="json"), 400)
        body = ok(client.get(flat(message)))
        assert body["message_body"] == "" and body["is_deleted"] is True
        assert not MessageEdit.objects.exists()

    def test_deleting_twice_is_204_both_times(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("gone",))
        message = conversation.messages.get()
        client = client_for(alice)
        assert client.delete(flat(message)).status_code == 204
        assert client.delete(flat(message)).status_code == 204
        assert ok(client.get(flat(message)))["is_deleted"] is True


# --- replies ---------------------------------------------------------------------------
class TestReplies:
    def test_a_reply_names_its_parent_nested_and_flat(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("question",))
        parent = conversation.messages.get()
        client = client_for(bob)
        body = ok(client.post(nested(conversation), {"message_body": "answer", "parent_message": str(parent.pk)},
                              format="json"), 201)
        assert body["parent_message"] == str(parent.pk)
        body = ok(client.post(FLAT, {"conversation": str(conversation.pk), "message_body": "again",
                                     "parent_message": str(parent.pk)}, format="json"), 201)
        assert body["parent_message"] == str(parent.pk)
        assert ok(client.get(flat(parent)))["parent_message"] is None

    def test_parent_from_another_conversation_or_unknown_is_400(self, alice, bob, carol, client_for):
        conversation = make_conversation(alice, bob)
        mine_elsewhere = make_conversation(alice, carol, messages=("other",)).messages.get()
        not_mine = make_conversation(bob, carol, messages=("private",)).messages.get()
        client = client_for(alice)
        for parent_id in (mine_elsewhere.pk, not_mine.pk, uuid.uuid4()):
            payload = {"message_body": "re", "parent_message": str(parent_id)}
            assert_error(client.post(nested(conversation), payload, format="json"), 400, attr="parent_message")
            payload["conversation"] = str(conversation.pk)
            assert_error(client.post(FLAT, payload, format="json"), 400, attr="parent_message")
        assert not Message.objects.filter(message_body="re").exists()
        assert Conversation.objects.get(pk=conversation.pk).message_count == 0

    def test_filter_by_parent_lists_exactly_the_replies(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob, messages=("p1", "p2"))
        p1, p2 = conversation.messages.order_by("sent_at")
        r1 = send(conversation, bob, "r1", parent_message_id=p1.pk)
        send(conversation, alice, "other", parent_message_id=p2.pk)
        send(conversation, alice, "plain")
        r2 = send(conversation, alice, "r2", parent_message_id=p1.pk)
        client = client_for(alice)
        assert result_ids(ok(client.get(FLAT, {"parent_message": str(p1.pk)}))) == ids_of(r2, r1)
        assert result_ids(ok(client.get(nested(conversation), {"parent_message": str(p1.pk)}))) == ids_of(r2, r1)
        assert ok(client.get(FLAT, {"parent_message": str(r1.pk)}))["results"] == []


# --- safe retries (client_id) ---------------------------------------------------------
def _send_with_client_id(client, conversation, where: str, client_id: str, body: str = "once"):
    payload = {"message_body": body, "client_id": client_id}
    if where == "nested":
        return client.post(nested(conversation), payload, format="json")
    return client.post(FLAT, {**payload, "conversation": str(conversation.pk)}, format="json")


class TestSafeRetries:
    @pytest.mark.parametrize("where", ["nested", "flat"])
    def test_a_retry_returns_the_original_with_200_and_no_new_row(self, alice, bob, client_for, where):
        conversation = make_conversation(alice, bob)
        client = client_for(alice)
        first = ok(_send_with_client_id(client, conversation, where, "retry-1"), 201)
        assert first["client_id"] == "retry-1"
        for _ in range(2):
            again = ok(_send_with_client_id(client, conversation, where, "retry-1"), 200)
            assert again["message_id"] == first["message_id"]
            assert again == first
        assert Message.objects.count() == 1
        assert ok(client.get(detail(conversation)))["message_count"] == 1
        assert Conversation.objects.get(pk=conversation.pk).message_count == 1

    def test_retry_across_nested_and_flat_is_still_one_message(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        client = client_for(alice)
        first = ok(_send_with_client_id(client, conversation, "nested", "k"), 201)
        again = ok(_send_with_client_id(client, conversation, "flat", "k"), 200)
        assert again["message_id"] == first["message_id"]
        assert Message.objects.count() == 1

    @pytest.mark.parametrize("where", ["nested", "flat"])
    def test_the_same_client_id_from_another_sender_is_a_new_message(self, alice, bob, client_for, where):
        conversation = make_conversation(alice, bob)
        mine = ok(_send_with_client_id(client_for(alice), conversation, where, "shared"), 201)
        theirs = ok(_send_with_client_id(client_for(bob), conversation, where, "shared"), 201)
        assert theirs["message_id"] != mine["message_id"]
        assert theirs["sender"]["user_id"] == str(bob.pk)
        assert Conversation.objects.get(pk=conversation.pk).message_count == 2

    @pytest.mark.parametrize("where", ["nested", "flat"])
    def test_the_same_client_id_to_another_conversation_is_400(self, alice, bob, carol, client_for, where):
        first = make_conversation(alice, bob)
        second = make_conversation(alice, carol)
        client = client_for(alice)
        ok(_send_with_client_id(client, first, where, "used"), 201)
        assert_error(_send_with_client_id(client, second, where, "used"), 400, attr="client_id")
        assert Message.objects.count() == 1
        assert Conversation.objects.get(pk=second.pk).message_count == 0

    @pytest.mark.parametrize("where", ["nested", "flat"])
    def test_client_id_of_64_characters_is_fine_and_65_is_400(self, alice, bob, client_for, where):
        conversation = make_conversation(alice, bob)
        client = client_for(alice)
        ok(_send_with_client_id(client, conversation, where, "k" * 64), 201)
        assert_error(_send_with_client_id(client, conversation, where, "k" * 65), 400, attr="client_id")
        assert Message.objects.count() == 1

    def test_sends_without_client_id_are_never_deduplicated(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        client = client_for(alice)
        for _ in range(3):
            ok(client.post(nested(conversation), {"message_body": "same"}, format="json"), 201)
        assert Message.objects.count() == 3


# --- timelines (keyset cursors) ----------------------------------------------------------
TIMELINES = ["nested", "flat"]


@pytest.fixture
def ten(alice, bob, carol):
    """A conversation of ten messages m0..m9 (m9 newest), plus noise in another conversation."""
    conversation = make_conversation(alice, bob)
    messages = [send(conversation, alice if i % 2 else bob, f"m{i}") for i in range(10)]
    other = make_conversation(alice, carol)
    send(other, carol, "noise")
    return conversation, messages


def timeline(conversation, where: str, **params) -> tuple[str, dict]:
    if where == "nested":
        return nested(conversation), params
    return FLAT, {"conversation": str(conversation.pk), **params}


class TestTimelines:
    @pytest.mark.parametrize("where", TIMELINES)
    def test_before_gives_the_page_size_messages_just_older_newest_first(self, ten, alice, client_for, where):
        conversation, m = ten
        url, params = timeline(conversation, where, before=str(m[6].pk), page_size=3)
        body = ok(client_for(alice).get(url, params))
        assert body["count"] is None
        assert result_ids(body) == ids_of(m[5], m[4], m[3])
        assert query_of(body["next"])["before"] == str(m[3].pk)
        assert query_of(body["previous"])["after"] == str(m[5].pk)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_after_gives_the_page_size_messages_just_newer_oldest_first(self, ten, alice, client_for, where):
        conversation, m = ten
        url, params = timeline(conversation, where, after=str(m[2].pk), page_size=3)
        body = ok(client_for(alice).get(url, params))
        assert body["count"] is None
        assert result_ids(body) == ids_of(m[3], m[4], m[5])
        assert query_of(body["next"])["after"] == str(m[5].pk)
        assert query_of(body["previous"])["before"] == str(m[3].pk)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_cursor_links_keep_the_other_parameters_and_drop_page(self, ten, alice, client_for, where):
        conversation, m = ten
        url, params = timeline(conversation, where, before=str(m[9].pk), page_size=2, page=3)
        body = ok(client_for(alice).get(url, params))
        for link in (body["next"], body["previous"]):
            query = query_of(link)
            assert query["page_size"] == "2"
            assert "page" not in query
            assert not ("before" in query and "after" in query)
            if where == "flat":
                assert query["conversation"] == str(conversation.pk)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_following_next_backwards_yields_every_message_once_in_order(self, ten, alice, client_for, where):
        conversation, m = ten
        client = client_for(alice)
        url, params = timeline(conversation, where, page_size=3)
        first_page = ok(client.get(url, params))  # page-number mode: the newest three
        seen = result_ids(first_page)
        url, params = timeline(conversation, where, before=seen[-1], page_size=3)
        body = ok(client.get(url, params))
        pages = 1
        while True:
            assert body["count"] is None
            assert 0 < len(body["results"]) <= 3
            seen += result_ids(body)
            pages += 1
            if body["next"] is None:
                break
            body = ok(client.get(body["next"]))
            assert pages < 10, "runaway pagination"
        assert seen == ids_of(*reversed(m))
        assert pages == 4

    @pytest.mark.parametrize("where", TIMELINES)
    def test_following_next_forwards_yields_every_message_once_in_order(self, ten, alice, client_for, where):
        conversation, m = ten
        client = client_for(alice)
        seen = [str(m[0].pk)]
        url, params = timeline(conversation, where, after=str(m[0].pk), page_size=3)
        body = ok(client.get(url, params))
        pages = 0
        while True:
            assert body["count"] is None
            seen += result_ids(body)
            pages += 1
            if body["next"] is None:
                break
            body = ok(client.get(body["next"]))
            assert pages < 10, "runaway pagination"
        assert seen == ids_of(*m)
        assert pages == 3

    @pytest.mark.parametrize("where", TIMELINES)
    def test_after_the_newest_is_empty_and_new_messages_then_appear(self, ten, alice, bob, client_for, where):
        """Catching up: ?after=<last seen> returns exactly what arrived since."""
        conversation, m = ten
        client = client_for(alice)
        url, params = timeline(conversation, where, after=str(m[9].pk))
        body = ok(client.get(url, params))
        assert body["results"] == [] and body["next"] is None and body["previous"] is None
        new1, new2 = send(conversation, bob, "n1"), send(conversation, alice, "n2")
        assert result_ids(ok(client.get(url, params))) == ids_of(new1, new2)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_following_previous_turns_around(self, ten, alice, client_for, where):
        conversation, m = ten
        client = client_for(alice)
        url, params = timeline(conversation, where, before=str(m[6].pk), page_size=3)
        body = ok(client.get(url, params))  # m5, m4, m3
        back = ok(client.get(body["previous"]))  # just newer than m5, oldest first
        assert result_ids(back) == ids_of(m[6], m[7], m[8])

    @pytest.mark.parametrize("where", TIMELINES)
    def test_invalid_unknown_or_foreign_cursor_is_400(self, ten, alice, bob, carol, client_for, where):
        conversation, m = ten
        foreign = send(make_conversation(bob, carol), carol, "not alice's")
        client = client_for(alice)
        for direction in ("before", "after"):
            for cursor in ("not-a-uuid", str(uuid.uuid4()), str(foreign.pk)):
                url, params = timeline(conversation, where, **{direction: cursor})
                assert_error(client.get(url, params), 400, attr=direction)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_a_cursor_from_another_of_my_conversations_is_400(self, ten, alice, carol, client_for, where):
        """A cursor must be a message of the timeline being read, even if the user may see it."""
        conversation, m = ten
        mine_elsewhere = Message.objects.get(message_body="noise")  # Alice and Carol's conversation
        client = client_for(alice)
        for direction in ("before", "after"):
            url, params = timeline(conversation, where, **{direction: str(mine_elsewhere.pk)})
            assert_error(client.get(url, params), 400, attr=direction)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_before_and_after_together_is_400(self, ten, alice, client_for, where):
        conversation, m = ten
        url, params = timeline(conversation, where, before=str(m[5].pk), after=str(m[2].pk))
        assert_error(client_for(alice).get(url, params), 400)

    @pytest.mark.parametrize("where", TIMELINES)
    def test_default_page_number_mode_is_unchanged(self, ten, alice, client_for, where):
        conversation, m = ten
        client = client_for(alice)
        url, params = timeline(conversation, where, page_size=4)
        page1 = ok(client.get(url, params))
        assert page1["count"] == 10
        assert result_ids(page1) == ids_of(m[9], m[8], m[7], m[6])
        assert page1["previous"] is None
        assert query_of(page1["next"])["page"] == "2"
        page3 = ok(client.get(url, {**params, "page": 3}))
        assert result_ids(page3) == ids_of(m[1], m[0])
        assert page3["next"] is None and page3["count"] == 10

    def test_outsider_cannot_page_a_timeline(self, ten, mallory, client_for):
        conversation, m = ten
        assert_error(client_for(mallory).get(nested(conversation), {"before": str(m[5].pk)}), 404)
        response = client_for(mallory).get(FLAT, {"conversation": str(conversation.pk), "before": str(m[5].pk)})
        assert_error(response, 400, attr="before")


# --- search scope -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # MariaDB's FULLTEXT index shows only committed rows
def test_message_search_only_covers_my_conversations(alice, bob, carol, mallory, client_for):
    mine = make_conversation(alice, bob, messages=("pizza tonight?",))
    make_conversation(bob, carol, messages=("pizza without alice",))
    make_conversation(carol, mallory, messages=("pizza for strangers",))
    body = ok(client_for(alice).get(FLAT, {"search": "pizza"}))
    assert [m["message_body"] for m in body["results"]] == ["pizza tonight?"]
    assert body["results"][0]["conversation"] == str(mine.pk)
    assert body["count"] == 1
    assert ok(client_for(bob).get(FLAT, {"search": "pizza"}))["count"] == 2
    assert ok(client_for(mallory).get(FLAT, {"search": "pizza"}))["count"] == 1
    # Leaving a conversation takes its messages out of my search as well.
    assert client_for(bob).delete(participants_url(mine, bob)).status_code == 204
    assert ok(client_for(bob).get(FLAT, {"search": "pizza"}))["count"] == 1
