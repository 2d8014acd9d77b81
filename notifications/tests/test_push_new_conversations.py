"""
Messages that come with a new conversation (POST /api/conversations/ with `messages`) notify exactly
like messages sent to it afterwards: one push per other member, batched per conversation, never to
the sender, never once muted; through the API, to the real push receiver of test_push.py (each push
decrypted with the browser keys it was meant for). And a bot's socket (a personal access token's,
chats/socket_slots.BOT_PREFIX) does not count as its user being connected: the push still goes.
"""
import pytest
from django.core.cache import cache

from chats import services_membership, socket_slots
from chats.models import Conversation
from notifications import push
from notifications.tests.test_push import URL, Browser, sent, vapid  # noqa: F401  (vapid: a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def browsers(vapid, receiver, alice, bob, carol, client_for):  # noqa: F811
    """One subscribed browser each for Alice, Bob and Carol, all pushed to the same receiver."""
    made = {}
    for person in (alice, bob, carol):
        browser = Browser(receiver.url)
        response = client_for(person).post(URL, browser.subscription(), format="json")
        assert response.status_code == 201, response.content
        made[person.pk] = browser
    return made


def recipients(receiver, browsers) -> list[tuple]:
    """(user id, decrypted payload) of each push the receiver got: whose browser's keys open it."""
    found = []
    for request in sent(receiver):
        opened = []
        for user_id, browser in browsers.items():
            try:
                opened.append((user_id, browser.decrypt(request["body"])))
            except Exception:  # noqa: BLE001 - encrypted for another browser
                continue
        assert len(opened) == 1, "each push opens with exactly one browser's keys"
        found.append(opened[0])
    return found


def create(client, people, bodies) -> dict:
    response = client.post(
        "/api/conversations/",
        {"participants": [str(p.pk) for p in people], "messages": [{"message_body": b} for b in bodies]},
        format="json",
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_initial_messages_push_once_to_each_other_member_and_never_to_the_sender(
    browsers, receiver, alice, bob, carol, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        conversation = create(client_for(alice), [bob, carol], ["one", "two", "three"])
    pushed = recipients(receiver, browsers)
    assert sorted(user_id for user_id, _ in pushed) == sorted([bob.pk, carol.pk])  # three messages, one push each
    for _user_id, payload in pushed:
        assert payload == {
            "type": "messages", "conversation_id": conversation["conversation_id"], "unread_count": 3,
            "sender": {"user_id": str(alice.pk), "first_name": alice.first_name},
        }


def test_a_message_sent_right_after_joins_the_batch_of_the_initial_ones(
    browsers, receiver, alice, bob, carol, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        conversation = create(client_for(alice), [bob, carol], ["hello"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(
            f"/api/conversations/{conversation['conversation_id']}/messages/", {"message_body": "again"}, format="json"
        )
    assert response.status_code == 201
    assert sorted(user_id for user_id, _ in recipients(receiver, browsers)) == sorted([bob.pk, carol.pk])


def test_initial_messages_to_an_existing_muted_pair_push_nothing_and_to_a_new_pair_one_push(
    browsers, receiver, alice, bob, client_for, django_capture_on_commit_callbacks
):
    """A two-person conversation is reused: its new messages go through message_send, muted respected."""
    with django_capture_on_commit_callbacks(execute=True):
        conversation = create(client_for(alice), [bob], ["first"])
    assert [user_id for user_id, _ in recipients(receiver, browsers)] == [bob.pk]
    cache.delete(push._pending_key(bob.pk, conversation["conversation_id"]))  # the batch window has passed

    services_membership.membership_update(
        conversation=Conversation.objects.get(pk=conversation["conversation_id"]), user=bob, muted=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        again = create(client_for(alice), [bob], ["while muted"])
    assert again["conversation_id"] == conversation["conversation_id"]
    assert len(sent(receiver)) == 1


def test_a_bots_socket_does_not_hold_back_its_users_pushes_but_the_persons_socket_does(
    browsers, receiver, alice, bob, client_for, django_capture_on_commit_callbacks
):
    socket_slots._local[bob.pk] = {socket_slots.BOT_PREFIX + "a-channel"}  # only a bot listens for Bob
    try:
        with django_capture_on_commit_callbacks(execute=True):
            conversation = create(client_for(alice), [bob], ["to Bob's phone"])
        assert [user_id for user_id, _ in recipients(receiver, browsers)] == [bob.pk]
        assert socket_slots.connected_now([bob.pk]) == set()
        cache.delete(push._pending_key(bob.pk, conversation["conversation_id"]))
        socket_slots._local[bob.pk].add("bobs-own-socket")  # now Bob himself is connected too
        assert socket_slots.connected_now([bob.pk]) == {bob.pk}
        with django_capture_on_commit_callbacks(execute=True):
            create(client_for(alice), [bob], ["Bob sees it live"])
        assert len(sent(receiver)) == 1
    finally:
        socket_slots._local.pop(bob.pk, None)
