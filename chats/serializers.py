"""
Input and output shapes. Output serializers are read-only views of models;
input serializers check shape and limits and hand plain values to services.
Names are unique because drf-spectacular turns them into schema components.
"""
import re
from datetime import timezone as dt_timezone

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.utils import html

from attachments.selectors import payload_rows_by_message
from attachments.serializers import AttachmentSerializer, attachment_payload, download_path
from chats import selectors
from chats.emoji import MAX_EMOJI_BYTES, is_single_emoji
from chats.models import (
    CONVERSATION_DESCRIPTION_MAX_LENGTH,
    CONVERSATION_TITLE_MAX_LENGTH,
    MAX_INITIAL_MESSAGES,
    MAX_INLINE_PARTICIPANTS,
    MAX_MENTIONS,
    MAX_PARTICIPANTS,
    MESSAGE_BODY_MAX_LENGTH,
    NOTIFY_LEVELS,
    Conversation,
    ConversationMembership,
    Message,
    MessageEdit,
    User,
    phone_number_validator,
)


# --- Output ----------------------------------------------------------------------
class UserSummarySerializer(serializers.ModelSerializer):
    """What other people see of a user: no email, phone number or role."""

    class Meta:
        model = User
        fields = ["user_id", "first_name", "last_name"]
        read_only_fields = fields


class UserProfileSerializer(serializers.ModelSerializer):
    """The requesting user's own account."""

    class Meta:
        model = User
        fields = ["user_id", "email", "first_name", "last_name", "phone_number", "role", "created_at"]
        read_only_fields = fields


class UserMeSerializer(UserProfileSerializer):
    """Your account, with the unread messages across all your conversations."""

    unread_count = serializers.IntegerField(read_only=True)
    unread_mentions = serializers.IntegerField(
        read_only=True, help_text="Unread messages that mention you, across all your conversations."
    )

    class Meta(UserProfileSerializer.Meta):
        fields = UserProfileSerializer.Meta.fields + ["presence_visible", "unread_count", "unread_mentions"]
        read_only_fields = fields


class UserSettingsSerializer(serializers.Serializer):
    """What you may change of your account with PATCH /api/users/me/."""

    presence_visible = serializers.BooleanField(
        required=False,
        help_text="Whether people who share a conversation with you see when you are online "
        "(`GET /api/presence/`, `presence` events). Off: they see nothing, not even when you were last seen.",
    )


class PresenceQuerySerializer(serializers.Serializer):
    user_id = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=100,
        help_text="The people whose presence you want (repeat the parameter, at most 100). Left out: yours.",
    )


class PresenceSerializer(serializers.Serializer):
    type = serializers.CharField(help_text='Always "presence" (the same shape as the WebSocket frame).')
    user_id = serializers.UUIDField()
    online = serializers.BooleanField(help_text="They have a WebSocket open now.")
    last_seen_at = serializers.DateTimeField(
        allow_null=True, help_text="When their last socket closed; null while online or if never connected."
    )


class ReactionSummarySerializer(serializers.Serializer):
    """One emoji's reactions to a message, as the REST API shows them to you."""

    emoji = serializers.CharField(read_only=True)
    count = serializers.IntegerField(read_only=True, help_text="How many people reacted with it.")
    me = serializers.BooleanField(read_only=True, help_text="Whether you are one of them.")


def reactions_representation(summary: list, viewer: str | None = None) -> list[dict]:
    """
    Message.reaction_summary as payloads show it: for a viewer (REST), `me` says whether they
    reacted; without one (event frames, shared by all recipients), `user_ids` names the reactors.
    """
    if viewer is None:
        return [
            {"emoji": entry["emoji"], "count": len(entry["user_ids"]), "user_ids": entry["user_ids"]}
            for entry in summary
        ]
    return [
        {"emoji": entry["emoji"], "count": len(entry["user_ids"]), "me": viewer in entry["user_ids"]}
        for entry in summary
    ]


def _viewer(serializer: serializers.Field) -> str | None:
    """The id (text) of whom a payload is for: the context's `viewer`, else the request's user."""
    if "viewer" in serializer.context:
        return serializer.context["viewer"]
    user = _requesting_user(serializer)
    return None if user is None else str(user.pk)


class MessageSerializer(serializers.ModelSerializer):
    conversation = serializers.UUIDField(source="conversation_id", read_only=True)
    sender = UserSummarySerializer(read_only=True)
    parent_message = serializers.UUIDField(
        source="parent_message_id", read_only=True, allow_null=True, help_text="The message this one replies to."
    )
    attachments = serializers.SerializerMethodField(
        help_text="Files sent with the message, in upload order (empty for none, and once deleted)."
    )
    reactions = serializers.SerializerMethodField(
        help_text="Reactions by emoji, in order of each emoji's first reaction (empty once deleted). "
        "Event frames carry `user_ids` instead of `me` (docs/websocket.md)."
    )
    mentions = serializers.ListField(
        child=serializers.UUIDField(),
        read_only=True,
        help_text="user_ids of the participants it mentions (`mentions` and `@[user_id]` in its text; never "
        "the sender), in order of first mention; empty once deleted. docs/mentions.md.",
    )

    class Meta:
        model = Message
        fields = [
            "message_id",
            "conversation",
            "sender",
            "message_body",
            "sent_at",
            "edited_at",
            "is_deleted",
            "parent_message",
            "client_id",
            "attachments",
            "reactions",
            "mentions",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "message_body": {"help_text": "The text; empty for a deleted message."},
            "edited_at": {"help_text": "When the sender last edited it; null if never."},
            "is_deleted": {"help_text": "True for a deleted message (a tombstone: empty body, no history)."},
            "client_id": {"help_text": "The sender's idempotency key, if the send carried one."},
        }

    @extend_schema_field(AttachmentSerializer(many=True))
    def get_attachments(self, message: Message) -> list[dict]:
        return message_attachments(message)

    @extend_schema_field(ReactionSummarySerializer(many=True))
    def get_reactions(self, message: Message) -> list[dict]:
        return reactions_representation(message.reaction_summary, _viewer(self))


def message_attachments(message: Message) -> list[dict]:
    """A message's attachments as the API shows them: a query only for a message that has some."""
    return [attachment_payload(row) for row in _attachment_rows(message)]


def _attachments_of(rows: list[dict], prefix: str = "") -> dict[str, list[dict]]:
    """The attachments of the messages of these rows that have some: no query if none has, else one."""
    ids = [row[prefix + "message_id"] for row in rows if row[prefix + "has_attachments"]]
    return payload_rows_by_message(ids) if ids else {}


class MessageListItemSerializer(MessageSerializer):
    """A message of a list: with `?search=`, also the matching part of its text, highlighted."""

    snippet = serializers.CharField(
        required=False,
        help_text="Only with `?search=`: up to 160 characters of the text around the first match, HTML-escaped, "
        "each matching word in <mark>...</mark> (the only markup); \"…\" where cut. docs/search.md.",
    )

    class Meta(MessageSerializer.Meta):
        fields = MessageSerializer.Meta.fields + ["snippet"]
        read_only_fields = MessageSerializer.Meta.fields


class MessageVersionSerializer(serializers.ModelSerializer):
    """An earlier text of a message."""

    class Meta:
        model = MessageEdit
        fields = ["message_body", "replaced_at"]
        read_only_fields = fields


class ParticipantSerializer(serializers.Serializer):
    """A participant as a conversation lists them: who, and their role in it."""

    user_id = serializers.UUIDField(read_only=True)
    first_name = serializers.CharField(read_only=True)
    last_name = serializers.CharField(read_only=True)
    role = serializers.ChoiceField(
        choices=ConversationMembership.Role.choices, read_only=True,
        help_text="owner (one per conversation), admin or member: what they may do (docs/groups.md).",
    )


class ConversationParticipantSerializer(ParticipantSerializer):
    """An item of GET /api/conversations/{conversation_id}/participants/."""

    joined_at = serializers.DateTimeField(read_only=True)


class ConversationAvatarSerializer(serializers.Serializer):
    attachment_id = serializers.UUIDField(read_only=True)
    download_url = serializers.CharField(read_only=True, help_text="GET it (with your credentials) for the image.")


class ConversationSerializer(serializers.ModelSerializer):
    title = serializers.CharField(read_only=True, help_text="A group's name (empty: none; two-person: always empty).")
    description = serializers.CharField(read_only=True, help_text="A group's description (empty: none).")
    avatar = serializers.SerializerMethodField(help_text="A group's image (an attachment), or null.")
    participants = serializers.SerializerMethodField(
        help_text=f"The first {MAX_INLINE_PARTICIPANTS} participants by name, with their roles; "
        "`participant_count` says how many there are, and GET .../participants/ pages through all."
    )
    participant_count = serializers.IntegerField(read_only=True)
    role = serializers.ChoiceField(
        source="my_role", choices=ConversationMembership.Role.choices, read_only=True,
        help_text="Your role here: owner, admin or member.",
    )
    created_by = UserSummarySerializer(read_only=True, allow_null=True)
    last_message = MessageSerializer(read_only=True, allow_null=True)
    unread_count = serializers.IntegerField(
        read_only=True, help_text="Messages from others after your read marker (deleted ones excluded)."
    )
    unread_mentions = serializers.IntegerField(
        read_only=True, help_text="Of those unread messages, how many mention you (docs/mentions.md)."
    )

    class Meta:
        model = Conversation
        fields = [
            "conversation_id",
            "title",
            "description",
            "avatar",
            "participants",
            "participant_count",
            "role",
            "created_by",
            "created_at",
            "last_activity_at",
            "message_count",
            "last_message",
            "unread_count",
            "unread_mentions",
        ]
        read_only_fields = fields

    @extend_schema_field(ConversationAvatarSerializer(allow_null=True))
    def get_avatar(self, conversation) -> dict | None:
        return avatar_representation(conversation.avatar_id)

    @extend_schema_field(ParticipantSerializer(many=True))
    def get_participants(self, conversation) -> list[dict]:
        # The same rows as the lists (one query per conversation: this serializer documents the shape).
        people = selectors.participants_by_conversation([conversation.pk])[str(conversation.pk)]
        return [_participant(*person) for person in people]


def avatar_representation(attachment_id) -> dict | None:
    return None if attachment_id is None else {
        "attachment_id": str(attachment_id), "download_url": download_path(attachment_id)
    }


def _participant(user_id, first_name, last_name, role) -> dict:
    return {"user_id": str(user_id), "first_name": first_name, "last_name": last_name, "role": role}


def participant_rows_representation(rows: list[dict]) -> list[dict]:
    """ConversationParticipantSerializer's output for value rows (selectors.participant_rows)."""
    zone = _zone()
    return [
        {
            **_participant(row["user__user_id"], row["user__first_name"], row["user__last_name"], row["role"]),
            "joined_at": _time(row["joined_at"], zone),
        }
        for row in rows
    ]


def _person(user_id, first_name, last_name) -> dict:
    return {"user_id": str(user_id), "first_name": first_name, "last_name": last_name}


def person_representation(user: User | None) -> dict | None:
    """UserSummarySerializer's output for a user (or None)."""
    return None if user is None else _person(user.pk, user.first_name, user.last_name)


def _time(value, zone) -> str | None:
    """
    DRF's DateTimeField output, ISO 8601 in the current time zone (`zone`, looked up once per
    list by the caller: _zone()) with UTC as `Z`, without DRF's per-value settings and zone look-ups.
    """
    if value is None:
        return None
    if value.tzinfo is not zone:  # the databases' date-times are in UTC already: no conversion
        value = value.astimezone(zone)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _zone():
    """The current time zone for _time; UTC as `datetime.timezone.utc`, the tzinfo of the databases' values."""
    zone = timezone.get_current_timezone()
    return dt_timezone.utc if getattr(zone, "key", None) == "UTC" else zone


def _message(row: dict, prefix: str = "", zone=None, attachments=(), viewer: str | None = None) -> dict | None:
    """MessageSerializer's output for the `<prefix>`-named fields of a value row (and its attachment rows)."""
    zone = zone or _zone()
    message_id = row[prefix + "message_id"]
    if message_id is None:
        return None
    parent = row[prefix + "parent_message_id"]
    return {
        "message_id": str(message_id),
        "conversation": str(row[prefix + "conversation_id"]),
        "sender": _person(
            row[prefix + "sender__user_id"], row[prefix + "sender__first_name"], row[prefix + "sender__last_name"]
        ),
        "message_body": row[prefix + "message_body"],
        "sent_at": _time(row[prefix + "sent_at"], zone),
        "edited_at": _time(row[prefix + "edited_at"], zone),
        "is_deleted": row[prefix + "is_deleted"],
        "parent_message": None if parent is None else str(parent),
        "client_id": row[prefix + "client_id"],
        "attachments": [attachment_payload(attachment) for attachment in attachments],
        "reactions": reactions_representation(row[prefix + "reaction_summary"] or [], viewer),
        "mentions": list(row[prefix + "mentions"] or []),
    }


def message_representation(message: Message, viewer: str | None = None) -> dict:
    """
    MessageSerializer(message).data, plain JSON types, without building a serializer: the send
    response and every message event (test_messages pins the two as identical). `viewer`: the
    id (text) of whom a response is for (`me` in its reactions); None for event frames.
    """
    sender = message.sender
    return _message(
        {
            "message_id": message.pk,
            "conversation_id": message.conversation_id,
            "message_body": message.message_body,
            "sent_at": message.sent_at,
            "edited_at": message.edited_at,
            "is_deleted": message.is_deleted,
            "parent_message_id": message.parent_message_id,
            "client_id": message.client_id,
            "sender__user_id": sender.pk,
            "sender__first_name": sender.first_name,
            "sender__last_name": sender.last_name,
            "reaction_summary": message.reaction_summary,
            "mentions": message.mentions,
        },
        attachments=_attachment_rows(message),
        viewer=viewer,
    )


def _attachment_rows(message: Message) -> list[dict]:
    """A message's attachment rows, read once per instance: its event and the send's response share them."""
    if not message.has_attachments:
        return []
    if "_attachment_rows" not in message.__dict__:
        message._attachment_rows = payload_rows_by_message([message.pk])[str(message.pk)]
    return message._attachment_rows


def message_rows_representation(rows: list[dict], viewer: str | None = None) -> list[dict]:
    """
    MessageSerializer's output for value rows (selectors.message_rows): the timelines' fast
    path, without a model instance and a serializer per message. Same keys, order and
    formats; test_messages pins the two as identical.
    """
    zone = _zone()
    attachments = _attachments_of(rows)
    return [
        _message(row, zone=zone, attachments=attachments.get(str(row["message_id"]), ()), viewer=viewer)
        for row in rows
    ]


def pin_rows_representation(rows: list[dict], viewer: str | None = None) -> list[dict]:
    """PinSerializer's output for value rows (selectors.pin_rows): attachments in one query, only if any."""
    zone = _zone()
    attachments = _attachments_of(rows, "message__")
    return [
        {
            "message": _message(row, "message__", zone, attachments.get(str(row["message__message_id"]), ()), viewer),
            "pinned_by": None if row["pinned_by__user_id"] is None else _person(
                row["pinned_by__user_id"], row["pinned_by__first_name"], row["pinned_by__last_name"]
            ),
            "pinned_at": _time(row["pinned_at"], zone),
        }
        for row in rows
    ]


def conversation_rows_representation(rows, participants: dict, viewer: str | None = None) -> list[dict]:
    """
    ConversationSerializer's output for value rows (selectors.conversation_rows) and
    their participants (selectors.participants_by_conversation): the inbox's fast path.
    Same keys, order and formats; test_conversations pins the two as identical.
    """
    out = []
    zone = _zone()
    attachments = _attachments_of(rows, "last_message__")
    for row in rows:
        creator = row["created_by__user_id"]
        out.append({
            "conversation_id": str(row["conversation_id"]),
            "title": row["title"],
            "description": row["description"],
            "avatar": avatar_representation(row["avatar_id"]),
            "participants": [_participant(*p) for p in participants[str(row["conversation_id"])]],
            "participant_count": row["participant_count"],
            "role": row["my_role"],
            "created_by": None if creator is None else _person(
                creator, row["created_by__first_name"], row["created_by__last_name"]
            ),
            "created_at": _time(row["created_at"], zone),
            "last_activity_at": _time(row["last_activity_at"], zone),
            "message_count": row["message_count"],
            "last_message": _message(
                row, "last_message__", zone, attachments.get(str(row["last_message__message_id"]), ()), viewer
            ),
            "unread_count": row["unread_count"],
            "unread_mentions": row["unread_mentions"],
        })
    return out


# --- Input -----------------------------------------------------------------------
# The browsable API builds its HTML form and its "Raw data" example from these serializers:
# a field's `initial` is the example value, and InputSerializer leaves out the optional
# fields that have none, so the raw example posts as it is.
EXAMPLE_MESSAGE_BODY = "Hello!"


class InputSerializer(serializers.Serializer):
    def get_initial(self):
        initial = super().get_initial()
        if hasattr(self, "initial_data"):  # a submitted form shown again: keep what was typed
            return initial
        return {
            name: value
            for name, value in initial.items()
            if self.fields[name].required or value not in (None, "", [])
        }


def _requesting_user(field: serializers.Field):
    request = field.context.get("request")
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _example_contact(field: serializers.Field) -> str | None:
    user = _requesting_user(field)
    contact = user and selectors.example_contact_id(user=user)
    return str(contact) if contact else None


class ContactIdField(serializers.UUIDField):
    """A user_id; its example is someone the requesting user already talks to."""

    def get_initial(self):
        return _example_contact(self)


class ConversationIdField(serializers.UUIDField):
    """A conversation_id; its example is the requesting user's latest conversation."""

    def get_initial(self):
        user = _requesting_user(self)
        conversation = user and selectors.example_conversation_id(user=user)
        return str(conversation) if conversation else None


class UserIdListField(serializers.ListField):
    """
    A JSON list of user_ids. An HTML form sends one text input of ids separated by commas
    or spaces (or repeats the field); the example is someone the requesting user talks to.
    """

    child = serializers.UUIDField()

    def __init__(self, **kwargs):
        kwargs.setdefault("style", {"template": "chats/browsable/id_list.html"})
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        value = super().get_value(dictionary)
        if html.is_html_input(dictionary) and isinstance(value, list):
            value = [part for item in value for part in re.split(r"[\s,]+", str(item)) if part]
        return value

    def get_initial(self):
        contact = _example_contact(self)
        return [contact] if contact else []


def _blank_message(item) -> bool:
    return hasattr(item, "get") and not str(item.get("message_body", "")).strip()


class InitialMessagesField(serializers.ListField):
    """
    A JSON list of messages. An HTML form has one optional message box
    (`messages[0]message_body`); left empty, it sends no message.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("style", {"template": "chats/browsable/first_message.html"})
        kwargs.setdefault("initial", [{"message_body": EXAMPLE_MESSAGE_BODY}])
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        value = super().get_value(dictionary)
        if html.is_html_input(dictionary) and isinstance(value, list):
            value = [item for item in value if not _blank_message(item)]
        return value


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings: 42 is a wrong type, not the text "42"."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def message_body_field(**overrides) -> serializers.CharField:
    # Leading/trailing whitespace is trimmed; what remains must not be empty (unless overridden).
    options = {
        "max_length": MESSAGE_BODY_MAX_LENGTH,
        "initial": EXAMPLE_MESSAGE_BODY,
        "style": {"base_template": "textarea.html", "rows": 3},
        "help_text": f"Text of the message: 1 to {MESSAGE_BODY_MAX_LENGTH} characters after trimming.",
    }
    return StrictCharField(**{**options, **overrides})


class UserRegisterSerializer(InputSerializer):
    email = serializers.EmailField(max_length=254)
    password = StrictCharField(
        write_only=True, max_length=128, style={"input_type": "password"}, trim_whitespace=False
    )
    first_name = StrictCharField(max_length=150)
    last_name = StrictCharField(max_length=150)
    phone_number = StrictCharField(
        max_length=16, required=False, allow_blank=True, validators=[phone_number_validator]
    )

    def validate_email(self, value: str) -> str:
        value = value.strip().lower()
        if User.objects.filter(email=value).exists():
            raise serializers.ValidationError("A user with this email already exists.")
        return value

    def validate(self, attrs: dict) -> dict:
        candidate = User(**{k: v for k, v in attrs.items() if k != "password"})
        try:
            validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)})
        return attrs


class PasswordChangeSerializer(InputSerializer):
    current_password = StrictCharField(
        write_only=True, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )
    new_password = StrictCharField(
        write_only=True, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )


class NestedMessageCreateSerializer(InputSerializer):
    """A message inside a conversation: only its text; the sender is you."""

    message_body = message_body_field()


class MessageSendSerializer(NestedMessageCreateSerializer):
    """A send to a known conversation: text and/or attachments, optional reply target and idempotency key."""

    # Optional here: a send with attachments may have no text (validate() below).
    message_body = message_body_field(
        required=False,
        allow_blank=True,
        help_text=(
            f"Text of the message: 1 to {MESSAGE_BODY_MAX_LENGTH} characters after trimming; "
            "may be empty or left out when `attachments` are sent."
        ),
    )
    attachments = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=settings.ATTACHMENTS_MAX_PER_MESSAGE,
        help_text=(
            "`attachment_id`s of your own uploads (POST /api/attachments/) not sent yet, at most "
            f"{settings.ATTACHMENTS_MAX_PER_MESSAGE}."
        ),
    )

    parent_message = serializers.UUIDField(
        required=False, allow_null=True, help_text="message_id of a message in the same conversation to reply to."
    )
    mentions = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=MAX_MENTIONS,
        help_text=(
            f"user_ids of participants to mention (at most {MAX_MENTIONS}, duplicates collapse), besides any "
            "`@[user_id]` in the text; mentioning yourself is ignored. docs/mentions.md."
        ),
    )
    client_id = StrictCharField(
        required=False,
        allow_blank=False,
        max_length=64,
        help_text=(
            "Idempotency key you choose (up to 64 characters). Retrying a send with the same client_id "
            "returns the original message with 200 instead of creating a duplicate."
        ),
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("message_body") and not attrs.get("attachments"):
            if "message_body" in attrs:
                error = ErrorDetail("This field may not be blank.", code="blank")
            else:
                error = ErrorDetail("This field is required.", code="required")
            raise serializers.ValidationError({"message_body": [error]})
        return attrs


class MessageUpdateSerializer(InputSerializer):
    message_body = message_body_field()
    # Write-only: the browsable API's edit example (this serializer over the message) leaves it out,
    # since an edit that sends `mentions` replaces the listed ones.
    mentions = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        write_only=True,
        max_length=MAX_MENTIONS,
        help_text=(
            "The mentions besides the `@[user_id]`s of the new text (same rules as a send). Left out: those "
            "of the message that were not in its old text are kept. docs/mentions.md."
        ),
    )


class ReactionInputSerializer(InputSerializer):
    emoji = StrictCharField(
        max_length=MAX_EMOJI_BYTES,
        trim_whitespace=False,
        initial="\N{THUMBS UP SIGN}",
        help_text=f"One emoji (a flag, a keycap, a skin tone or a ZWJ sequence count as one), at most "
        f"{MAX_EMOJI_BYTES} bytes of UTF-8.",
    )

    def validate_emoji(self, value: str) -> str:
        if not is_single_emoji(value):
            raise serializers.ValidationError(f"Not a single emoji (at most {MAX_EMOJI_BYTES} bytes of UTF-8).")
        return value


class MessageReactionsSerializer(serializers.Serializer):
    """A message's reactions after yours changed."""

    message_id = serializers.UUIDField(read_only=True)
    reactions = ReactionSummarySerializer(many=True, read_only=True)


class PinSerializer(serializers.Serializer):
    """A pinned message of a conversation."""

    message = MessageSerializer(read_only=True)
    pinned_by = UserSummarySerializer(
        read_only=True, allow_null=True, help_text="Who pinned it (null: their account was deleted)."
    )
    pinned_at = serializers.DateTimeField(read_only=True)


class PinCreateSerializer(InputSerializer):
    message_id = serializers.UUIDField(help_text="A message of this conversation, not deleted.")


class MessageCreateSerializer(MessageSendSerializer):
    """A message to any conversation you take part in."""

    conversation = ConversationIdField(help_text="conversation_id of a conversation you take part in.")


class ConversationCreateSerializer(InputSerializer):
    participants = UserIdListField(
        min_length=1,
        max_length=MAX_PARTICIPANTS,
        help_text=(
            "user_id of each other participant (you are added yourself; duplicates collapse; "
            f"at most {MAX_PARTICIPANTS})."
        ),
    )
    messages = InitialMessagesField(
        child=NestedMessageCreateSerializer(),
        required=False,
        max_length=MAX_INITIAL_MESSAGES,
        help_text=f"Optional first messages, sent by you in this order (at most {MAX_INITIAL_MESSAGES}).",
    )


class ParticipantAddSerializer(InputSerializer):
    user_id = ContactIdField(help_text="The person to add.")


# The roles the owner gives (ownership passes on only when they leave).
ASSIGNABLE_ROLES = [ConversationMembership.Role.ADMIN.value, ConversationMembership.Role.MEMBER.value]


class ParticipantRoleSerializer(InputSerializer):
    role = serializers.ChoiceField(
        choices=ASSIGNABLE_ROLES,
        help_text="admin or member (the owner's role passes on only when they leave).",
    )


class ConversationUpdateSerializer(InputSerializer):
    """What a group's owner and admins may change (PATCH: any of them)."""

    title = StrictCharField(
        required=False, allow_blank=True, max_length=CONVERSATION_TITLE_MAX_LENGTH,
        help_text=f"The group's name, at most {CONVERSATION_TITLE_MAX_LENGTH} characters (empty: none).",
    )
    description = StrictCharField(
        required=False, allow_blank=True, max_length=CONVERSATION_DESCRIPTION_MAX_LENGTH, trim_whitespace=False,
        help_text=f"At most {CONVERSATION_DESCRIPTION_MAX_LENGTH} characters (empty: none).",
    )
    avatar = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="attachment_id of an image you uploaded (POST /api/attachments/) and have not sent; null removes it.",
    )


class MarkReadSerializer(InputSerializer):
    message_id = serializers.UUIDField(
        required=False, allow_null=True, help_text="Read up to this message (default: the newest)."
    )


class ReadStateSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(read_only=True)
    last_read_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="sent_at of the newest message you have read."
    )
    unread_count = serializers.IntegerField(read_only=True)
    unread_mentions = serializers.IntegerField(read_only=True, help_text="Unread messages that mention you.")


class MembershipUpdateSerializer(InputSerializer):
    muted = serializers.BooleanField(
        required=False, help_text="Mute: left out of your unread total in /api/users/me/, no notifications."
    )
    archived = serializers.BooleanField(
        required=False,
        help_text="Archive: hidden from your inbox (listed with ?archived=true) until a new message, unless muted.",
    )
    notifications = serializers.ChoiceField(
        choices=NOTIFY_LEVELS, required=False,
        help_text="Which messages notify you (push, email): all, only those mentioning you, or none.",
    )


class MembershipStateSerializer(serializers.Serializer):
    """Your own settings of a conversation (nobody else sees them)."""

    conversation_id = serializers.UUIDField(read_only=True)
    muted = serializers.BooleanField(read_only=True)
    archived = serializers.BooleanField(read_only=True)
    archived_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When you archived it.")
    notifications = serializers.ChoiceField(choices=NOTIFY_LEVELS, read_only=True)


class ReadMarkerSerializer(serializers.Serializer):
    """Where one participant has read up to."""

    user = UserSummarySerializer(read_only=True)
    last_read_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="sent_at of the newest message they have read (null: none yet)."
    )


def read_marker_rows_representation(rows: list[dict]) -> list[dict]:
    """ReadMarkerSerializer's output for value rows (selectors.read_marker_rows)."""
    zone = _zone()
    return [
        {
            "user": _person(row["user__user_id"], row["user__first_name"], row["user__last_name"]),
            "last_read_at": _time(row["last_read_at"], zone),
        }
        for row in rows
    ]


class UserSearchQuerySerializer(serializers.Serializer):
    search = serializers.CharField(required=False, allow_blank=True, max_length=100)


class TokenPairResponseSerializer(serializers.Serializer):
    access = serializers.CharField(read_only=True, help_text="Access JWT: send as `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(read_only=True, help_text="Refresh JWT: trade for a new access token.")


class PingSerializer(serializers.Serializer):
    status = serializers.CharField(read_only=True)
    user_id = serializers.UUIDField(read_only=True)


class EventsQuerySerializer(serializers.Serializer):
    since = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1,
        help_text="The `event_id` of the last event you have: every later one is returned. Leave it out "
        "to learn where your stream stands (`last_event_id`) without any event.",
    )


class EventPageSerializer(serializers.Serializer):
    results = serializers.ListField(
        child=serializers.DictField(),
        help_text="Your events after `since`, oldest first, as the socket sends them (each with its `event_id`).",
    )
    next = serializers.URLField(allow_null=True, help_text="The next page (`since` = the last event here), or null.")
    last_event_id = serializers.IntegerField(help_text="Where your stream stands: the `event_id` of your latest event.")
