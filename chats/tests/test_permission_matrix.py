"""
The permission matrix: every endpoint and method of the API against every kind of
caller, with the exact status of each cell, and what a refused caller must not learn.

Callers (all but `anonymous` authenticate with a real JWT access token):

- anonymous: no credentials;
- outsider: a signed-in user in none of the conversations under test;
- participant: in the conversation, neither its creator nor the sender of the message;
- owner: the conversation's creator and the message's sender (for /users/me: the user);
- admin: is_staff and is_superuser, in none of the conversations. Admins get no special
  API access to other people's conversations: the same 404 as any outsider.

For a refused cell the body has the one error shape and carries none of the
conversation's message bodies, participant emails or ids beyond those in the request;
for an outsider or admin it is identical to the answer for random ids.

`test_the_matrix_covers_every_route_and_method_of_the_urlconf` walks the URLconf, so
an endpoint added later fails the suite until it is given its row here.
"""
import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from attachments import services as attachment_services
from attachments.models import Attachment
from attachments.tests.helpers import png_upload
from chats import services
from chats.models import Conversation, ConversationMembership, Message, User
from chats.tests.factories import PASSWORD, UserFactory, make_conversation, send
from chats.tests.utils import assert_error
from bots import services as access_token_services
from bots.models import PersonalAccessToken
from notifications import push
from notifications import services as webhook_services
from notifications.models import PushSubscription, Webhook
from notifications.tests.helpers import PUSH_KEYS

pytestmark = pytest.mark.django_db

ACTORS = ("anonymous", "outsider", "participant", "owner", "admin")
NEW_PASSWORD = "a-much-Stronger-passphrase-42"

# Words that occur only in the private conversation's messages (and their history).
SECRET_BODIES = (
    "Meet me at the zanzibar pier",  # the owner's message, before its edit (history)
    "Meet me at the quokka pier",  # the owner's message now
    "A reply about marzipan",  # the participant's reply
)
SECRET_WORDS = ("zanzibar", "quokka", "marzipan")


# --- The world under test ------------------------------------------------------------------
@dataclass
class World:
    owner: User
    participant: User
    third: User
    outsider: User
    admin: User
    newcomer: User  # active, in nothing: someone to add or to start a conversation with
    conversation: Conversation  # owner + participant + third
    message: Message  # sent by the owner, edited once (so it has a history)
    reply: Message  # sent by the participant, replying to `message`
    elsewhere: Message  # the owner's message in another conversation (owner + dave)
    attachment: Attachment | None = None  # an image the owner sent with `message`
    draft: Attachment | None = None  # an image the owner uploaded and has not sent
    webhook: Webhook | None = None  # the owner's webhook: theirs alone to see and manage
    access_token: PersonalAccessToken | None = None  # the owner's personal access token: theirs alone to revoke
    push_subscription: PushSubscription | None = None  # the owner's browser: theirs alone to remove
    tokens: dict = field(default_factory=dict)

    def user(self, actor: str) -> User | None:
        return None if actor == "anonymous" else getattr(self, actor)

    @property
    def ids(self) -> dict[str, str]:
        """Placeholders of paths and payloads."""
        return {
            "conversation": str(self.conversation.pk),
            "message": str(self.message.pk),
            "reply": str(self.reply.pk),
            "elsewhere": str(self.elsewhere.pk),
            "elsewhere_conversation": str(self.elsewhere.conversation_id),
            "owner": str(self.owner.pk),
            "participant": str(self.participant.pk),
            "third": str(self.third.pk),
            "outsider": str(self.outsider.pk),
            "admin": str(self.admin.pk),
            "newcomer": str(self.newcomer.pk),
            "attachment": str(self.attachment.pk),
            "draft": str(self.draft.pk),
            "webhook": str(self.webhook.pk),
            "access_token": str(self.access_token.pk),
            "push_subscription": str(self.push_subscription.pk),
        }

    def private_strings(self) -> set[str]:
        """What only the conversation's participants may see."""
        members = (self.owner, self.participant, self.third)
        return (
            set(SECRET_BODIES)
            | set(SECRET_WORDS)
            | {u.email for u in members}
            | {str(u.pk) for u in members}
            | {str(self.conversation.pk), str(self.message.pk), str(self.reply.pk)}
            | {str(self.attachment.pk), str(self.draft.pk), "secret-plans.png"}
            | {str(self.webhook.pk), self.webhook.url, self.webhook.secret}
            | {str(self.access_token.pk), self.access_token.prefix}
            | {str(self.push_subscription.pk), self.push_subscription.endpoint}
        )

    def client(self, actor: str) -> APIClient:
        client = APIClient()
        user = self.user(actor)
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        return client


@pytest.fixture
def world(db):
    owner = UserFactory(first_name="Olive", last_name="Owner")
    participant = UserFactory(first_name="Pablo", last_name="Participant")
    third = UserFactory(first_name="Tess", last_name="Third")
    outsider = UserFactory(first_name="Oscar", last_name="Outsider")
    admin = User.objects.create_superuser(
        "root@example.com", PASSWORD, first_name="Ada", last_name="Admin"
    )
    newcomer = UserFactory(first_name="Nina", last_name="Newcomer")
    dave = UserFactory(first_name="Dave", last_name="Elsewhere")

    conversation = make_conversation(owner, participant, third)
    message = send(conversation, owner, SECRET_BODIES[0])
    services.message_edit(message=message, actor=owner, message_body=SECRET_BODIES[1])
    reply = send(conversation, participant, SECRET_BODIES[2], parent_message_id=message.pk)
    elsewhere = send(make_conversation(owner, dave), owner, "Nothing to see here")
    # An image sent with the owner's message (attached in place: the message counts stay as they are).
    attachment = attachment_services.attachment_create(uploader=owner, upload=png_upload("secret-plans.png"))
    Attachment.objects.filter(pk=attachment.pk).update(message=message)
    Message.objects.filter(pk=message.pk).update(has_attachments=True)
    draft = attachment_services.attachment_create(uploader=owner, upload=png_upload("draft.png"))
    message.refresh_from_db()
    webhook = webhook_services.webhook_create(owner=owner, url="https://hooks.example.com/olive-private")
    access_token, _ = access_token_services.access_token_create(user=owner, name="olive-bot", scopes=["read"])
    push_subscription, _ = push.subscription_register(
        user=owner, endpoint="https://push.example.com/olive-private", **PUSH_KEYS
    )
    return World(
        owner, participant, third, outsider, admin, newcomer, conversation, message, reply, elsewhere,
        attachment, draft, webhook=webhook, access_token=access_token, push_subscription=push_subscription,
    )


# --- The matrix ----------------------------------------------------------------------------
def fill(template, ids: dict, actor_user: User | None, world: World):
    """Substitutes {placeholders} in a path or payload (recursively)."""
    if isinstance(template, str):
        values = dict(ids)
        me = actor_user or world.participant  # anonymous callers try a participant's id
        values.update(me=str(me.pk), my_email=me.email)
        values.update(owner_email=world.owner.email, unique=uuid.uuid4().hex[:12])
        return template.format(**values)
    if isinstance(template, dict):
        return {k: fill(v, ids, actor_user, world) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, ids, actor_user, world) for v in template]
    return template


def own_push_subscriptions(world, response, actor):
    subscriptions = response.json()["subscriptions"]
    assert len(subscriptions) == (1 if actor == "owner" else 0), subscriptions
    if actor != "owner":
        assert_nothing_private(world, response, sent="")


def count_is(n):
    def check(world, response, actor=None):
        body = response.json()
        assert body["count"] == n, body
        assert len(body["results"]) == min(n, 20)

    return check


def is_me(world, response, actor):
    assert response.json()["user_id"] == str(world.user(actor).pk)


def own_presence(world, response, actor):
    assert [p["user_id"] for p in response.json()] == [str(world.user(actor).pk)], response.json()


def presence_if_shared(world, response, actor):
    """The owner's presence only to themself and to people who share a conversation with them."""
    me = world.user(actor)
    shares = me.pk == world.owner.pk or world.owner.memberships.filter(conversation__memberships__user=me).exists()
    assert [p["user_id"] for p in response.json()] == ([str(world.owner.pk)] if shares else []), response.json()


def own_events_only(world, response, actor):
    """Without `since`, only the position; from the start, frames of the caller's conversations only."""
    body = response.json()
    assert body["results"] == [] and isinstance(body["last_event_id"], int)
    full = call(world, actor, "GET", "/api/events/?since=0&page_size=100", None)
    assert full.status_code == 200, full.content
    frames = full.json()["results"]
    mine = {str(pk) for pk in world.user(actor).conversations.values_list("pk", flat=True)}
    assert {frame["conversation_id"] for frame in frames} <= mine, frames
    if not mine:
        assert frames == []
        assert_nothing_private(world, full, sent="")


@dataclass(frozen=True)
class Row:
    """One endpoint and method; `statuses` holds the expected status per caller."""

    method: str
    route: str  # as in the URLconf, with {placeholders} of World.ids
    statuses: dict
    data: object = None
    check: object = None  # check(world, response, actor) for successful cells
    note: str = ""

    def label(self):
        return f"{self.method} {self.route}{' ' + self.note if self.note else ''}"


def per_actor(anonymous, outsider, participant, owner, admin):
    return dict(anonymous=anonymous, outsider=outsider, participant=participant, owner=owner, admin=admin)


def for_members(success, refused_member=None):
    """401 anonymous; 404 for outsider and admin; `success` for members (or `refused_member`)."""
    participant = refused_member if refused_member is not None else success
    return per_actor(401, 404, participant, success, 404)


AUTHENTICATED = per_actor(401, 200, 200, 200, 200)
NOT_ALLOWED = per_actor(401, 405, 405, 405, 405)  # authentication runs before the method check
C = "/api/conversations/{conversation}"
M = "{message}"
REGISTRATION = {
    "email": "new-{unique}@example.com",
    "password": "Unguessable-passphrase-{unique}",
    "first_name": "New",
    "last_name": "Person",
}
PASSWORD_CHANGE = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}


def refresh_token_for(world: World, actor: str) -> str:
    return str(RefreshToken.for_user(world.user(actor) or world.owner))


MATRIX = [
    # --- Discovery and health
    Row("GET", "/api/", per_actor(200, 200, 200, 200, 200), note="(public: what exists, how to log in)"),
    Row("GET", "/api/ping/", AUTHENTICATED, check=is_me),
    Row("GET", "/api/events/", AUTHENTICATED, check=own_events_only),
    Row("GET", "/api/presence/", AUTHENTICATED, check=own_presence, note="(without user_id: yours)"),
    Row("GET", "/api/presence/?user_id={owner}", AUTHENTICATED, check=presence_if_shared),
    Row("GET", "/api/schema/", per_actor(200, 200, 200, 200, 200), note="(public by design)"),
    Row("GET", "/api/docs/", per_actor(200, 200, 200, 200, 200), note="(public by design)"),
    Row("GET", "/api/redoc/", per_actor(200, 200, 200, 200, 200), note="(public by design)"),
    # --- Users
    Row("GET", "/api/users/", per_actor(401, 200, 200, 200, 200), check="people_i_share_a_conversation_with"),
    Row("POST", "/api/users/", per_actor(201, 201, 201, 201, 201), data=REGISTRATION),
    Row("PUT", "/api/users/", NOT_ALLOWED),
    Row("GET", "/api/users/me/", AUTHENTICATED, check=is_me),
    Row("PATCH", "/api/users/me/", AUTHENTICATED, data={"presence_visible": True, "role": "admin"}, check=is_me),
    Row("PUT", "/api/users/me/", NOT_ALLOWED, data={"role": "admin", "is_staff": True}),
    Row("GET", "/api/users/me/notifications/", AUTHENTICATED, note="(your own settings)"),
    Row("PATCH", "/api/users/me/notifications/", AUTHENTICATED, data={"push_include_text": True}),
    Row("DELETE", "/api/users/me/", NOT_ALLOWED),
    Row("POST", "/api/users/me/password/", per_actor(401, 204, 204, 204, 204), data=PASSWORD_CHANGE),
    Row(
        "POST",
        "/api/users/me/password/",
        per_actor(401, 400, 400, 400, 400),
        data={"current_password": "wrong-" + PASSWORD, "new_password": NEW_PASSWORD},
        note="(wrong current password)",
    ),
    Row("GET", "/api/users/{owner}/", per_actor(404, 404, 404, 404, 404), note="(there is no user detail)"),
    # --- Tokens: no caller is special; what counts is what is posted
    Row("POST", "/api/token/", per_actor(200, 200, 200, 200, 200), data="own_credentials"),
    Row(
        "POST",
        "/api/token/",
        per_actor(401, 401, 401, 401, 401),
        data={"email": "{owner_email}", "password": "wrong-" + PASSWORD},
        note="(someone else's email, wrong password)",
    ),
    Row("POST", "/api/token/refresh/", per_actor(200, 200, 200, 200, 200), data="own_refresh"),
    Row("POST", "/api/token/refresh/", per_actor(401, 401, 401, 401, 401), data={"refresh": "not-a-token"}),
    Row("POST", "/api/token/blacklist/", per_actor(200, 200, 200, 200, 200), data="own_refresh"),
    Row("POST", "/api/token/blacklist/", per_actor(401, 401, 401, 401, 401), data={"refresh": "not-a-token"}),
    # --- Conversations
    Row("GET", "/api/conversations/", AUTHENTICATED, check="my_conversations"),
    Row("POST", "/api/conversations/", per_actor(401, 201, 201, 201, 201), data={"participants": ["{newcomer}"]}),
    Row("GET", C + "/", for_members(200)),
    Row("GET", C + ".json", for_members(200), note="(format suffix)"),
    Row("PUT", C + "/", NOT_ALLOWED, data={"participants": ["{outsider}"]}),
    # Group details and roles (the conversation is a group of three: `owner` owns it, `participant`
    # is a plain member). test_groups.py has the full matrix of roles, admins included.
    Row("PATCH", C + "/", for_members(200, refused_member=403), data={"title": "Renamed"}),
    Row("DELETE", C + "/", NOT_ALLOWED),
    Row("POST", C + "/participants/", for_members(201, refused_member=403), data={"user_id": "{newcomer}"}),
    Row("GET", C + "/participants/", for_members(200), check=count_is(3)),
    Row("PATCH", C + "/participants/{third}/", for_members(200, refused_member=403), data={"role": "admin"}),
    Row("DELETE", C + "/participants/{third}/", for_members(204, refused_member=403), note="(remove someone else)"),
    Row("DELETE", C + "/participants/{me}/", per_actor(401, 404, 204, 204, 404), note="(leave)"),
    Row("GET", C + "/read-markers/", for_members(200)),
    Row("GET", C + "/membership/", for_members(200)),
    Row("PATCH", C + "/membership/", for_members(200), data={"muted": True, "archived": True}),
    Row("POST", C + "/read/", for_members(200), data={}),
    Row("POST", C + "/read/", for_members(200), data={"message_id": "{message}"}, note="(up to a message)"),
    # --- Messages of one conversation
    Row("GET", C + "/messages/", for_members(200), check=count_is(2)),
    Row("POST", C + "/messages/", for_members(201), data={"message_body": "hello"}),
    Row("GET", C + "/messages/" + M + "/", for_members(200)),
    Row(
        "GET",
        C + "/messages/{elsewhere}/",
        per_actor(401, 404, 404, 404, 404),
        note="(message of another conversation)",
    ),
    Row("PATCH", C + "/messages/" + M + "/", for_members(200, refused_member=403), data={"message_body": "changed"}),
    Row("PUT", C + "/messages/" + M + "/", NOT_ALLOWED, data={"message_body": "changed"}),
    Row("DELETE", C + "/messages/" + M + "/", for_members(204, refused_member=403)),
    Row("GET", C + "/messages/" + M + "/history/", for_members(200), check=count_is(1)),
    # --- Messages of all my conversations
    Row("GET", "/api/messages/", AUTHENTICATED, check="my_messages"),
    Row(
        "POST",
        "/api/messages/",
        per_actor(401, 400, 201, 201, 400),
        data={"conversation": "{conversation}", "message_body": "hello"},
    ),
    Row("GET", "/api/messages/" + M + "/", for_members(200)),
    Row("GET", "/api/messages/" + M + ".json", for_members(200), note="(format suffix)"),
    Row("PATCH", "/api/messages/" + M + "/", for_members(200, refused_member=403), data={"message_body": "changed"}),
    Row("PUT", "/api/messages/" + M + "/", NOT_ALLOWED, data={"message_body": "changed"}),
    Row("DELETE", "/api/messages/" + M + "/", for_members(204, refused_member=403)),
    Row("GET", "/api/messages/" + M + "/history/", for_members(200), check=count_is(1)),
    # --- Reactions: any participant, to any message of the conversation
    Row("POST", "/api/messages/" + M + "/reactions/", for_members(201), data={"emoji": "\N{THUMBS UP SIGN}"}),
    Row("DELETE", "/api/messages/" + M + "/reactions/?emoji=%F0%9F%91%8D", for_members(204)),
    Row("GET", "/api/messages/" + M + "/reactions/", NOT_ALLOWED),
    # --- Pins: any participant sees them; in a group, its owner and admins pin and unpin
    Row("GET", C + "/pins/", for_members(200), check=count_is(0)),
    Row("POST", C + "/pins/", for_members(201, refused_member=403), data={"message_id": "{message}"}),
    Row("DELETE", C + "/pins/" + M + "/", for_members(204, refused_member=403)),
    Row("GET", C + "/pins/" + M + "/", NOT_ALLOWED),
    # --- Attachments: the uploader, and the participants of the conversation of the message carrying it
    Row("POST", "/api/attachments/", per_actor(401, 201, 201, 201, 201), data="upload"),
    Row("GET", "/api/attachments/{attachment}/", for_members(200)),
    Row("GET", "/api/attachments/{attachment}/download/", for_members(200), check="the_image_inline"),
    Row("GET", "/api/attachments/{attachment}/thumbnail/", for_members(200), check="the_image_inline"),
    Row(
        "GET",
        "/api/attachments/{draft}/download/",
        per_actor(401, 404, 404, 200, 404),
        note="(an upload not sent yet: its uploader only)",
    ),
    # --- Webhooks: their owner's alone (anyone else: 404, as for an unknown id)
    Row("GET", "/api/webhooks/", AUTHENTICATED, check="my_webhooks"),
    Row("POST", "/api/webhooks/", per_actor(401, 201, 201, 201, 201), data={"url": "https://hooks.example.com/new"}),
    Row("GET", "/api/webhooks/{webhook}/", per_actor(401, 404, 404, 200, 404)),
    Row("GET", "/api/webhooks/{webhook}/deliveries/", per_actor(401, 404, 404, 200, 404)),
    Row("DELETE", "/api/webhooks/{webhook}/", per_actor(401, 404, 404, 204, 404)),
    # --- Personal access tokens: their owner's alone
    Row("GET", "/api/tokens/", AUTHENTICATED, check="my_access_tokens"),
    Row("POST", "/api/tokens/", per_actor(401, 201, 201, 201, 201), data={"name": "bot", "scopes": ["read"]}),
    Row("DELETE", "/api/tokens/{access_token}/", per_actor(401, 404, 404, 204, 404)),
    # --- Push subscriptions: their owner's alone
    Row("GET", "/api/push-subscriptions/", AUTHENTICATED, check=own_push_subscriptions),
    Row("POST", "/api/push-subscriptions/", per_actor(401, 201, 201, 201, 201),
        data={"endpoint": "https://push.example.com/new", "keys": PUSH_KEYS}),
    Row("DELETE", "/api/push-subscriptions/{push_subscription}/", per_actor(401, 404, 404, 204, 404)),
]

CELLS = [pytest.param(row, actor, id=f"{row.label()} as {actor}") for row in MATRIX for actor in ACTORS]


def payload_for(row: Row, world: World, actor: str):
    user = world.user(actor)
    if row.data == "own_credentials":
        user = user or world.owner
        return {"email": user.email, "password": PASSWORD}
    if row.data == "own_refresh":
        return {"refresh": refresh_token_for(world, actor)}
    if row.data == "upload":
        return {"file": png_upload("mine.png")}
    return fill(row.data, world.ids, user, world)


def call(world: World, actor: str, method: str, path: str, data):
    return call_with(world.client(actor), method, path, data)


def call_with(client: APIClient, method: str, path: str, data):
    if method == "GET":
        return client.get(path)
    if isinstance(data, dict) and "file" in data:  # an upload
        return client.post(path, data, format="multipart")
    return getattr(client, method.lower())(path, data, format="json")


def randomise(value, world: World):
    """The same request with every id of the world replaced by a fresh random one."""
    if isinstance(value, str):
        for real in set(world.ids.values()):
            value = value.replace(real, str(uuid.uuid4()))
        return value
    if isinstance(value, dict):
        return {k: randomise(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [randomise(v, world) for v in value]
    return value


def assert_nothing_private(world: World, response, sent: str):
    """No message text, participant email or id beyond what the request itself carried."""
    text = response.content.decode()
    leaked = {s for s in world.private_strings() if s in text and s not in sent}
    assert not leaked, (leaked, text)


NAMED_CHECKS = {
    # An outsider or admin shares no conversation: nobody to list, nothing in the lists.
    "people_i_share_a_conversation_with": {"outsider": 0, "admin": 0, "participant": 2, "owner": 3},
    "my_conversations": {"outsider": 0, "admin": 0, "participant": 1, "owner": 2},
    "my_messages": {"outsider": 0, "admin": 0, "participant": 2, "owner": 3},
    "my_webhooks": {"outsider": 0, "admin": 0, "participant": 0, "owner": 1},
    "my_access_tokens": {"outsider": 0, "admin": 0, "participant": 0, "owner": 1},
}


@pytest.mark.parametrize("row,actor", CELLS)
def test_permission_matrix(world, row, actor):
    path = fill(row.route, world.ids, world.user(actor), world)
    data = payload_for(row, world, actor)
    expected = row.statuses[actor]

    response = call(world, actor, row.method, path, data)

    assert response.status_code == expected, (row.label(), actor, response.content)
    if expected >= 400:
        assert_error(response, expected)
        assert_nothing_private(world, response, sent=path + repr(data))
        if actor in ("outsider", "admin", "anonymous") and path.startswith(
            ("/api/conversations/", "/api/messages/", "/api/attachments/", "/api/webhooks/", "/api/tokens/",
             "/api/push-subscriptions/")
        ):
            # Someone else's ids get exactly the answer random ids get.
            again = call(world, actor, row.method, randomise(path, world), randomise(data, world))
            assert (again.status_code, again.json()) == (response.status_code, response.json())
        return
    if row.check == "the_image_inline":
        assert response["Content-Type"] == "image/png"
        assert response["Content-Disposition"].startswith("inline")
        assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    elif isinstance(row.check, str):
        count = NAMED_CHECKS[row.check][actor]
        count_is(count)(world, response, actor)
        if count == 0:
            assert_nothing_private(world, response, sent=path)
    elif row.check is not None:
        row.check(world, response, actor)


# --- Bad credentials ----------------------------------------------------------------------------
def _expired_token(user):
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    return str(token)


def _deactivated_users_token(world):
    token = str(AccessToken.for_user(world.newcomer))
    world.newcomer.is_active = False
    world.newcomer.save(update_fields=["is_active"])
    return token


BAD_CREDENTIALS = {
    "garbage token": lambda world: "Bearer not-a-jwt",
    "expired token": lambda world: f"Bearer {_expired_token(world.owner)}",
    "deactivated user's token": lambda world: f"Bearer {_deactivated_users_token(world)}",
    "Bearer without a token": lambda world: "Bearer",
    "Bearer with two tokens": lambda world: "Bearer a b",
    "wrong Basic password": lambda world: "Basic "
    + base64.b64encode(f"{world.owner.email}:wrong".encode()).decode(),
}


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
@pytest.mark.parametrize(
    "method,url",
    [("GET", "/api/conversations/"), ("GET", C + "/"), ("POST", "/api/messages/"), ("GET", "/api/users/me/")],
)
def test_bad_credentials_are_one_plain_401(world, kind, method, url):
    """Whatever is wrong with the credentials: a 401 with one error (attr null), nothing private."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=BAD_CREDENTIALS[kind](world))
    path = fill(url, world.ids, None, world)

    response = call_with(client, method, path, {"conversation": str(world.conversation.pk), "message_body": "x"})

    body = assert_error(response, 401)
    assert [e["attr"] for e in body["errors"]] == [None], body
    assert body["errors"][0]["code"] in {"authentication_failed", "not_authenticated", "token_not_valid"}, body
    assert response.headers.get("WWW-Authenticate")
    assert_nothing_private(world, response, sent=path)


# --- Effects of the refused and the allowed cells ------------------------------------------
@pytest.mark.parametrize("actor", ["outsider", "participant", "admin"])
def test_refused_writes_change_nothing(world, actor):
    """A refused edit, delete or removal leaves the message and the membership as they were."""
    client = world.client(actor)
    nested = f"/api/conversations/{world.conversation.pk}/messages/{world.message.pk}/"
    for prefix in (f"/api/messages/{world.message.pk}/", nested):
        assert client.patch(prefix, {"message_body": "hijacked"}, format="json").status_code in (403, 404)
        assert client.delete(prefix).status_code in (403, 404)
    client.delete(f"/api/conversations/{world.conversation.pk}/participants/{world.third.pk}/")

    world.message.refresh_from_db()
    assert (world.message.message_body, world.message.is_deleted) == (SECRET_BODIES[1], False)
    assert set(world.conversation.participants.all()) == {world.owner, world.participant, world.third}


def test_owner_writes_take_effect(world):
    """The allowed cells really act: edit, delete and removal by the owner."""
    client = world.client("owner")
    url = f"/api/messages/{world.message.pk}/"
    assert client.patch(url, {"message_body": "new text"}, format="json").json()["message_body"] == "new text"
    assert client.delete(url).status_code == 204
    removal = f"/api/conversations/{world.conversation.pk}/participants/{world.third.pk}/"
    assert client.delete(removal).status_code == 204

    world.message.refresh_from_db()
    assert world.message.is_deleted
    assert set(world.conversation.participants.all()) == {world.owner, world.participant}


# --- Completeness: the matrix against the URLconf -------------------------------------------
def _routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _methods(callback) -> set[str]:
    if getattr(callback, "actions", None):  # a viewset route
        methods = set(callback.actions)
    else:
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        methods = {m for m in view.http_method_names if hasattr(view, m)}
    return {m.upper() for m in methods - {"head", "options"}}  # HEAD answers like GET; OPTIONS is metadata


def _template(route: str) -> str:
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route.replace("^", "").replace("$", ""))
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)  # path() converters: <str:attachment_id>
    return "/" + route


def _matrix_template(route: str) -> str:
    """A matrix route in URLconf terms: /api/messages/{message}/ -> /api/messages/{message_id}/."""
    names = {
        "conversation": "conversation_id",
        "message": "message_id",
        "elsewhere": "message_id",
        "third": "user_id",
        "me": "user_id",
        "attachment": "attachment_id",
        "draft": "attachment_id",
        "webhook": "webhook_id",
        "access_token": "token_id",
        "push_subscription": "subscription_id",
    }
    route = route.split("?", 1)[0]  # a query string is the request's, not the route's
    return re.sub(r"\{(\w+)\}", lambda m: "{" + names.get(m.group(1), m.group(1)) + "}", route)


def test_the_matrix_covers_every_route_and_method_of_the_urlconf():
    in_urlconf = set()
    for route, callback in _routes(get_resolver().url_patterns):
        if not route.startswith("api/") or "<drf_format_suffix" in route or "(?P<format>" in route:
            continue  # format-suffixed twins answer like their route (two are in the matrix)
        for method in _methods(callback):
            in_urlconf.add((method, _template(route)))
    in_matrix = {(row.method, _matrix_template(row.route)) for row in MATRIX}

    assert in_urlconf - in_matrix == set(), "endpoints without a row in the permission matrix"
    assert all(set(row.statuses) == set(ACTORS) for row in MATRIX)


# --- Nothing private leaks through lists, search, filters and cursors ---------------------------
LIST_PROBES = [
    ("/api/conversations/", {}),
    ("/api/messages/", {}),
    ("/api/users/", {}),
    ("/api/messages/", {"search": "zanzibar"}),  # only in the edit history: never searchable
    ("/api/messages/", {"search": "quokka"}),
    ("/api/messages/", {"search": "marzipan"}),
    ("/api/messages/", {"conversation": "{conversation}"}),
    ("/api/messages/", {"sender": "{owner}"}),
    ("/api/messages/", {"sender": "{participant}"}),
    ("/api/messages/", {"parent_message": "{message}"}),
    ("/api/messages/", {"conversation": "{conversation}", "search": "quokka"}),
    ("/api/conversations/", {"search": "Pablo"}),
    ("/api/conversations/", {"search": "{owner_email}"}),
    ("/api/conversations/", {"participant": "{owner}"}),
    ("/api/conversations/", {"participant": "{third}"}),
]


@pytest.mark.parametrize("actor", ["outsider", "admin"])
@pytest.mark.parametrize("url,params", LIST_PROBES)
@pytest.mark.django_db(transaction=True)  # searches too: MariaDB's FULLTEXT index shows only committed rows
def test_lists_searches_and_filters_show_outsiders_nothing(world, actor, url, params):
    """Counts are 0, results empty and nothing private appears, whatever the filter."""
    query = fill(params, world.ids, world.user(actor), world)

    response = world.client(actor).get(url, query)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["results"]) == (0, []), body
    assert_nothing_private(world, response, sent="")


@pytest.mark.parametrize(
    "url,params,expected",
    [
        ("/api/messages/", {"search": "quokka"}, 1),
        ("/api/messages/", {"search": "zanzibar"}, 0),
        ("/api/messages/", {"conversation": "{conversation}"}, 2),
        ("/api/messages/", {"sender": "{owner}"}, 1),
        ("/api/messages/", {"parent_message": "{message}"}, 1),
        ("/api/conversations/", {"search": "Pablo"}, 1),
        ("/api/conversations/", {"participant": "{third}"}, 1),
    ],
)
@pytest.mark.django_db(transaction=True)  # it searches: MariaDB's FULLTEXT index shows only committed rows
def test_the_same_probes_do_find_things_for_a_participant(world, url, params, expected):
    """Control for the test above: the probes are not empty for everyone."""
    response = world.client("participant").get(url, fill(params, world.ids, world.participant, world))

    assert response.json()["count"] == expected, response.json()


@pytest.mark.parametrize("actor", ["outsider", "admin"])
@pytest.mark.parametrize("cursor", ["before", "after"])
@pytest.mark.parametrize("url", ["/api/messages/", "nested"])
def test_a_cursor_on_a_private_message_is_answered_like_a_random_id(world, actor, cursor, url):
    """?before=/?after= with someone else's message id: the error of an unknown id."""
    client = world.client(actor)
    if url == "nested":  # the outsider's own conversation, with the private message as cursor
        own = make_conversation(world.user(actor), world.newcomer, messages=("mine",))
        url = f"/api/conversations/{own.pk}/messages/"

    private = client.get(url, {cursor: str(world.message.pk)})
    random = client.get(url, {cursor: str(uuid.uuid4())})

    assert_error(private, 400, attr=cursor)
    assert private.json() == random.json()
    assert_nothing_private(world, private, sent="")


def test_user_search_shows_summaries_only(world):
    """Finding people by exact email is a feature; what is shown of them is not private."""
    response = world.client("outsider").get("/api/users/", {"search": world.owner.email})

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"user_id": str(world.owner.pk), "first_name": "Olive", "last_name": "Owner"}
    ]


# --- Mass assignment ---------------------------------------------------------------------------
def test_registration_ignores_privileged_and_server_fields(db):
    """role, is_staff, is_superuser, is_active, user_id, created_at in a registration do nothing."""
    chosen_id = uuid.uuid4()
    response = APIClient().post(
        "/api/users/",
        {
            "email": "mass@example.com",
            "password": "Unguessable-passphrase-77",
            "first_name": "Mass",
            "last_name": "Assign",
            "role": "admin",
            "is_staff": True,
            "is_superuser": True,
            "is_active": False,
            "user_id": str(chosen_id),
            "created_at": "2000-01-01T00:00:00Z",
            "password_hash": "md5$x$y",
            "groups": [1],
            "user_permissions": [1],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "guest"
    assert body["user_id"] != str(chosen_id)
    user = User.objects.get(email="mass@example.com")
    assert (user.role, user.is_staff, user.is_superuser, user.is_active) == ("guest", False, False, True)
    assert user.pk != chosen_id
    assert abs(user.created_at - timezone.now()) < timedelta(minutes=5)
    assert user.check_password("Unguessable-passphrase-77")
    assert not user.groups.exists() and not user.user_permissions.exists()


SERVER_FIELDS = {
    "sender": "{owner}",
    "created_by": "{owner}",
    "message_id": "{chosen}",
    "sent_at": "2000-01-01T00:00:00Z",
    "edited_at": "2000-01-01T00:00:00Z",
    "is_deleted": True,
}


@pytest.mark.parametrize("url", ["/api/messages/", "nested"])
def test_message_send_ignores_server_fields(world, url):
    """The sender is the caller; id, time, deletion and (nested) conversation are the server's."""
    chosen = uuid.uuid4()
    ids = {**world.ids, "chosen": str(chosen)}
    payload = fill({**SERVER_FIELDS, "message_body": "from the participant"}, ids, None, world)
    if url == "nested":
        url = f"/api/conversations/{world.conversation.pk}/messages/"
        payload["conversation"] = str(world.elsewhere.conversation_id)  # the owner's other conversation
    else:
        payload["conversation"] = str(world.conversation.pk)

    response = world.client("participant").post(url, payload, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    message = Message.objects.get(pk=body["message_id"])
    assert message.pk != chosen
    assert message.sender == world.participant and body["sender"]["user_id"] == str(world.participant.pk)
    assert message.conversation == world.conversation
    assert (message.is_deleted, message.edited_at) == (False, None)
    assert abs(message.sent_at - timezone.now()) < timedelta(minutes=5)
    assert Message.objects.filter(conversation_id=world.elsewhere.conversation_id).count() == 1


@pytest.mark.parametrize("prefix", ["/api/messages/", "nested"])
def test_message_edit_changes_only_the_body(world, prefix):
    url = (
        f"/api/messages/{world.message.pk}/"
        if prefix == "/api/messages/"
        else f"/api/conversations/{world.conversation.pk}/messages/{world.message.pk}/"
    )
    before = Message.objects.get(pk=world.message.pk)
    payload = fill(
        {
            **SERVER_FIELDS,
            "sender": "{participant}",
            "message_id": str(uuid.uuid4()),
            "conversation": "{elsewhere_conversation}",
            "parent_message": "{reply}",
            "client_id": "sneaky",
            "message_body": "edited body",
        },
        world.ids,
        None,
        world,
    )

    response = world.client("owner").patch(url, payload, format="json")

    assert response.status_code == 200, response.content
    after = Message.objects.get(pk=world.message.pk)
    assert after.message_body == "edited body"
    for name in ("sender_id", "conversation_id", "sent_at", "is_deleted", "parent_message_id", "client_id"):
        assert getattr(after, name) == getattr(before, name), name


def test_conversation_create_ignores_server_fields(world):
    chosen = uuid.uuid4()
    response = world.client("participant").post(
        "/api/conversations/",
        {
            "participants": [str(world.newcomer.pk)],
            "created_by": str(world.owner.pk),
            "conversation_id": str(chosen),
            "created_at": "2000-01-01T00:00:00Z",
            "message_count": 99,
            "last_message": str(world.message.pk),
            "unread_count": 5,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    conversation = Conversation.objects.get(pk=response.json()["conversation_id"])
    assert conversation.pk != chosen
    assert conversation.created_by == world.participant
    assert (conversation.message_count, conversation.last_message) == (0, None)
    assert abs(conversation.created_at - timezone.now()) < timedelta(minutes=5)
    assert set(conversation.participants.all()) == {world.participant, world.newcomer}


@pytest.mark.parametrize("method,actor,status", [
    ("put", "owner", 405), ("put", "participant", 405), ("patch", "owner", 200), ("patch", "participant", 403),
])
def test_participants_cannot_be_rewritten_through_the_conversation(world, method, actor, status):
    """PUT is 405 and PATCH ignores them: membership changes only through /participants/."""
    response = getattr(world.client(actor), method)(
        f"/api/conversations/{world.conversation.pk}/",
        {"participants": [str(world.outsider.pk)], "created_by": str(world.outsider.pk)},
        format="json",
    )

    assert response.status_code == status, response.content
    if status != 200:
        assert_error(response, status)
    world.conversation.refresh_from_db()
    assert set(world.conversation.participants.all()) == {world.owner, world.participant, world.third}
    assert world.conversation.created_by == world.owner


def test_participant_add_uses_only_user_id(world):
    """Extra fields in an add (another conversation, a role) are ignored."""
    response = world.client("owner").post(
        f"/api/conversations/{world.conversation.pk}/participants/",
        {"user_id": str(world.newcomer.pk), "conversation": str(world.elsewhere.conversation_id), "role": "admin"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert ConversationMembership.objects.filter(user=world.newcomer).count() == 1
    assert world.conversation.participants.filter(pk=world.newcomer.pk).exists()
    world.newcomer.refresh_from_db()
    assert world.newcomer.role == "guest"
    assert ConversationMembership.objects.get(user=world.newcomer).role == "member"


def test_role_cannot_be_changed_through_me(world):
    client = world.client("participant")
    assert_error(client.put("/api/users/me/", {"role": "admin", "is_staff": True}, format="json"), 405)
    response = client.patch("/api/users/me/", {"role": "admin", "is_staff": True}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "guest"  # only settings change
    world.participant.refresh_from_db()
    assert (world.participant.role, world.participant.is_staff) == ("guest", False)
