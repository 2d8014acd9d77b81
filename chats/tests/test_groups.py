"""
Group details and roles (issue 15) and large groups (issue 14): PATCH /api/conversations/{id}/,
GET and PATCH .../participants/[{user_id}/], who may do what by role (the matrix below covers
owner, admin, member and non-participant for every endpoint a role changes), ownership passing
on, the avatar's access, the events, and bounded responses and queries for 1,000 people.
"""
import json
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from attachments import services as attachment_services
from attachments.models import Attachment
from attachments.tests.helpers import png_upload, upload
from chats import services, services_groups, services_reactions
from chats.models import MAX_INLINE_PARTICIPANTS, Conversation, ConversationMembership, Event, User
from chats.tests.factories import UserFactory, make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db

ACTORS = ("owner", "admin", "member", "outsider")


def url(conversation, tail: str = "") -> str:
    return f"/api/conversations/{conversation.pk}/{tail}"


def frames(user, event_type):
    return [e.frame for e in Event.objects.filter(user=user).order_by("event_id") if e.frame["type"] == event_type]


def role_in(conversation, user) -> str | None:
    return ConversationMembership.objects.filter(conversation=conversation, user=user).values_list(
        "role", flat=True
    ).first()


class Group:
    """Olive owns it; Ada and Abe are admins; Mo and Tess are members; Oscar is in none of it."""

    def __init__(self):
        self.owner = UserFactory(first_name="Olive", last_name="Owner")
        self.admin = UserFactory(first_name="Ada", last_name="Admin")
        self.admin2 = UserFactory(first_name="Abe", last_name="Admin")
        self.member = UserFactory(first_name="Mo", last_name="Member")
        self.target = UserFactory(first_name="Tess", last_name="Target")
        self.outsider = UserFactory(first_name="Oscar", last_name="Outsider")
        self.newcomer = UserFactory(first_name="Nina", last_name="Newcomer")
        self.conversation = make_conversation(self.owner, self.admin, self.admin2, self.member, self.target)
        for admin in (self.admin, self.admin2):
            services_groups.participant_set_role(
                conversation=self.conversation, actor=self.owner, user_id=admin.pk, role="admin"
            )
        self.message = send(self.conversation, self.member, "zanzibar plans")

    def ids(self) -> dict:
        return {name: str(getattr(self, name).pk) for name in ("owner", "admin2", "target", "newcomer")} | {
            "message": str(self.message.pk)
        }


@pytest.fixture
def group(db):
    return Group()


# --- The matrix: every role against every endpoint whose rules depend on it ------------------------
def by_role(owner, admin, member, outsider=404):
    return dict(owner=owner, admin=admin, member=member, outsider=outsider)


MATRIX = [
    ("GET", "", None, by_role(200, 200, 200)),
    ("PATCH", "", {"title": "Renamed", "description": "About us"}, by_role(200, 200, 403)),
    ("GET", "participants/", None, by_role(200, 200, 200)),
    ("POST", "participants/", {"user_id": "{newcomer}"}, by_role(201, 201, 403)),
    ("PATCH", "participants/{target}/", {"role": "admin"}, by_role(200, 403, 403)),
    ("PATCH", "participants/{admin2}/", {"role": "member"}, by_role(200, 403, 403)),
    ("PATCH", "participants/{owner}/", {"role": "member"}, by_role(400, 403, 403)),
    ("DELETE", "participants/{target}/", None, by_role(204, 204, 403)),
    ("DELETE", "participants/{admin2}/", None, by_role(204, 403, 403)),
    ("DELETE", "participants/{owner}/", None, by_role(204, 403, 403)),
    ("GET", "pins/", None, by_role(200, 200, 200)),
    ("POST", "pins/", {"message_id": "{message}"}, by_role(201, 201, 403)),
    ("DELETE", "pins/{message}/", None, by_role(204, 204, 403)),
]
CELLS = [
    pytest.param(method, tail, data, actor, statuses[actor], id=f"{method} {tail or '.'} as {actor}")
    for method, tail, data, statuses in MATRIX
    for actor in ACTORS
]


@pytest.mark.parametrize("method,tail,data,actor,expected", CELLS)
def test_role_matrix(group, client_for, method, tail, data, actor, expected):
    ids = group.ids()
    path = url(group.conversation, tail.format(**ids))
    body = None if data is None else {k: v.format(**ids) for k, v in data.items()}
    client = client_for(getattr(group, actor))
    before = list(ConversationMembership.objects.order_by("pk").values_list("pk", "role"))

    response = client.get(path) if method == "GET" else getattr(client, method.lower())(path, body, format="json")

    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error(response, expected)
        text = response.content.decode()
        assert group.owner.email not in text and "zanzibar" not in text
        if method != "GET":  # a refused write changes nothing
            assert list(ConversationMembership.objects.order_by("pk").values_list("pk", "role")) == before
            assert Conversation.objects.get(pk=group.conversation.pk).title == ""


def test_an_outsider_gets_the_answer_of_an_unknown_conversation(group, client_for):
    client = client_for(group.outsider)
    requests = [
        ("patch", "", {"title": "x"}),
        ("get", "participants/", None),
        ("patch", f"participants/{group.target.pk}/", {"role": "admin"}),
    ]
    for method, tail, data in requests:
        path = url(group.conversation, tail)
        random = path.replace(str(group.conversation.pk), str(uuid.uuid4()))
        real, unknown = (getattr(client, method)(p, data, format="json") for p in (path, random))
        assert (real.status_code, real.json()) == (unknown.status_code, unknown.json())
        assert real.status_code == 404


# --- Two-person conversations keep today's rules -----------------------------------------------------
class TestTwoPerson:
    def test_either_person_adds_and_pins_the_owner_removes(self, alice, bob, carol, conversation, client_for):
        first = conversation.messages.order_by("sent_at").first()
        pin = client_for(bob).post(url(conversation, "pins/"), {"message_id": str(first.pk)}, format="json")
        assert pin.status_code == 201
        assert_error(client_for(bob).delete(url(conversation, f"participants/{alice.pk}/")), 403)
        added = client_for(bob).post(url(conversation, "participants/"), {"user_id": str(carol.pk)}, format="json")
        assert added.status_code == 201
        # Now a group of three: Bob is a plain member, Alice (the creator) its owner.
        assert_error(client_for(bob).delete(url(conversation, "pins/") + f"{first.pk}/"), 403)
        assert client_for(alice).delete(url(conversation, f"participants/{carol.pk}/")).status_code == 204

    def test_the_owner_removes_the_other(self, alice, bob, conversation, client_for):
        assert client_for(alice).delete(url(conversation, f"participants/{bob.pk}/")).status_code == 204
        assert list(conversation.participants.all()) == [alice]

    def test_no_title_description_or_avatar(self, alice, conversation, client_for):
        response = client_for(alice).patch(url(conversation), {"title": "Us"}, format="json")
        assert_error(response, 400)
        assert "Only conversations of 3 or more people" in response.json()["errors"][0]["detail"]
        assert Conversation.objects.get(pk=conversation.pk).title == ""

    def test_roles_are_creator_owner_other_member(self, alice, bob, conversation, client_for):
        body = client_for(bob).get(url(conversation)).json()
        assert body["role"] == "member"
        roles = {p["user_id"]: p["role"] for p in body["participants"]}
        assert roles == {str(alice.pk): "owner", str(bob.pk): "member"}


# --- Details ----------------------------------------------------------------------------------------
class TestDetails:
    def test_patch_answers_the_conversation_and_tells_everyone(self, group, client_for):
        response = client_for(group.admin).patch(
            url(group.conversation), {"title": "Trip", "description": "Who brings what"}, format="json"
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["title"], body["description"], body["avatar"], body["role"]) == (
            "Trip", "Who brings what", None, "admin"
        )
        for user in (group.owner, group.admin, group.member, group.target):
            (frame,) = frames(user, "conversation.updated")
            assert frame["conversation"]["title"] == "Trip"
            assert frame["conversation"]["role"] == role_in(group.conversation, user)
        assert frames(group.outsider, "conversation.updated") == []
        # The same again changes nothing and tells nobody.
        client_for(group.admin).patch(url(group.conversation), {"title": "Trip"}, format="json")
        assert len(frames(group.member, "conversation.updated")) == 1

    def test_each_recipients_frame_is_the_conversation_as_rest_shows_it_to_them(self, group, client_for):
        services_reactions.reaction_add(message=group.message, user=group.admin, emoji="\N{THUMBS UP SIGN}")
        services.conversation_mark_read(conversation=group.conversation, user=group.target)
        client_for(group.owner).patch(url(group.conversation), {"title": "Same as REST"}, format="json")
        for user in (group.owner, group.admin, group.member, group.target):
            frame = frames(user, "conversation.updated")[-1]
            assert frame["conversation"] == client_for(user).get(url(group.conversation)).json()
        mine = frames(group.admin, "conversation.updated")[-1]["conversation"]["last_message"]["reactions"]
        assert mine == [{"emoji": "\N{THUMBS UP SIGN}", "count": 1, "me": True}]

    @pytest.mark.parametrize("payload,attr", [
        ({"title": "x" * 101}, "title"),
        ({"title": 42}, "title"),
        ({"description": "d" * 1001}, "description"),
        ({"avatar": "not-an-id"}, "avatar"),
        ({"avatar": str(uuid.uuid4())}, "avatar"),
    ])
    def test_bad_input_is_a_400_on_its_field(self, group, client_for, payload, attr):
        assert_error(client_for(group.owner).patch(url(group.conversation), payload, format="json"), 400, attr=attr)

    def test_avatar_is_an_unsent_image_of_yours_and_the_participants_download_it(self, group, client_for):
        image = attachment_services.attachment_create(uploader=group.admin, upload=png_upload("us.png"))
        response = client_for(group.admin).patch(url(group.conversation), {"avatar": str(image.pk)}, format="json")
        assert response.status_code == 200, response.content
        download = f"/api/attachments/{image.pk}/download/"
        assert response.json()["avatar"] == {"attachment_id": str(image.pk), "download_url": download}
        got = client_for(group.member).get(download)
        assert got.status_code == 200 and b"".join(got.streaming_content).startswith(b"\x89PNG")
        assert_error(client_for(group.outsider).get(download), 404)
        # Pruning unsent uploads keeps it: it is the group's now.
        assert attachment_services.attachments_prune(hours=0) == 0
        # A replaced avatar is deleted; null removes the new one.
        other = attachment_services.attachment_create(uploader=group.owner, upload=png_upload("new.png"))
        client_for(group.owner).patch(url(group.conversation), {"avatar": str(other.pk)}, format="json")
        assert not Attachment.objects.filter(pk=image.pk).exists()
        removed = client_for(group.owner).patch(url(group.conversation), {"avatar": None}, format="json")
        assert removed.json()["avatar"] is None
        assert not Attachment.objects.filter(pk=other.pk).exists()

    def test_avatar_refusals(self, group, client_for):
        text = attachment_services.attachment_create(uploader=group.owner, upload=upload())
        theirs = attachment_services.attachment_create(uploader=group.member, upload=png_upload())
        sent = attachment_services.attachment_create(uploader=group.owner, upload=png_upload())
        services.message_send(
            conversation=group.conversation, sender=group.owner, message_body="", attachment_ids=[sent.pk]
        )
        for attachment, words in ((text, "image"), (theirs, "No upload of yours"), (sent, "sent with a message")):
            response = client_for(group.owner).patch(
                url(group.conversation), {"avatar": str(attachment.pk)}, format="json"
            )
            body = assert_error(response, 400, attr="avatar")
            assert words in body["errors"][0]["detail"]

    def test_a_deleted_conversation_takes_its_avatar(self, group):
        image = attachment_services.attachment_create(uploader=group.owner, upload=png_upload())
        services_groups.conversation_update(conversation=group.conversation, actor=group.owner, avatar_id=image.pk)
        services.conversation_delete(conversation=group.conversation)
        assert not Attachment.objects.filter(pk=image.pk).exists()


# --- Roles -------------------------------------------------------------------------------------------
class TestRoles:
    def test_set_role_answers_the_participant_and_tells_everyone(self, group, client_for):
        response = client_for(group.owner).patch(
            url(group.conversation, f"participants/{group.target.pk}/"), {"role": "admin"}, format="json"
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["user_id"], body["role"], body["first_name"]) == (str(group.target.pk), "admin", "Tess")
        assert set(body) == {"user_id", "first_name", "last_name", "role", "joined_at"}
        for user in (group.owner, group.member, group.target):
            assert frames(user, "participant.role_changed")[-1] == {
                "type": "participant.role_changed", "conversation_id": str(group.conversation.pk),
                "user_id": str(group.target.pk), "role": "admin", "changed_by": str(group.owner.pk),
                "event_id": frames(user, "participant.role_changed")[-1]["event_id"],
            }
        # Now an admin: Tess may add people.
        added = client_for(group.target).post(
            url(group.conversation, "participants/"), {"user_id": str(group.newcomer.pk)}, format="json"
        )
        assert added.status_code == 201
        assert role_in(group.conversation, group.newcomer) == "member"

    @pytest.mark.parametrize("payload", [{"role": "owner"}, {"role": "boss"}, {}, {"role": None}])
    def test_bad_roles_are_a_400(self, group, client_for, payload):
        response = client_for(group.owner).patch(
            url(group.conversation, f"participants/{group.target.pk}/"), payload, format="json"
        )
        assert_error(response, 400, attr="role")

    def test_unknown_participants_are_a_404(self, group, client_for):
        for who in (group.outsider.pk, uuid.uuid4(), "not-an-id"):
            response = client_for(group.owner).patch(
                url(group.conversation, f"participants/{who}/"), {"role": "admin"}, format="json"
            )
            assert_error(response, 404)

    def test_ownership_passes_to_the_oldest_admin_else_the_oldest_member(self, group, client_for):
        def oldest(role):  # they all joined at once: the membership id breaks the tie
            members = ConversationMembership.objects.filter(conversation=group.conversation, role=role)
            return User.objects.get(pk=members.order_by("joined_at", "pk").values_list("user_id", flat=True)[0])

        heir = oldest("admin")
        left = client_for(group.owner).delete(url(group.conversation, f"participants/{group.owner.pk}/"))
        assert left.status_code == 204
        assert role_in(group.conversation, heir) == "owner"
        frame = frames(group.member, "participant.role_changed")[-1]
        assert (frame["user_id"], frame["role"], frame["changed_by"]) == (str(heir.pk), "owner", None)
        # No admin left: the member who joined first.
        other_admin = oldest("admin")
        client_for(heir).delete(url(group.conversation, f"participants/{other_admin.pk}/"))
        heir_of_heir = oldest("member")
        client_for(heir).delete(url(group.conversation, f"participants/{heir.pk}/"))
        assert role_in(group.conversation, heir_of_heir) == "owner"
        assert ConversationMembership.objects.filter(conversation=group.conversation, role="owner").count() == 1

    def test_the_oldest_admin_by_joining_time(self, alice, bob, carol, mallory):
        conversation = make_conversation(alice, bob, carol)
        services.conversation_add_participant(conversation=conversation, actor=alice, user_id=mallory.pk)
        for user in (mallory, bob):  # Mallory named first, but Bob joined first
            services_groups.participant_set_role(conversation=conversation, actor=alice, user_id=user.pk, role="admin")
        services.conversation_remove_participant(conversation=conversation, actor=alice, user_id=alice.pk)
        assert role_in(conversation, bob) == "owner" and role_in(conversation, mallory) == "admin"

    def test_participant_list_pages_everyone_with_roles(self, group, client_for):
        response = client_for(group.member).get(url(group.conversation, "participants/"), {"page_size": 2})
        body = response.json()
        assert body["count"] == 5 and len(body["results"]) == 2 and body["next"]
        everyone = client_for(group.member).get(url(group.conversation, "participants/")).json()["results"]
        assert {p["user_id"]: p["role"] for p in everyone} == {
            str(group.owner.pk): "owner", str(group.admin.pk): "admin", str(group.admin2.pk): "admin",
            str(group.member.pk): "member", str(group.target.pk): "member",
        }
        assert [p["first_name"] for p in everyone] == sorted(p["first_name"] for p in everyone)


# --- Large groups ------------------------------------------------------------------------------------
def crowd(n: int) -> list[User]:
    """n active users at once (bulk insert: no per-user factory round trips)."""
    users = [
        User(email=f"crowd-{uuid.uuid4().hex[:12]}@example.com", first_name=f"P{i:04d}", last_name="Crowd")
        for i in range(n)
    ]
    return User.objects.bulk_create(users)


def queries_of(action) -> tuple[int, int]:
    """(statements other than the events' insert, the events' insert statements)."""
    with CaptureQueriesContext(connection) as captured:
        action()
    inserts = sum(1 for q in captured.captured_queries if re.match(r'INSERT INTO [`"]?chats_event[`"]? ', q["sql"]))
    return len(captured.captured_queries) - inserts, inserts


@pytest.fixture
def big(alice):
    """Alice's group of 999 (one below the default cap of 1,000)."""
    others = crowd(998)
    conversation, _ = services.conversation_create(creator=alice, participant_ids=[u.pk for u in others])
    send(conversation, alice, "hello, everyone")
    return conversation


class TestLargeGroups:
    def test_the_default_cap_is_1000(self, big, alice, bob, carol, client_for):
        added = client_for(alice).post(url(big, "participants/"), {"user_id": str(bob.pk)}, format="json")
        assert added.status_code == 201
        response = client_for(alice).post(url(big, "participants/"), {"user_id": str(carol.pk)}, format="json")
        body = assert_error(response, 400, attr="user_id")
        assert "at most 1000 participants" in body["errors"][0]["detail"]
        assert Conversation.objects.get(pk=big.pk).participant_count == 1000 == big.memberships.count()

    def test_representations_list_100_participants_and_the_count(self, big, alice, client_for):
        client = client_for(alice)
        detail = client.get(url(big)).json()
        listed = client.get("/api/conversations/").json()["results"][0]
        for body in (detail, listed):
            assert len(body["participants"]) == MAX_INLINE_PARTICIPANTS
            assert body["participant_count"] == 999
        assert detail == listed

    def test_the_participant_list_pages_through_all_in_fixed_queries(
        self, big, alice, client_for, django_assert_num_queries
    ):
        client = client_for(alice)
        seen = []
        page = url(big, "participants/?page_size=100")
        while page:
            # the conversation (access check, its participant_count: no COUNT), the page
            with django_assert_num_queries(2):
                body = client.get(page).json()
            seen += [p["user_id"] for p in body["results"]]
            page = body["next"]
        assert len(seen) == len(set(seen)) == 999

    def test_adding_and_removing_cost_fixed_queries_in_a_group_of_999_or_of_4(
        self, big, alice, bob, carol, client_for
    ):
        small = make_conversation(alice, *crowd(3))
        costs = {}
        for name, conversation in (("small", small), ("big", big)):
            client = client_for(alice)
            add = queries_of(
                lambda: client.post(url(conversation, "participants/"), {"user_id": str(bob.pk)}, format="json")
            )
            remove = queries_of(lambda: client.delete(url(conversation, f"participants/{bob.pk}/")))
            rename = queries_of(lambda: client.patch(url(conversation), {"title": name}, format="json"))
            costs[name] = (add, remove, rename)
        # Besides storing the events: the same statements whatever the size (their frames' INSERT included).
        assert [cost[0] for cost in costs["small"]] == [20, 14, 14], costs
        assert [cost[1] for cost in costs["small"]] == [1, 1, 1], costs
        # 999 people are more than EVENTS_INLINE_RECIPIENTS: the events are queued in the outbox,
        # one INSERT, instead of the streams' lock and UPDATE, the frame's and the events' INSERTs
        # (numbered just after the commit, off the request: chats/outbox.py).
        assert [cost for cost in costs["big"]] == [(18, 0), (12, 0), (12, 0)], costs

    def test_events_carry_100_people_whatever_the_size(self, big, alice, bob, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):  # queued, then drained after the commit
            services.conversation_add_participant(conversation=big, actor=alice, user_id=bob.pk)
        (created,) = frames(bob, "conversation.created")
        updated = Event.objects.filter(payload__frame__type="conversation.updated").order_by("-id").first().frame
        for frame in (created, updated):
            assert len(frame["conversation"]["participants"]) == MAX_INLINE_PARTICIPANTS
            assert frame["conversation"]["participant_count"] == 1000
            assert len(json.dumps(frame)) < 16_000  # about 12.5 KB with 100 people inline
        assert Event.objects.filter(payload__frame__type="conversation.updated").count() == 999


# --- The data migration ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_conversations_an_owner_and_a_count():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("chats", "0009_groups_and_roles")]
    executor.migrate([("chats", "0008_merge_0007_presence_0007_reactions_pins")])  # its siblings undone too
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    HUser = apps.get_model("chats", "User")
    HConversation = apps.get_model("chats", "Conversation")
    HMembership = apps.get_model("chats", "ConversationMembership")
    a, b, c = (HUser.objects.create(email=f"m{i}@example.com", first_name="M", last_name=str(i)) for i in range(3))
    kept = HConversation.objects.create(created_by=a)
    gone = HConversation.objects.create(created_by=a)  # its creator left: the earliest member owns it
    for conversation, members in ((kept, (b, a, c)), (gone, (c, b))):
        for user in members:
            HMembership.objects.create(conversation=conversation, user=user)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("chats", "0010_owners_and_participant_counts")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest, so the current models can read

    roles = dict(
        ((m.conversation_id, m.user_id), m.role) for m in ConversationMembership.objects.all()
    )
    assert roles == {
        (kept.pk, b.pk): "member", (kept.pk, a.pk): "owner", (kept.pk, c.pk): "member",
        (gone.pk, c.pk): "owner", (gone.pk, b.pk): "member",
    }
    assert dict(Conversation.objects.values_list("pk", "participant_count")) == {kept.pk: 3, gone.pk: 2}
