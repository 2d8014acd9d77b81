"""
Data model: fields, constraints and indexes only. Writes live in services.py,
reads in selectors.py. Every index names the query it serves.
"""
import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThan
from django.utils import timezone

# Limits documented in docs/api.md and the schema.
MESSAGE_BODY_MAX_LENGTH = 4000  # characters in a message body
# People in one conversation (1,000 unless configured). The services read the setting at each call.
MAX_PARTICIPANTS = settings.CHATS_MAX_PARTICIPANTS
MAX_INLINE_PARTICIPANTS = 100  # participants a conversation's representation lists inline (the rest: paged)
GROUP_MIN_PARTICIPANTS = 3  # from this many people on, a conversation is a group: title, roles (docs/groups.md)
CONVERSATION_TITLE_MAX_LENGTH = 100
CONVERSATION_DESCRIPTION_MAX_LENGTH = 1000
MAX_INITIAL_MESSAGES = 50  # messages sent along with a new conversation
MAX_REACTION_KINDS = 20  # different emojis on one message
MAX_PINS = 50  # pinned messages in one conversation
MAX_MENTIONS = 50  # different people mentioned by one message

phone_number_validator = RegexValidator(
    regex=r"^\+?[1-9]\d{6,14}$",
    message="Enter a phone number in international format, e.g. +14155550123 (7 to 15 digits).",
)


class UserManager(BaseUserManager):
    use_in_migrations = True

    @staticmethod
    def normalize_email_address(email: str) -> str:
        # Emails are case-insensitive logins: stored and looked up lower-cased.
        return (email or "").strip().lower()

    def get_by_natural_key(self, username):
        # Used by every login path (JWT, Basic, session, admin).
        return self.get(**{self.model.USERNAME_FIELD: self.normalize_email_address(username)})

    def create_user(self, email, password=None, **extra_fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email_address(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.update(is_staff=True, is_superuser=True, role=User.Role.ADMIN)
        return self.create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    class Role(models.TextChoices):
        GUEST = "guest", "Guest"
        HOST = "host", "Host"
        ADMIN = "admin", "Admin"

    # Public identifier of a person; exposed as `user_id`.
    user_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Login name, stored lower-cased so uniqueness and login are case-insensitive.
    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=150)
    last_name = models.CharField(max_length=150)
    # Optional, international format (E.164 digits with an optional leading +).
    phone_number = models.CharField(
        max_length=16, blank=True, default="", validators=[phone_number_validator]
    )
    # What the person may do; only staff change it (never the user themself).
    role = models.CharField(max_length=5, choices=Role.choices, default=Role.GUEST)
    # The salted hash of the password, never exposed by the API. The column keeps the
    # name of the original design.
    password = models.CharField("password", max_length=128, db_column="password_hash")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # When their last WebSocket closed (chats/presence.py); null: never connected. Shown to people
    # who share a conversation with them, unless presence_visible is off.
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Whether people who share a conversation with them see when they are online (PATCH /api/users/me/).
    presence_visible = models.BooleanField(default=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["first_name", "last_name"]

    class Meta:
        ordering = ["first_name", "last_name", "email"]

    def __str__(self) -> str:
        return self.email

    def clean(self):
        super().clean()
        self.email = UserManager.normalize_email_address(self.email)

    @property
    def password_hash(self) -> str:
        return self.password

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self) -> str:
        return self.first_name


class Conversation(models.Model):
    # Public identifier; exposed as `conversation_id`.
    conversation_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who may see the conversation; one ConversationMembership row per person.
    participants = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="ConversationMembership", related_name="conversations"
    )
    # Who opened it (kept if that account is deleted, as null).
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Denormalised by message_send under the conversation's row lock, so list endpoints
    # show counts and the newest message without per-row queries.
    message_count = models.PositiveIntegerField(default=0)
    last_message = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Time of the newest message, or of creation: the inbox is sorted by it.
    last_activity_at = models.DateTimeField(default=timezone.now)
    # "<smaller user_id>:<larger user_id>" while this is a conversation created between
    # exactly two people and never changed; the unique index makes concurrent creates of
    # the same pair meet on one row. Cleared (null) by any membership change.
    direct_key = models.CharField(max_length=73, null=True, blank=True, unique=True, editable=False)
    # Memberships, kept by the services under the row lock (like message_count): representations
    # show it beside at most MAX_INLINE_PARTICIPANTS people, and the cap is checked without a COUNT.
    participant_count = models.PositiveIntegerField(default=0)
    # Group details (conversations of GROUP_MIN_PARTICIPANTS or more), set by owners and admins.
    title = models.CharField(max_length=CONVERSATION_TITLE_MAX_LENGTH, blank=True, default="")
    description = models.TextField(max_length=CONVERSATION_DESCRIPTION_MAX_LENGTH, blank=True, default="")
    # An image uploaded by whoever set it (attachments app); downloadable by the participants
    # (attachments.selectors.attachment_for_user) and never pruned while it is one. Its FK index
    # serves that access check.
    avatar = models.ForeignKey(
        "attachments.Attachment", on_delete=models.SET_NULL, null=True, blank=True, related_name="avatar_of"
    )

    class Meta:
        ordering = ["-last_activity_at", "-created_at"]
        indexes = [
            # Inbox: the requesting user's conversations, most recently active first.
            models.Index(fields=["-last_activity_at"], name="conv_last_activity_idx"),
            # ?created_after / ?created_before and ordering by created_at.
            models.Index(fields=["created_at"], name="conv_created_at_idx"),
        ]

    def __str__(self) -> str:
        return str(self.conversation_id)


# A member's notification level of a conversation (ConversationMembership.notify_level).
NOTIFY_LEVELS = [("all", "All messages"), ("mentions", "Only mentions of me"), ("none", "None")]


class ConversationMembership(models.Model):
    """A person in a conversation, with their per-member state (read marker, unread count, role)."""

    class Role(models.TextChoices):
        # What each may do is decided in chats/services_groups.py (docs/groups.md).
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    # Covered by the (conversation, user) index below, so no index of its own.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    # Covered by the unique (user, conversation) index below, so no index of its own.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        db_index=False,
    )
    joined_at = models.DateTimeField(default=timezone.now, editable=False)
    # Read marker: sent_at of the newest message this member has read (null: none yet).
    # Only moves forward; unread = messages from others sent after it.
    last_read_at = models.DateTimeField(null=True, blank=True)
    # Messages from others after the marker, deleted ones excluded. Kept exact by the
    # services under the conversation's row lock (send +1, read recount, delete -1), so
    # the inbox reads it instead of counting a long history.
    unread_count = models.PositiveIntegerField(default=0)
    # One owner per conversation (its creator, then whom ownership passes to when they leave);
    # admins are named by the owner. Read with the membership: no query of its own.
    role = models.CharField(max_length=6, choices=Role.choices, default=Role.MEMBER)
    # Unread messages (as unread_count counts them) that mention this member, kept exact by the
    # same services under the same lock (send +1, read recount, edit re-resolves, delete -1).
    unread_mentions = models.PositiveIntegerField(default=0)
    # Muted by this member: left out of their /users/me/ unread total and never notified
    # (push, email). Set by membership_update only.
    muted = models.BooleanField(default=False)
    # When this member archived it (null: in their inbox). The default inbox filters on it
    # after the (user, conversation) index has picked the member's rows; message_send clears it
    # for the recipients who have not muted the conversation.
    archived_at = models.DateTimeField(null=True, blank=True)
    # Which messages of this conversation notify this member (push, email): all, only those that
    # mention them, or none (notifications/preferences.py decides). Muted overrides it.
    notify_level = models.CharField(
        max_length=8, choices=NOTIFY_LEVELS, default="all"
    )

    class Meta:
        constraints = [
            # One membership per person; the index also serves "my conversations"
            # (every scoped query filters memberships by user first).
            models.UniqueConstraint(fields=["user", "conversation"], name="membership_user_conv_uniq"),
        ]
        indexes = [
            # "Who is in this conversation" from the index alone: a send's recipients, the inbox's
            # participants, the unread counters' UPDATE find their rows here (measured: a send to
            # 1,000 people 2-3.5 ms faster on MariaDB than through the conversation's FK index).
            models.Index(fields=["conversation", "user"], name="membership_conv_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.conversation_id}"


# The choice sets by name, for the OpenAPI schema's enum names (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
USER_ROLES = User.Role.choices
PARTICIPANT_ROLES = ConversationMembership.Role.choices


class Message(models.Model):
    # Public identifier; exposed as `message_id`.
    message_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Its FK index is subsumed by the timeline index below.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # Messages outlive nothing: deactivate a user instead of deleting them. The FK
    # index serves ?sender=.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="sent_messages"
    )
    # Empty only for a deleted message (tombstone) or one with attachments; see the check constraint.
    message_body = models.TextField(blank=True, validators=[MaxLengthValidator(MESSAGE_BODY_MAX_LENGTH)])
    # Set by message_send while it holds the conversation's lock, strictly increasing
    # within a conversation: timelines, cursors and read markers rely on it.
    sent_at = models.DateTimeField(default=timezone.now)
    # When the body was last changed by its sender (null: never edited).
    edited_at = models.DateTimeField(null=True, blank=True)
    # A deleted message stays in the timeline as a tombstone with an empty body.
    is_deleted = models.BooleanField(default=False)
    # The message this one replies to, always in the same conversation. Its FK index
    # serves ?parent_message=.
    parent_message = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replies"
    )
    # Idempotency key chosen by the sending client; see the unique constraint.
    client_id = models.CharField(max_length=64, null=True, blank=True)
    # Whether files are attached (attachments.Attachment.message): a page of messages asks for
    # attachments only when one of its messages has some, and such a message may have no text.
    has_attachments = models.BooleanField(default=False)
    # The reactions (MessageReaction rows) as every payload shows them, kept by the reaction
    # services under the message's row lock: [{"emoji": "👍", "user_ids": ["<uuid>", ...]}], in
    # order of each emoji's first reaction, its reactors in reaction order. Pages read it with
    # the message's row: no query per message, and `me` needs only the viewer's id.
    reaction_summary = models.JSONField(default=list, blank=True)
    # The ids (text) of the people it mentions, as payloads show them, in order of first mention;
    # written with its MessageMention rows (the truth) by the message services. Pages read it
    # with the message's row: no query per message.
    mentions = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-sent_at", "-message_id"]
        constraints = [
            # Safe retries: one message per (sender, client_id), even for concurrent
            # retries. NULL client_ids never collide.
            models.UniqueConstraint(fields=["sender", "client_id"], name="msg_sender_client_id_uniq"),
            # By length, not by comparing with "": MySQL collations treat a body of only
            # ignorable characters (e.g. a zero-width space) as equal to the empty string.
            # A message with attachments may have no text.
            models.CheckConstraint(
                condition=models.Q(is_deleted=True)
                | models.Q(has_attachments=True)
                | models.Q(GreaterThan(Length("message_body"), 0)),
                name="msg_body_present_unless_deleted",
            ),
        ]
        indexes = [
            # Timeline: one conversation's messages newest first, ?before/?after cursors,
            # sent_at ranges and unread counts (messages after a read marker).
            models.Index(
                fields=["conversation", "-sent_at", "-message_id"], name="msg_conv_timeline_idx"
            ),
            # Flat list across all of a user's conversations, newest first.
            models.Index(fields=["-sent_at"], name="msg_sent_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.sender_id}: {self.message_body[:40]}"


class MessageReaction(models.Model):
    """One person's reaction (one emoji) to one message. The source of Message.reaction_summary."""

    # Covered by the unique (message, user, emoji_code) index below.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions", db_index=False)
    # Its FK index serves user_delete (the reactions of a user who goes).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The emoji as its code points in hex joined by "-" ("1f44d", "2764-fe0f"): ASCII, so the
    # unique index compares code points on every database (MySQL's utf8mb4_unicode_ci weighs all
    # emoji alike, and would make 👍 and 😀 the same reaction).
    emoji_code = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One reaction per person, message and emoji; also the index of "this message's reactions".
            models.UniqueConstraint(fields=["message", "user", "emoji_code"], name="reaction_msg_user_emoji_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.message_id}: {self.emoji_code}"


class MessageMention(models.Model):
    """A participant mentioned by a message (never its sender). The source of Message.mentions."""

    # Covered by the unique (message, user) index below: a message's mentions (edit, delete).
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Covered by the (user, conversation, message) index below.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    # The message's conversation, copied so "mentioning me in conversation X" needs no join. Its FK
    # index serves conversation_delete's cascade (and MySQL would add one for the constraint anyway).
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            # One row per message and person; also the index of "this message's mentions".
            models.UniqueConstraint(fields=["message", "user"], name="mention_msg_user_uniq"),
        ]
        indexes = [
            # ?mentions_me=true (in one conversation, or all of mine) and the unread_mentions recount
            # of conversation_mark_read: my mentions in conversation X, message ids read off the index.
            models.Index(fields=["user", "conversation", "message"], name="mention_user_conv_msg_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} mentions {self.user_id}"


class MessagePin(models.Model):
    """A message pinned in its conversation (at most MAX_PINS per conversation)."""

    # Covered by the unique (conversation, message) index below; the pins list filters by it.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="pins", db_index=False)
    # Its FK index serves "unpin this message" when it is deleted.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="pins")
    # Who pinned it (null once that account is deleted).
    pinned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    pinned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A message is pinned once.
            models.UniqueConstraint(fields=["conversation", "message"], name="pin_conv_message_uniq"),
        ]
        indexes = [
            # The pins list: one conversation's pins, newest pin first.
            models.Index(fields=["conversation", "-pinned_at"], name="pin_conv_pinned_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} pinned in {self.conversation_id}"


class MessageEdit(models.Model):
    """An earlier version of a message's text, kept when its sender edits it."""

    # Its FK index serves the history endpoint (one message's versions).
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    message_body = models.TextField()
    # When this text was replaced by a newer one.
    replaced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["replaced_at", "id"]

    def __str__(self) -> str:
        return f"{self.message_id} before {self.replaced_at:%Y-%m-%d %H:%M}"


class EventStream(models.Model):
    """
    Where a user's event stream stands: the `event_id` of their latest event. Its row is locked
    while a transaction records events for the user (chats/stream.py), so a user's events are
    numbered 1, 2, 3... with no gap, in the order their transactions commit.
    """

    # No foreign key in the database (db_constraint=False), here and on Event.user: its check
    # would take a shared lock on the user's row at every event, after the conversation's lock,
    # against the lock order of the services (users, then conversations), and deadlock with them.
    # Django still deletes both with the user (on_delete CASCADE is done by the ORM).
    user = models.OneToOneField(
        User, primary_key=True, on_delete=models.CASCADE, related_name="event_stream", db_constraint=False
    )
    last_event_id = models.PositiveBigIntegerField(default=0)


class EventFrame(models.Model):
    """
    A frame as recorded once for all of its recipients (a message to 1,000 people is one row),
    without `event_id`, which is each recipient's own (Event). Kept EVENTS_RETENTION_DAYS.
    """

    id = models.BigAutoField(primary_key=True)
    frame = models.JSONField()
    # Pruning (manage.py prune_events) deletes by age, after the events that point here.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)


class Event(models.Model):
    """
    One event of one user's stream, recorded in the transaction of the change it describes: its
    number in their stream and the frame their sockets were sent (`frame` adds the `event_id`).
    Kept EVENTS_RETENTION_DAYS.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    event_id = models.PositiveBigIntegerField()
    # Shared by every recipient of the same frame. No constraint or index: frames are written
    # just before their events, read through this join, and pruned by age after them.
    payload = models.ForeignKey(
        EventFrame, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    # Pruning (manage.py prune_events) deletes by age.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            # Replay and resume: a user's events after a given event_id, in order.
            models.UniqueConstraint(fields=["user", "event_id"], name="event_user_event_id_uniq"),
        ]

    @property
    def frame(self) -> dict:
        """The frame as this user's sockets were sent it."""
        return {**self.payload.frame, "event_id": self.event_id}


class EventOutbox(models.Model):
    """
    The events of a committed change, not numbered yet (chats/outbox.py): a change whose events go
    to more than EVENTS_INLINE_RECIPIENTS people writes one row per conversation instead of an
    Event per recipient, and a drain numbers them into the streams after the commit, then deletes
    the row in the same transaction. Usually empty: rows live for milliseconds.
    """

    # The order of the queue: a drain numbers a conversation's rows by id, which is the order of
    # their commits (every change that records a conversation's events for others holds its row
    # lock while it writes its row; a member's own settings concern only their own stream).
    # The sweeper reads the oldest rows first along this primary key.
    id = models.BigAutoField(primary_key=True)
    # The conversation the frames concern (their "conversation_id"; a frame without one: its
    # recipient's user id). Not a foreign key: the rows outlive a deleted conversation until
    # drained (its conversation.removed events are in them), and no check locks its row.
    key = models.UUIDField()
    # The frames as recorded: [[frame, [recipient user id as hex, ...]], ...], in order; a frame
    # is given once for all its recipients, so 1,000 people cost one row of ~35 KB.
    runs = models.JSONField()
    # The sweeper (outbox.sweep) drains the rows older than EVENTS_OUTBOX_SWEEP_SECONDS: left by
    # a process that stopped between its commit and its drain.
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # drain(): a conversation's rows in id order, locked; and the check of every change
            # recorded inline (stream.record): are rows of these conversations still queued?
            models.Index(fields=["key", "id"], name="event_outbox_key_id_idx"),
        ]
