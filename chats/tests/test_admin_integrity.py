"""
The Django admin writes only through the services (issue 11): driven here through the
real admin pages as a logged-in superuser (pytest-django's admin_client), every add, change, delete and action leaves
the stored counters equal to what the rows say, keeps the API's timelines whole, keeps
the edit history, and sends the events the API would. What the admin refuses answers
with a message on the page and changes nothing.
"""
import pytest
from django.test import override_settings

from chats import delivery, services
from chats.models import Conversation, ConversationMembership, Message, MessageEdit, User
from chats.tests.factories import UserFactory, make_conversation, send

pytestmark = pytest.mark.django_db


# --- helpers -----------------------------------------------------------------------
class _Inline:
    """Stands in for a socket's event loop: what live delivery hands over is taken at once."""

    @staticmethod
    def is_closed() -> bool:
        return False

    @staticmethod
    def call_soon_threadsafe(callback, *args) -> None:
        callback(*args)


class EventRecorder:
    """A socket per user in this process's live delivery (chats/delivery.py); read after the request."""

    def __init__(self, *users):
        self.received = {}
        for user in users:
            socket = _RecordingSocket(user)
            delivery.register(socket)
            self.received[user] = socket

    def types(self) -> dict:
        """{user: [event type, ...]} for everything delivered so far."""
        return {user: [frame["type"] for frame, _ in socket.items] for user, socket in self.received.items()}


class _RecordingSocket:
    loop = _Inline()

    def __init__(self, user):
        self.user_hex = user.pk.hex
        self.items = []

    def push(self, item):
        self.items.append(item)


@pytest.fixture(autouse=True)
def fresh_live_delivery():
    """Each test sees only its own sockets' events."""
    delivery._sockets.clear()
    yield
    delivery._sockets.clear()


@pytest.fixture
def admin_post(admin_client, django_capture_on_commit_callbacks):
    """POST to the admin; on-commit hooks (the events) run as they would after a real commit."""

    def post(url, data):
        with django_capture_on_commit_callbacks(execute=True):
            return admin_client.post(url, data)

    return post


def page_data(response) -> dict:
    """The POST a browser would send back from an admin add/change page, unchanged."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    data = {}
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is not None and value is not False:
                data[form.add_prefix(name)] = value
    return data


def membership_change(admin_client, conversation, remove=(), add=()) -> tuple[str, dict]:
    """The conversation's change page POST, ticking "delete" for `remove` and adding rows for `add`."""
    url = f"/admin/chats/conversation/{conversation.pk}/change/"
    data = page_data(admin_client.get(url))
    total = int(data["memberships-TOTAL_FORMS"])
    removed = {user.pk for user in remove}
    for row in range(total):
        if data[f"memberships-{row}-user"] in removed:
            data[f"memberships-{row}-DELETE"] = "on"
    for row, user in enumerate(add, start=total):
        data[f"memberships-{row}-user"] = user.pk
    data["memberships-TOTAL_FORMS"] = total + len(add)
    return url, data


def assert_stored_state_matches_rows():
    """Every denormalised value the services keep, recomputed from the rows."""
    for conversation in Conversation.objects.all():
        rows = Message.objects.filter(conversation=conversation).order_by("-sent_at", "-message_id")
        newest = rows.first()
        assert conversation.message_count == rows.count(), conversation
        assert conversation.last_message_id == (newest.pk if newest else None), conversation
        assert conversation.last_activity_at == (newest.sent_at if newest else conversation.created_at)
        assert conversation.participant_count == conversation.memberships.count(), conversation
        owners = conversation.memberships.filter(role=ConversationMembership.Role.OWNER).count()
        assert owners == (1 if conversation.participant_count else 0), conversation
        for membership in conversation.memberships.all():
            unread = rows.filter(is_deleted=False).exclude(sender_id=membership.user_id)
            if membership.last_read_at is not None:
                unread = unread.filter(sent_at__gt=membership.last_read_at)
            assert membership.unread_count == unread.count(), membership


def assert_timeline_is_whole(client_for, conversation):
    """The API's timeline (which trusts the stored count) lists every message, newest first."""
    member = conversation.participants.first()
    response = client_for(member).get(f"/api/conversations/{conversation.pk}/messages/", {"page_size": 100})
    assert response.status_code == 200
    listed = [item["message_id"] for item in response.json()["results"]]
    rows = Message.objects.filter(conversation=conversation).order_by("-sent_at", "-message_id")
    assert listed == [str(pk) for pk in rows.values_list("pk", flat=True)]
    assert response.json()["count"] == len(listed)


def unread(conversation, user) -> int:
    return ConversationMembership.objects.get(conversation=conversation, user=user).unread_count


def errors_of(response) -> str:
    """Every error the admin page shows (form, fields and inlines), as one text."""
    assert response.status_code == 200, response.status_code
    form = response.context["adminform"].form
    texts = [str(e) for errors in form.errors.values() for e in errors]
    for inline in response.context["inline_admin_formsets"]:
        texts += [str(e) for e in inline.formset.non_form_errors()]
        texts += [str(e) for errors in inline.formset.errors for e in errors.values()]
    assert texts, "the page shows no error"
    return " ".join(texts)


# --- messages ----------------------------------------------------------------------
def test_adding_a_message_in_the_admin_is_a_send_with_exact_counters_and_events(
    admin_post, client_for, conversation, alice, bob
):
    """The reported bug: an admin-added row left message_count, last_message and unread stale."""
    recorder = EventRecorder(alice, bob)
    response = admin_post(
        "/admin/chats/message/add/",
        {"conversation": conversation.pk, "sender": bob.pk, "message_body": "  from the admin  "},
    )
    assert response.status_code == 302, errors_of(response)
    added = Message.objects.get(message_body="from the admin")
    conversation.refresh_from_db()
    assert (conversation.message_count, conversation.last_message_id) == (3, added.pk)
    assert added.sent_at > Message.objects.get(message_body="second").sent_at
    assert unread(conversation, alice) == 1 and unread(conversation, bob) == 2
    assert_stored_state_matches_rows()
    assert_timeline_is_whole(client_for, conversation)
    assert recorder.types() == {alice: ["message.created"], bob: ["message.created"]}


def test_adding_a_message_as_someone_outside_the_conversation_is_refused(
    admin_post, conversation, carol, alice
):
    recorder = EventRecorder(alice)
    response = admin_post(
        "/admin/chats/message/add/", {"conversation": conversation.pk, "sender": carol.pk, "message_body": "hi"}
    )
    assert "The sender must be a participant of this conversation." in errors_of(response)
    assert Message.objects.count() == 2
    assert_stored_state_matches_rows()
    assert recorder.types() == {alice: []}


def test_what_message_send_refuses_shows_on_the_form_and_nothing_is_stored(
    admin_post, conversation, alice, bob, carol
):
    """A reply to a message of another conversation: the service's ValidationError, not a 500."""
    elsewhere = send(make_conversation(alice, carol), carol, "elsewhere")
    recorder = EventRecorder(alice, bob)
    response = admin_post(
        "/admin/chats/message/add/",
        {"conversation": conversation.pk, "sender": bob.pk, "message_body": "hi", "parent_message": elsewhere.pk},
    )
    assert "No message with this id in this conversation." in errors_of(response)
    assert response.context["adminform"].form.errors["parent_message"]
    assert not Message.objects.filter(message_body="hi").exists()
    assert_stored_state_matches_rows()
    assert recorder.types() == {alice: [], bob: []}


def test_editing_a_body_in_the_admin_is_an_edit_with_history_and_event(
    admin_client, admin_post, client_for, conversation, alice, bob
):
    message = Message.objects.get(message_body="first")
    url = f"/admin/chats/message/{message.pk}/change/"
    data = page_data(admin_client.get(url))
    data["message_body"] = "corrected by staff"
    recorder = EventRecorder(alice, bob)
    response = admin_post(url, data)
    assert response.status_code == 302, errors_of(response)
    message.refresh_from_db()
    assert message.message_body == "corrected by staff" and message.edited_at is not None
    assert list(MessageEdit.objects.filter(message=message).values_list("message_body", flat=True)) == ["first"]
    history = client_for(bob).get(f"/api/messages/{message.pk}/history/").json()["results"]
    assert [version["message_body"] for version in history] == ["first"]
    assert_stored_state_matches_rows()
    assert_timeline_is_whole(client_for, conversation)
    assert recorder.types() == {alice: ["message.updated"], bob: ["message.updated"]}


def test_a_message_cannot_move_or_change_sender_and_a_tombstone_cannot_be_edited(
    admin_client, admin_post, conversation, alice, carol
):
    message = Message.objects.get(message_body="first")
    url = f"/admin/chats/message/{message.pk}/change/"
    assert set(admin_client.get(url).context["adminform"].form.fields) == {"message_body"}
    other = make_conversation(carol, alice)
    data = {**page_data(admin_client.get(url)), "conversation": other.pk, "sender": carol.pk}
    assert admin_post(url, data).status_code == 302
    message.refresh_from_db()
    assert (message.conversation_id, message.sender_id) == (conversation.pk, alice.pk)

    services.message_delete(message=message, actor=alice)
    assert set(admin_client.get(url).context["adminform"].form.fields) == set()


def test_the_delete_action_leaves_tombstones_like_the_api(admin_post, client_for, conversation, alice, bob):
    first, second = Message.objects.filter(conversation=conversation).order_by("sent_at")
    services.message_edit(message=second, actor=alice, message_body="second, edited")
    assert unread(conversation, bob) == 2
    recorder = EventRecorder(alice, bob)
    response = admin_post(
        "/admin/chats/message/", {"action": "tombstone", "_selected_action": [second.pk]}
    )
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.is_deleted and second.message_body == "" and not second.edits.exists()
    assert unread(conversation, bob) == 1
    assert_stored_state_matches_rows()
    assert_timeline_is_whole(client_for, conversation)
    assert recorder.types() == {alice: ["message.deleted"], bob: ["message.deleted"]}


def test_message_rows_and_their_history_cannot_be_deleted_or_forged(admin_client, admin_post, conversation, alice):
    message = Message.objects.get(message_body="first")
    services.message_edit(message=message, actor=alice, message_body="first, edited")
    edit = MessageEdit.objects.get()
    changelist = admin_client.get("/admin/chats/message/")
    assert "delete_selected" not in dict(changelist.context["action_form"].fields["action"].choices)
    assert admin_post(f"/admin/chats/message/{message.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_post("/admin/chats/messageedit/add/", {"message": message.pk, "message_body": "x"}).status_code == 403
    assert admin_post(f"/admin/chats/messageedit/{edit.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_post(f"/admin/chats/messageedit/{edit.pk}/change/", {"message_body": "forged"}).status_code == 403
    assert admin_client.get(f"/admin/chats/messageedit/{edit.pk}/change/").status_code == 200  # view only
    edit.refresh_from_db()
    assert edit.message_body == "first" and Message.objects.count() == 2


# --- conversations -----------------------------------------------------------------
def test_creating_a_conversation_in_the_admin_is_conversation_create(
    admin_post, client_for, alice, bob, carol
):
    recorder = EventRecorder(alice, bob, carol)
    response = admin_post(
        "/admin/chats/conversation/add/",
        {"created_by": alice.pk, "members": [bob.pk, carol.pk], "first_message": "welcome"},
    )
    assert response.status_code == 302, errors_of(response)
    conversation = Conversation.objects.get()
    assert set(conversation.participants.all()) == {alice, bob, carol}
    assert conversation.message_count == 1 and conversation.last_message.message_body == "welcome"
    assert (unread(conversation, alice), unread(conversation, bob)) == (0, 1)
    assert_stored_state_matches_rows()
    assert_timeline_is_whole(client_for, conversation)
    assert recorder.types() == {user: ["conversation.created"] for user in (alice, bob, carol)}


def test_the_same_pair_again_in_the_admin_opens_their_conversation(admin_client, admin_post, conversation, alice, bob):
    response = admin_post(
        "/admin/chats/conversation/add/", {"created_by": bob.pk, "members": [alice.pk], "first_message": "again"}
    )
    assert response.status_code == 302
    assert response.url == f"/admin/chats/conversation/{conversation.pk}/change/"
    assert "already share" in admin_client.get(response.url).content.decode()
    assert Conversation.objects.count() == 1
    conversation.refresh_from_db()
    assert conversation.message_count == 3 and conversation.last_message.message_body == "again"
    assert_stored_state_matches_rows()


@pytest.mark.parametrize(
    "members, message",
    [
        ("creator only", "A conversation needs at least one participant besides you."),
        ("deactivated", "Not an active user: "),
    ],
)
def test_a_conversation_the_service_refuses_is_a_form_error(admin_post, alice, bob, members, message):
    if members == "deactivated":
        User.objects.filter(pk=bob.pk).update(is_active=False)
    response = admin_post(
        "/admin/chats/conversation/add/",
        {"created_by": alice.pk, "members": [alice.pk if members == "creator only" else bob.pk]},
    )
    assert message in errors_of(response)
    assert not Conversation.objects.exists() and not ConversationMembership.objects.exists()


def test_a_conversation_itself_is_read_only_in_the_admin(admin_client, conversation, carol):
    page = admin_client.get(f"/admin/chats/conversation/{conversation.pk}/change/")
    assert set(page.context["adminform"].form.fields) == set()
    data = {**page_data(page), "created_by": carol.pk, "message_count": 0}
    admin_client.post(f"/admin/chats/conversation/{conversation.pk}/change/", data)
    conversation.refresh_from_db()
    assert conversation.created_by_id != carol.pk and conversation.message_count == 2


def test_the_membership_inline_adds_and_removes_through_the_participant_services(
    admin_client, admin_post, client_for, conversation, alice, bob, carol
):
    url, data = membership_change(admin_client, conversation, remove=[bob], add=[carol])
    recorder = EventRecorder(alice, bob, carol)
    response = admin_post(url, data)
    assert response.status_code == 302, errors_of(response)
    assert set(conversation.participants.all()) == {alice, carol}
    joined = ConversationMembership.objects.get(conversation=conversation, user=carol)
    conversation.refresh_from_db()
    assert joined.unread_count == 0 and joined.last_read_at == conversation.last_activity_at
    assert conversation.direct_key is None  # no longer the unchanged pair
    assert_stored_state_matches_rows()
    assert_timeline_is_whole(client_for, conversation)
    received = recorder.types()
    assert received[bob] == ["conversation.removed"]
    # One POST, two services, each recording its events when it ends: the removal's update went
    # to the members of that moment, before carol was added; she is told of the conversation once.
    assert received[carol] == ["conversation.created"]
    assert set(received[alice]) == {"conversation.updated"}


@override_settings(CHATS_MAX_PARTICIPANTS=100)
def test_a_refused_addition_rolls_back_the_whole_admin_request(admin_client, admin_post, alice, bob, carol):
    """At a 100-participant cap: the removal in the same POST is undone with the refused addition."""
    others = UserFactory.create_batch(98)
    conversation = make_conversation(alice, bob, *others, messages=("hello",))
    dave = UserFactory()
    url, data = membership_change(admin_client, conversation, remove=[bob], add=[carol, dave])
    recorder = EventRecorder(bob, carol, dave)
    response = admin_post(url, data)
    assert "A conversation has at most 100 participants." in errors_of(response)
    assert conversation.memberships.count() == 100
    assert conversation.memberships.filter(user=bob).exists()
    assert not conversation.memberships.filter(user__in=[carol, dave]).exists()
    assert_stored_state_matches_rows()
    assert recorder.types() == {bob: [], carol: [], dave: []}


def test_a_deactivated_user_cannot_be_added_in_the_inline(admin_client, admin_post, conversation, carol):
    User.objects.filter(pk=carol.pk).update(is_active=False)
    url, data = membership_change(admin_client, conversation, add=[carol])
    assert "This account is deactivated" in errors_of(admin_post(url, data))
    assert conversation.memberships.count() == 2


def test_deleting_a_conversation_in_the_admin_tells_every_member(admin_post, conversation, alice, bob, carol):
    other = make_conversation(carol, alice, messages=("kept",))
    recorder = EventRecorder(alice, bob)
    response = admin_post(f"/admin/chats/conversation/{conversation.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Conversation.objects.all()) == [other]
    assert list(Message.objects.values_list("message_body", flat=True)) == ["kept"]
    assert_stored_state_matches_rows()
    assert recorder.types() == {alice: ["conversation.removed"], bob: ["conversation.removed"]}


# --- memberships -------------------------------------------------------------------
def test_adding_a_membership_in_the_admin_is_add_participant(admin_post, conversation, alice, bob, carol):
    recorder = EventRecorder(alice, carol)
    add_url = "/admin/chats/conversationmembership/add/"
    response = admin_post(add_url, {"conversation": conversation.pk, "user": carol.pk})
    assert response.status_code == 302, errors_of(response)
    assert unread(conversation, carol) == 0
    conversation.refresh_from_db()
    assert conversation.direct_key is None
    assert_stored_state_matches_rows()
    assert recorder.types() == {alice: ["conversation.updated"], carol: ["conversation.created"]}

    again = admin_post(add_url, {"conversation": conversation.pk, "user": carol.pk})
    assert "already exists" in errors_of(again)
    assert conversation.memberships.count() == 3


def test_a_membership_cannot_be_edited_by_hand(admin_client, admin_post, conversation, bob):
    membership = ConversationMembership.objects.get(conversation=conversation, user=bob)
    url = f"/admin/chats/conversationmembership/{membership.pk}/change/"
    assert admin_client.get(url).status_code == 200  # view only
    assert admin_post(url, {"unread_count": 0, "user": bob.pk, "conversation": conversation.pk}).status_code == 403
    assert unread(conversation, bob) == 2


def test_deleting_memberships_in_the_admin_is_leaving(admin_post, conversation, alice, bob, carol):
    group = make_conversation(alice, bob, carol, messages=("hi all",))
    bob_in_pair = ConversationMembership.objects.get(conversation=conversation, user=bob)
    recorder = EventRecorder(alice, bob)
    response = admin_post(f"/admin/chats/conversationmembership/{bob_in_pair.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert recorder.types() == {alice: ["conversation.updated"], bob: ["conversation.removed"]}
    conversation.refresh_from_db()
    assert conversation.direct_key is None

    selected = ConversationMembership.objects.filter(conversation=group).exclude(user=alice)
    recorder = EventRecorder(alice, bob, carol)
    response = admin_post(
        "/admin/chats/conversationmembership/",
        {"action": "delete_selected", "_selected_action": list(selected.values_list("pk", flat=True)), "post": "yes"},
    )
    assert response.status_code == 302
    assert list(group.participants.all()) == [alice]
    received = recorder.types()
    # Two removals, each recording its events as it ends: whoever left second was still a member
    # when the first left, and was told.
    assert sorted([received[bob], received[carol]], key=len) == [
        ["conversation.removed"], ["conversation.updated", "conversation.removed"]]
    assert set(received[alice]) == {"conversation.updated"}
    assert_stored_state_matches_rows()


# --- users -------------------------------------------------------------------------
def test_deleting_a_user_who_never_wrote_leaves_their_conversations_first(admin_post, conversation, alice, bob, carol):
    group = make_conversation(alice, carol, bob, messages=("hi",))
    recorder = EventRecorder(alice, carol)
    response = admin_post(f"/admin/chats/user/{bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=bob.pk).exists()
    assert set(group.participants.all()) == {alice, carol}
    conversation.refresh_from_db()
    assert conversation.direct_key is None
    assert_stored_state_matches_rows()
    received = recorder.types()
    assert received[alice] == ["conversation.updated", "conversation.updated"]
    assert received[carol] == ["conversation.updated"]


def test_a_user_who_sent_messages_cannot_be_deleted_only_deactivated(admin_client, admin_post, conversation, alice):
    page = admin_client.get(f"/admin/chats/user/{alice.pk}/delete/").content.decode()
    assert "protected related objects" in page and "deactivate the account instead" in page
    assert admin_post(f"/admin/chats/user/{alice.pk}/delete/", {"post": "yes"}).status_code == 200
    assert User.objects.filter(pk=alice.pk).exists() and Message.objects.count() == 2
    with pytest.raises(Exception, match="deactivate the account instead"):
        services.user_delete(user=alice)
    assert_stored_state_matches_rows()


def test_adding_a_user_in_the_admin_gives_an_account_that_logs_in(admin_post, api):
    response = admin_post(
        "/admin/chats/user/add/",
        {"email": "New.Person@Example.com", "first_name": "New", "last_name": "Person",
         "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    login = {"email": "new.person@example.com", "password": "a-long-pass-phrase-9"}
    assert api.post("/api/token/", login).status_code == 200
