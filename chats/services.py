"""
Every write of the app. Each service is one transaction; callers pass
already-parsed input (serializers do the shape checks) and get model instances.

Concurrency: a send locks its conversation row (select_for_update) before
stamping `sent_at`, so within one conversation messages are stored, counted and
timestamped in one order, and the denormalised count/last message stay exact.
"""
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chats.models import Conversation, ConversationMembership, Message, User, UserManager

# Limits a single request may ask for (documented in the README and schema).
MAX_PARTICIPANTS = 100
MAX_INITIAL_MESSAGES = 50


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


def _active_users(user_ids: Sequence[UUID]) -> list[User]:
    users = list(User.objects.filter(pk__in=user_ids, is_active=True))
    missing = set(user_ids) - {u.pk for u in users}
    if missing:
        raise ValidationError(
            {"participants": [f"Unknown user id: {uid}." for uid in sorted(map(str, missing))]}
        )
    return users


@transaction.atomic
def conversation_create(
    *, creator: User, participant_ids: Sequence[UUID], message_bodies: Sequence[str] = ()
) -> Conversation:
    """Open a conversation; the creator always takes part, duplicates collapse."""
    ids = list(dict.fromkeys([creator.pk, *participant_ids]))
    if len(ids) < 2:
        raise ValidationError(
            {"participants": ["A conversation needs at least one participant besides you."]}
        )
    if len(ids) > MAX_PARTICIPANTS:
        raise ValidationError(
            {"participants": [f"A conversation has at most {MAX_PARTICIPANTS} participants."]}
        )
    if len(message_bodies) > MAX_INITIAL_MESSAGES:
        raise ValidationError(
            {"messages": [f"At most {MAX_INITIAL_MESSAGES} messages may come with a new conversation."]}
        )
    users = _active_users(ids)

    now = timezone.now()
    conversation = Conversation.objects.create(
        created_by=creator, created_at=now, last_activity_at=now
    )
    ConversationMembership.objects.bulk_create(
        ConversationMembership(conversation=conversation, user=user, joined_at=now) for user in users
    )
    if message_bodies:
        # Distinct, increasing timestamps keep the initial messages in the order given.
        messages = [
            Message(
                conversation=conversation,
                sender=creator,
                message_body=body,
                sent_at=now + timedelta(microseconds=i),
            )
            for i, body in enumerate(message_bodies)
        ]
        for message in messages:
            message.full_clean(exclude=["conversation", "sender"])
        Message.objects.bulk_create(messages)
        conversation.message_count = len(messages)
        conversation.last_message = messages[-1]
        conversation.last_activity_at = messages[-1].sent_at
        conversation.save(update_fields=["message_count", "last_message", "last_activity_at"])
    return conversation


@transaction.atomic
def message_send(*, conversation: Conversation, sender: User, message_body: str) -> Message:
    """Append a message; the caller has checked that `sender` is a participant."""
    # Lock the conversation: serialises sends to it, so sent_at and the counters agree.
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    message = Message(
        conversation=locked,
        sender=sender,
        message_body=message_body,
        sent_at=max(timezone.now(), locked.last_activity_at),
    )
    message.full_clean(exclude=["conversation", "sender"])
    message.save(force_insert=True)
    Conversation.objects.filter(pk=locked.pk).update(
        message_count=F("message_count") + 1,
        last_message=message,
        last_activity_at=message.sent_at,
    )
    return message
