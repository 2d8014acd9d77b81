"""
Reactions: POST/DELETE /api/messages/{id}/reactions/, the `reactions` of every message payload
(`me` for the viewer), the reaction.added / reaction.removed events, and what a delete clears.
"""
from urllib.parse import quote

import pytest

from chats import services, services_reactions
from chats.emoji import emoji_code, is_single_emoji
from chats.models import MAX_REACTION_KINDS, Event, Message, MessageReaction
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db

THUMBS = "\N{THUMBS UP SIGN}"
HEART = "\u2764\ufe0f"


def url(message) -> str:
    return f"/api/messages/{message.pk if hasattr(message, 'pk') else message}/reactions/"


def react(client, message, emoji=THUMBS):
    return client.post(url(message), {"emoji": emoji}, format="json")


def unreact(client, message, emoji=THUMBS):
    return client.delete(url(message) + "?emoji=" + quote(emoji))


def last_frames(user, event_type):
    return [e.frame for e in Event.objects.filter(user=user).order_by("event_id") if e.frame["type"] == event_type]


@pytest.fixture
def message(conversation):
    return conversation.messages.order_by("sent_at").first()


class TestEmojiCheck:
    @pytest.mark.parametrize("text", [
        THUMBS, THUMBS + "\N{EMOJI MODIFIER FITZPATRICK TYPE-4}", HEART, "\u2764",
        "\N{WOMAN}\u200d\N{PERSONAL COMPUTER}", "\U0001f1eb\U0001f1f7", "1\ufe0f\u20e3", "\u2b50",
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    ])
    def test_single_emoji_are_accepted(self, text):
        assert is_single_emoji(text)

    @pytest.mark.parametrize("text", [
        "", "a", "ok", THUMBS * 2, THUMBS + " ", " " + THUMBS, "\u2500", "$", "\U0001f1eb", "\u200d",
        THUMBS + "\u200d", "1", "x\ufe0f", "<script>", "\N{WOMAN}\u200d" * 5 + "\N{WOMAN}", 42, None,
    ])
    def test_anything_else_is_refused(self, text):
        assert not is_single_emoji(text)

    def test_codes_are_code_points(self):
        assert emoji_code(HEART) == "2764-fe0f"


class TestAdd:
    def test_first_time_201_then_200_with_the_same_body(self, alice, bob, message, client_for):
        first = react(client_for(bob), message)
        assert first.status_code == 201, first.content
        assert first.json() == {"message_id": str(message.pk), "reactions": [{"emoji": THUMBS, "count": 1, "me": True}]}
        again = react(client_for(bob), message)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert MessageReaction.objects.filter(message=message).count() == 1

    def test_summary_orders_emojis_by_first_reaction_and_me_is_per_viewer(self, alice, bob, message, client_for):
        react(client_for(bob), message, HEART)
        react(client_for(alice), message, THUMBS)
        response = react(client_for(alice), message, HEART)
        assert response.json()["reactions"] == [
            {"emoji": HEART, "count": 2, "me": True}, {"emoji": THUMBS, "count": 1, "me": True},
        ]
        timeline = f"/api/conversations/{message.conversation_id}/messages/"
        for user, me_thumbs in ((alice, True), (bob, False)):
            for path in (timeline, "/api/messages/", f"{timeline}{message.pk}/", f"/api/messages/{message.pk}/"):
                body = client_for(user).get(path).json()
                payload = next(m for m in body["results"] if m["message_id"] == str(message.pk)) \
                    if "results" in body else body
                assert payload["reactions"] == [
                    {"emoji": HEART, "count": 2, "me": True}, {"emoji": THUMBS, "count": 1, "me": me_thumbs},
                ], path

    def test_inbox_last_message_carries_reactions_with_me(self, alice, bob, conversation, client_for):
        last = conversation.messages.order_by("-sent_at").first()
        react(client_for(bob), last)
        inbox = {c["conversation_id"]: c for c in client_for(alice).get("/api/conversations/").json()["results"]}
        assert inbox[str(conversation.pk)]["last_message"]["reactions"] == [{"emoji": THUMBS, "count": 1, "me": False}]
        detail = client_for(bob).get(f"/api/conversations/{conversation.pk}/").json()
        assert detail["last_message"]["reactions"] == [{"emoji": THUMBS, "count": 1, "me": True}]

    @pytest.mark.parametrize("emoji", ["", "ok", THUMBS * 2, "\N{WOMAN}\u200d" * 5 + "\N{WOMAN}", 7, None])
    def test_not_one_emoji_is_a_400(self, bob, message, client_for, emoji):
        assert_error(react(client_for(bob), message, emoji), 400, attr="emoji")
        assert not MessageReaction.objects.exists()

    def test_missing_emoji_is_a_400(self, bob, message, client_for):
        assert_error(client_for(bob).post(url(message), {}, format="json"), 400, code="required", attr="emoji")

    def test_outsider_gets_404_like_an_unknown_message(self, message, mallory, client_for):
        outsider = react(client_for(mallory), message)
        unknown = react(client_for(mallory), "00000000-0000-0000-0000-000000000000")
        assert_error(outsider, 404)
        assert outsider.json() == unknown.json()
        assert_error(unreact(client_for(mallory), message), 404)
        assert not MessageReaction.objects.exists()

    def test_anonymous_is_401(self, api, message):
        assert api.post(url(message), {"emoji": THUMBS}, format="json").status_code == 401

    def test_deleted_message_is_refused(self, alice, bob, message, client_for):
        services.message_delete(message=message, actor=alice)
        assert_error(react(client_for(bob), message), 400, attr="message_id")

    def test_at_most_so_many_different_emojis(self, alice, bob, message, client_for):
        emojis = [chr(0x1F600 + i) for i in range(MAX_REACTION_KINDS + 1)]
        for emoji in emojis[:-1]:
            assert react(client_for(bob), message, emoji).status_code == 201
        assert_error(react(client_for(bob), message, emojis[-1]), 400, attr="emoji")
        # one of the existing emojis is still welcome
        assert react(client_for(alice), message, emojis[0]).status_code == 201

    def test_emojis_that_collations_confuse_stay_apart(self, bob, message, client_for):
        # MySQL's utf8mb4_unicode_ci weighs all emoji alike; the stored code points do not.
        assert react(client_for(bob), message, "\U0001f600").status_code == 201
        assert react(client_for(bob), message, "\U0001f601").status_code == 201
        assert MessageReaction.objects.filter(message=message).count() == 2


class TestRemove:
    def test_remove_is_idempotent(self, bob, message, client_for):
        react(client_for(bob), message)
        assert unreact(client_for(bob), message).status_code == 204
        assert unreact(client_for(bob), message).status_code == 204
        message.refresh_from_db()
        assert message.reaction_summary == []
        assert not MessageReaction.objects.exists()

    def test_only_your_own_reaction_goes(self, alice, bob, message, client_for):
        react(client_for(alice), message)
        react(client_for(bob), message)
        unreact(client_for(bob), message)
        message.refresh_from_db()
        assert message.reaction_summary == [{"emoji": THUMBS, "user_ids": [str(alice.pk)]}]

    def test_bad_or_missing_emoji_is_a_400(self, bob, message, client_for):
        assert_error(client_for(bob).delete(url(message)), 400, attr="emoji")
        assert_error(unreact(client_for(bob), message, "nope"), 400, attr="emoji")


class TestEvents:
    def test_added_and_removed_go_to_every_participant(self, alice, bob, message, client_for, mallory):
        react(client_for(bob), message)
        react(client_for(bob), message)  # no change, no event
        unreact(client_for(bob), message)
        unreact(client_for(bob), message)  # no change, no event
        for user in (alice, bob):
            added = last_frames(user, "reaction.added")
            removed = last_frames(user, "reaction.removed")
            assert len(added) == 1 and len(removed) == 1
            assert {k: v for k, v in added[0].items() if k != "event_id"} == {
                "type": "reaction.added",
                "conversation_id": str(message.conversation_id),
                "message_id": str(message.pk),
                "emoji": THUMBS,
                "user_id": str(bob.pk),
                "reactions": [{"emoji": THUMBS, "count": 1, "user_ids": [str(bob.pk)]}],
            }
            assert removed[0]["reactions"] == [] and removed[0]["user_id"] == str(bob.pk)
        assert not Event.objects.filter(user=mallory).exists()

    def test_message_events_carry_reactions_with_user_ids(self, alice, bob, message, client_for):
        react(client_for(bob), message)
        client_for(alice).patch(
            f"/api/messages/{message.pk}/", {"message_body": "edited"}, format="json"
        )
        updated = last_frames(bob, "message.updated")[-1]
        assert updated["message"]["reactions"] == [{"emoji": THUMBS, "count": 1, "user_ids": [str(bob.pk)]}]


class TestDelete:
    def test_a_tombstone_loses_its_reactions(self, alice, bob, message, client_for):
        react(client_for(bob), message)
        react(client_for(alice), message, HEART)
        assert client_for(alice).delete(f"/api/messages/{message.pk}/").status_code == 204
        message.refresh_from_db()
        assert message.reaction_summary == []
        assert not MessageReaction.objects.filter(message=message).exists()
        assert last_frames(bob, "message.deleted")[-1]["message"]["reactions"] == []

    def test_a_deleted_user_leaves_no_name_in_summaries(self, alice, bob, carol):
        conversation = make_conversation(alice, bob, carol)
        message = send(conversation, alice, "hi")
        services_reactions.reaction_add(message=message, user=carol, emoji=THUMBS)
        services_reactions.reaction_add(message=message, user=bob, emoji=THUMBS)
        services_reactions.reaction_add(message=message, user=carol, emoji=HEART)
        carol_id = str(carol.pk)
        services.user_delete(user=carol)
        assert Message.objects.get(pk=message.pk).reaction_summary == [
            {"emoji": THUMBS, "user_ids": [str(bob.pk)]}
        ]
        assert not MessageReaction.objects.filter(user_id=carol_id).exists()
        # The others are told, reaction by reaction, ending with the summary as it stays.
        removed = last_frames(bob, "reaction.removed")
        assert [(f["emoji"], f["user_id"]) for f in removed] == [(THUMBS, carol_id), (HEART, carol_id)]
        assert removed[-1]["reactions"] == [{"emoji": THUMBS, "count": 1, "user_ids": [str(bob.pk)]}]
