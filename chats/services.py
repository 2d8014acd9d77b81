"""
Every write of the app. Each service is one transaction; callers pass
already-parsed input (serializers do the shape checks) and get model instances.

Concurrency rules:
- A send locks its conversation row (select_for_update) before stamping
  `sent_at`, so within one conversation `sent_at` strictly increases in commit
  order, and the denormalised count and last message stay exact.
- Membership changes, edits and deletes lock the conversation row too (same
  lock, same order): every change that emits an event about a conversation
  holds its lock, so the state an event carries is consistent with the events
  before it in anyone's stream.
- Lock order: user rows (sorted by id), then conversation rows, then message
  rows (reactions and pins: chats/services_reactions.py), then attachment rows
  (attachments/services.py), then, last, the
  recipients' event-stream rows (sorted by user id, when
  the service ends: chats/events.py). Creating a two-person conversation locks
  both users; a send with a client_id locks its sender. MySQL/MariaDB
  deadlocked without this when racing inserts of one unique key each waited to
  upgrade a shared lock.
- Row locks are FOR NO KEY UPDATE on PostgreSQL (selectors.for_update), so the
  foreign-key checks other transactions make at COMMIT do not wait on them.
- Uniqueness that concurrent requests could race on is enforced by the
  database (one email, one direct conversation per pair, one message per
  sender and client_id); the loser of a race reads the winner's row.
- Unread counts live on memberships and change only under the conversation
  lock: a send adds one for the others, a read recounts after the new marker
  (which only moves forward), a delete takes one off for those behind it.
"""
import hashlib
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import timedelta
from functools import partial
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, When
from django.http import Http404
from django.utils import timezone

from attachments import services as attachment_services
from chats import events, presence, selectors, services_groups, services_mentions, services_reactions
from chats.models import (
    MAX_INITIAL_MESSAGES,
    Conversation,
    ConversationMembership,
    Message,
    MessageEdit,
    User,
    UserManager,
)

ONE_TICK = timedelta(microseconds=1)
# The JWT claim naming the login (POST /api/token/) a token descends from (chats/tokens.py).
LOGIN_ID_CLAIM = "login_id"


def session_login_id(session_key: str) -> str:
    """The login a browser session stands for: a digest of its key (the key itself is a secret)."""
    return "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


@transaction.atomic
def user_register(
    *, email: str, password: str, first_name: str, last_name: str, phone_number: str = ""
) -> User:
    user = User(
        email=UserManager.normalize_email_address(email),
        first_name=first_name,
        last_name=last_name,
        phone_number=phone_number,
    )
    user.set_password(password)
    user.full_clean()
    try:
        # A savepoint, so a lost race on the unique email is a clean 400.
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ValidationError({"email": ["A user with this email already exists."]})
    return user


@transaction.atomic
def user_update_settings(*, user: User, presence_visible: bool | None = None) -> User:
    """Your account's settings (PATCH /api/users/me/). Showing or hiding presence tells those who see it."""
    locked = selectors.for_update(User.objects.filter(pk=user.pk)).get()
    if presence_visible is not None and presence_visible != locked.presence_visible:
        locked.presence_visible = presence_visible
        locked.save(update_fields=["presence_visible"])
        transaction.on_commit(lambda: presence.visibility_changed(locked), robust=True)
    return locked


@transaction.atomic
def user_change_password(*, user: User, current_password: str, new_password: str) -> None:
    """Checks the current password, validates the new one, and logs out every refresh token."""
    from django.contrib.auth.password_validation import validate_password

    if not user.check_password(current_password):
        raise ValidationError({"current_password": ["The current password is not correct."]})
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": exc.messages})
    user.set_password(new_password)
    user_password_save(user=user)


@transaction.atomic
def user_password_save(*, user: User) -> None:
    """
    Stores the password just set on `user` (by the service above, the admin's password form or
    `manage.py changepassword`) and ends every login of theirs: refresh tokens blacklisted, open
    sockets closed (4401), this browser's too (it reconnects).
    """
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    user.save(update_fields=["password"])
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in outstanding])
    events.credentials_revoked(user.pk)


@transaction.atomic
def user_logout(*, refresh) -> None:
    """
    Blacklists a (valid) refresh token and closes the sockets of its login: those authenticated
    with a token carrying its login_id, or, for a token from before login ids, all the user's.
    """
    refresh.blacklist()
    user_id = refresh.payload.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])
    if user_id:
        events.credentials_revoked(UUID(str(user_id)), login_id=refresh.payload.get(LOGIN_ID_CLAIM))


def user_session_logout(*, user: User, session_key: str | None) -> None:
    """A browser session ends (Django's logout: the browsable API's or the admin's): its cookie sockets close."""
    if session_key:
        events.credentials_revoked(user.pk, login_id=session_login_id(session_key))


@transaction.atomic
def user_set_active(*, user: User, is_active: bool) -> None:
    """Staff (the admin). A deactivated account is refused everywhere, and its open sockets close."""
    user.is_active = is_active
    user.save(update_fields=["is_active"])
    if not is_active:
        events.credentials_revoked(user.pk)


def _active_users(user_ids: Sequence[UUID], field: str = "participants") -> list[User]:
    users = list(User.objects.filter(pk__in=user_ids, is_active=True))
    missing = set(user_ids) - {u.pk for u in users}
    if missing:
        raise ValidationError({field: [f"Unknown user id: {uid}." for uid in sorted(map(str, missing))]})
    return users


def _direct_key(user_ids: Sequence[UUID]) -> str | None:
    return ":".join(sorted(uid.hex for uid in user_ids)) if len(user_ids) == 2 else None


def _lock(conversation: Conversation) -> Conversation:
    """The conversation's row, locked until the transaction ends, as it is now (every send takes it)."""
    return selectors.conversation_for_update(conversation_id=conversation.pk)


def _lock_users(user_ids: Sequence[UUID]) -> None:
    # Lock order everywhere: users (sorted by id) before conversations.
    list(selectors.for_update(User.objects.filter(pk__in=user_ids)).order_by("pk").values_list("pk", flat=True))


@events.atomic
def conversation_create(
    *, creator: User, participant_ids: Sequence[UUID], message_bodies: Sequence[str] = ()
) -> tuple[Conversation, bool]:
    """
    Open a conversation; the creator always takes part, duplicates collapse.
    Returns (conversation, created). Two people who already have an unchanged
    two-person conversation get that one back (with any messages appended).
    """
    ids = list(dict.fromkeys([creator.pk, *participant_ids]))
    if len(ids) < 2:
        raise ValidationError(
            {"participants": ["A conversation needs at least one participant besides you."]}
        )
    if len(ids) > settings.CHATS_MAX_PARTICIPANTS:
        raise ValidationError(
            {"participants": [f"A conversation has at most {settings.CHATS_MAX_PARTICIPANTS} participants."]}
        )
    if len(message_bodies) > MAX_INITIAL_MESSAGES:
        raise ValidationError(
            {"messages": [f"At most {MAX_INITIAL_MESSAGES} messages may come with a new conversation."]}
        )
    users = _active_users(ids)
    direct_key = _direct_key(ids)

    if direct_key:
        # Creates of one pair queue on the two users' rows, locked in a fixed order, and
        # look for the pair with a locking read (which sees the newest committed row).
        _lock_users(ids)
        existing = selectors.for_update(Conversation.objects.filter(direct_key=direct_key)).first()
        if existing is None:
            try:
                with transaction.atomic():  # savepoint: a concurrent create may win the pair
                    conversation = _conversation_insert(creator, users, direct_key, message_bodies)
                events.conversation_changed("conversation.created", conversation.pk)
                return conversation, True
            except IntegrityError:
                # A locking read sees the winner's row even under MySQL's REPEATABLE READ.
                existing = selectors.for_update(Conversation.objects.filter(direct_key=direct_key)).get()
        for body in message_bodies:
            message_send(conversation=existing, sender=creator, message_body=body)
        return existing, False
    conversation = _conversation_insert(creator, users, None, message_bodies)
    events.conversation_changed("conversation.created", conversation.pk)
    return conversation, True


def _conversation_insert(
    creator: User, users: Sequence[User], direct_key: str | None, message_bodies: Sequence[str]
) -> Conversation:
    now = timezone.now()
    conversation = Conversation.objects.create(
        created_by=creator, created_at=now, last_activity_at=now, direct_key=direct_key, participant_count=len(users)
    )
    # The creator owns it (chats/services_groups.py).
    ConversationMembership.objects.bulk_create(
        ConversationMembership(
            conversation=conversation,
            user=user,
            joined_at=now,
            role=ConversationMembership.Role.OWNER if user.pk == creator.pk else ConversationMembership.Role.MEMBER,
        )
        for user in users
    )
    if message_bodies:
        # Distinct, increasing timestamps keep the initial messages in the order given.
        messages = [
            Message(conversation=conversation, sender=creator, message_body=body, sent_at=now + i * ONE_TICK)
            for i, body in enumerate(message_bodies)
        ]
        for message in messages:
            message.full_clean(exclude=["conversation", "sender"])
            message.mentions = services_mentions.mentions_resolve(
                conversation_id=conversation.pk, sender_id=creator.pk, body=message.message_body
            )
        Message.objects.bulk_create(messages)
        for message in messages:
            services_mentions.mentions_record(message=message, mentioned=message.mentions)
            # As for every sent message (events.message_changed): push notifications hang on it.
            transaction.on_commit(partial(events.message_created.send, sender=None, message=message), robust=True)
        ConversationMembership.objects.filter(conversation=conversation).exclude(user=creator).update(
            unread_count=len(messages)
        )
        conversation.message_count = len(messages)
        conversation.last_message = messages[-1]
        conversation.last_activity_at = messages[-1].sent_at
        conversation.save(update_fields=["message_count", "last_message", "last_activity_at"])
    return conversation


@events.atomic
def conversation_add_participant(*, conversation: Conversation, actor: User | None, user_id: UUID) -> bool:
    """
    Adds an active user as a member: in a group, its owner or an admin; in a two-person conversation,
    either person (chats/services_groups.py); actor None: staff, through the admin. Returns False if
    they were already in.
    The history before they joined counts as read: their unread count starts at 0.
    A fixed number of queries whatever the conversation's size (test_groups pins it).
    """
    locked = _lock(conversation)
    if actor is not None:
        services_groups.check_may_manage(locked, actor, "add participants")
    (user,) = _active_users([user_id], field="user_id")
    if ConversationMembership.objects.filter(conversation=locked, user=user).exists():
        return False
    if locked.participant_count >= settings.CHATS_MAX_PARTICIPANTS:
        raise ValidationError(
            {"user_id": [f"A conversation has at most {settings.CHATS_MAX_PARTICIPANTS} participants."]}
        )
    ConversationMembership.objects.create(
        conversation=locked, user=user, last_read_at=locked.last_activity_at if locked.message_count else None
    )
    Conversation.objects.filter(pk=locked.pk).update(direct_key=None, participant_count=F("participant_count") + 1)
    # New to them; a membership change to everyone else.
    events.conversation_changed("conversation.created", locked.pk, recipients=[user.pk])
    events.conversation_changed("conversation.updated", locked.pk, exclude=user.pk)
    return True


@events.atomic
def conversation_remove_participant(*, conversation: Conversation, actor: User, user_id: UUID) -> None:
    """
    A participant may leave; others are removed by a group's owner or admins (admins: members only),
    or by a two-person conversation's owner (chats/services_groups.py). An owner who leaves passes
    ownership on. A fixed number of queries whatever the conversation's size.
    """
    locked = _lock(conversation)
    # The actor's role first: a non-participant learns nothing (404), not even who takes part.
    role = services_groups.role_of(locked, actor) if user_id != actor.pk else None
    membership = ConversationMembership.objects.filter(conversation=locked, user_id=user_id).first()
    if user_id != actor.pk:
        services_groups.check_may_remove(locked, role, membership.role if membership else "member")
    if membership is None:
        raise Http404("This user is not a participant.")
    membership.delete()
    Conversation.objects.filter(pk=locked.pk).update(direct_key=None, participant_count=F("participant_count") - 1)
    if membership.role == ConversationMembership.Role.OWNER:
        services_groups.pass_ownership(locked)
    events.conversation_removed(locked.pk, user_id)
    events.conversation_changed("conversation.updated", locked.pk)


@events.atomic
def conversation_delete(*, conversation: Conversation) -> None:
    """
    Staff only (the admin): the conversation goes with its memberships, messages and
    their history. Every member's sockets are told to drop it, as when they leave.
    """
    locked = _lock(conversation)
    conversation_id = locked.pk
    member_ids = list(ConversationMembership.objects.filter(conversation=locked).values_list("user_id", flat=True))
    attachment_services.attachments_delete_for_conversation(conversation_id=conversation_id)  # their files too
    locked.delete()
    for user_id in member_ids:
        events.conversation_removed(conversation_id, user_id)


@events.atomic
def user_delete(*, user: User) -> None:
    """
    Staff only (the admin). Someone who sent messages cannot be deleted (the timelines keep
    them): deactivate them instead. Otherwise they leave each conversation through
    conversation_remove_participant (direct_key cleared, events sent), then go.
    """
    _lock_users([user.pk])  # lock order: the user before their conversations
    if Message.objects.filter(sender=user).exists():
        raise ValidationError(
            "This user has sent messages, which stay in their conversations: deactivate the account instead."
        )
    for conversation in Conversation.objects.filter(memberships__user=user):
        conversation_remove_participant(conversation=conversation, actor=user, user_id=user.pk)
    services_reactions.reactions_delete_for_user(user_id=user.pk)
    events.credentials_revoked(user.pk)
    attachment_services.attachments_delete_for_uploader(user=user)
    user.delete()


@events.atomic
def conversation_mark_read(
    *, conversation: Conversation, user: User, message: Message | None = None
) -> None:
    """Move the user's read marker up to `message` (default: the newest); never backwards."""
    locked = _lock(conversation)  # sends and deletes change unread counts under this lock
    if message is None:
        message = Message.objects.filter(conversation=locked).order_by("-sent_at").first()
        if message is None:
            return
    elif message.conversation_id != locked.pk:
        raise ValidationError({"message_id": ["This message is not in this conversation."]})
    membership = ConversationMembership.objects.filter(conversation=locked, user=user).first()
    if membership is None or (membership.last_read_at and membership.last_read_at >= message.sent_at):
        return
    membership.last_read_at = message.sent_at
    membership.unread_count = (
        Message.objects.filter(conversation=locked, sent_at__gt=message.sent_at, is_deleted=False)
        .exclude(sender=user)
        .count()
    )
    membership.unread_mentions = services_mentions.unread_mentions_count(
        conversation_id=locked.pk, user_id=user.pk, after=message.sent_at
    ) if membership.unread_mentions else 0
    membership.save(update_fields=["last_read_at", "unread_count", "unread_mentions"])
    events.conversation_read(locked.pk, user.pk)
    events.read_marker_moved(locked.pk, user.pk, membership.last_read_at)


@events.atomic
def message_send(
    *,
    conversation: Conversation,
    sender: User,
    message_body: str,
    parent_message_id: UUID | None = None,
    client_id: str | None = None,
    attachment_ids: Sequence[UUID] = (),
    mention_ids: Sequence[UUID] = (),
) -> tuple[Message, bool]:
    """
    Append a message; the caller has checked that `sender` is a participant.
    Returns (message, created): a retry with a known client_id returns the original.
    `attachment_ids`: the sender's own uploads, not yet sent; with them the text may be empty.
    `mention_ids`: participants it mentions besides its `@[user_id]` tokens (services_mentions).
    """
    if client_id:
        # Retries of one client_id queue on the sender's row, wherever they are sent.
        _lock_users([sender.pk])
    # Lock the conversation: serialises sends to it, so sent_at and the counters agree.
    locked = _lock(conversation)
    if client_id:
        original = _message_for_retry(sender, client_id, locked)
        if original is not None:
            return original, False
    if parent_message_id is not None and not Message.objects.filter(
        pk=parent_message_id, conversation=locked
    ).exists():
        raise ValidationError({"parent_message": ["No message with this id in this conversation."]})
    message = Message(
        conversation=locked,
        sender=sender,
        message_body=message_body,
        parent_message_id=parent_message_id,
        client_id=client_id or None,
        # Strictly after the previous message, even if the clock stepped back.
        sent_at=max(timezone.now(), locked.last_activity_at + ONE_TICK),
        has_attachments=bool(attachment_ids),
    )
    message.mentions = services_mentions.mentions_resolve(
        conversation_id=locked.pk, sender_id=sender.pk, body=message_body, listed=mention_ids
    )
    # Field checks only: the database enforces the constraints (non-empty body, one client_id
    # per sender) anyway, and full_clean would ask it first, a query per constraint.
    message.clean_fields(exclude=["conversation", "sender", "parent_message"])
    if not message.message_body and not attachment_ids:
        raise ValidationError({"message_body": ["This field may not be blank."]})
    try:
        # A savepoint only where an insert may lose a race: the same client_id sent elsewhere.
        with transaction.atomic() if client_id else nullcontext():
            message.save(force_insert=True)
    except IntegrityError:
        original = _message_for_retry(sender, client_id, locked) if client_id else None
        if original is None:
            raise
        return original, False
    if attachment_ids:
        attachment_services.attachments_attach(sender=sender, message=message, attachment_ids=attachment_ids)
    Conversation.objects.filter(pk=locked.pk).update(
        message_count=F("message_count") + 1,
        last_message=message,
        last_activity_at=message.sent_at,
    )
    # The newest message: unread for everyone else, whatever their marker; and back in the inbox
    # of those who archived the conversation without muting it (same statement, no extra query).
    ConversationMembership.objects.filter(conversation=locked).exclude(user=sender).update(
        unread_count=F("unread_count") + 1,
        archived_at=Case(When(muted=True, then=F("archived_at")), default=None),
    )
    services_mentions.mentions_record(message=message, mentioned=message.mentions)
    events.message_changed("message.created", message)
    return message, True


def _message_for_retry(sender: User, client_id: str, conversation: Conversation) -> Message | None:
    # A locking read sees a concurrent winner's row even under MySQL's REPEATABLE READ.
    original = selectors.for_update(Message.objects.filter(sender=sender, client_id=client_id)).first()
    if original is not None:
        original.sender = sender  # the caller serialises it
    if original is not None and original.conversation_id != conversation.pk:
        raise ValidationError({"client_id": ["This client_id was already used for a message elsewhere."]})
    return original


def _check_sender(message: Message, actor: User, verb: str) -> None:
    if message.sender_id != actor.pk:
        raise PermissionDenied(f"Only the sender can {verb} a message.")
    message.sender = actor  # the same row: events and callers serialise it without a query


@events.atomic
def message_edit(
    *, message: Message, actor: User, message_body: str, mention_ids: Sequence[UUID] | None = None
) -> Message:
    """
    The sender replaces the text; the previous text goes to the history. Mentions are resolved
    again: the new text's `@[user_id]`s plus `mention_ids`, or, if None, the listed mentions it had.
    """
    # Lock order: conversation, then message. Every change that emits an event about a
    # conversation holds its lock, so the state an event shows (a conversation's last message,
    # counts) never misses a change whose event comes earlier in anyone's stream.
    _lock(message.conversation)
    locked = selectors.for_update(Message.objects.filter(pk=message.pk)).get()
    _check_sender(locked, actor, "edit")
    if locked.is_deleted:
        raise ValidationError({"message_body": ["A deleted message cannot be edited."]})
    mentioned = services_mentions.mentions_resolve(
        conversation_id=locked.conversation_id,
        sender_id=actor.pk,
        body=message_body,
        listed=mention_ids or (),
        kept=services_mentions.mentions_kept_on_edit(locked) if mention_ids is None else (),
    )
    if locked.message_body == message_body and mentioned == locked.mentions:
        return locked
    now = timezone.now()
    if locked.message_body != message_body:
        MessageEdit.objects.create(message=locked, message_body=locked.message_body, replaced_at=now)
        locked.message_body = message_body
        locked.edited_at = now
    locked.full_clean(exclude=["conversation", "sender", "parent_message"])
    services_mentions.mentions_replace(message=locked, mentioned=mentioned)
    locked.save(update_fields=["message_body", "edited_at", "mentions"])
    events.message_changed("message.updated", locked)
    return locked


@events.atomic
def message_delete(*, message: Message, actor: User) -> Message:
    """The sender deletes: a tombstone stays in the timeline; text, history and attachments (their files too) go."""
    _lock(message.conversation)  # lock order: conversation, then message
    locked = selectors.for_update(Message.objects.filter(pk=message.pk)).get()
    _check_sender(locked, actor, "delete")
    if not locked.is_deleted:
        # It stops counting as unread for those who had not read it yet.
        ConversationMembership.objects.filter(conversation_id=locked.conversation_id, unread_count__gt=0).exclude(
            user_id=locked.sender_id
        ).filter(Q(last_read_at__isnull=True) | Q(last_read_at__lt=locked.sent_at)).update(
            unread_count=F("unread_count") - 1
        )
        MessageEdit.objects.filter(message=locked).delete()
        if locked.has_attachments:
            attachment_services.attachments_delete_for_message(message=locked)
        services_reactions.reactions_clear(message=locked)
        services_reactions.pins_clear(message=locked)
        services_mentions.mentions_replace(message=locked, mentioned=[])
        locked.is_deleted = True
        locked.message_body = ""
        locked.edited_at = None
        locked.has_attachments = False
        locked.save(update_fields=[
            "is_deleted", "message_body", "edited_at", "has_attachments", "reaction_summary", "mentions"
        ])
        events.message_changed("message.deleted", locked)
    return locked
