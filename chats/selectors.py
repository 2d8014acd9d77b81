"""
Every non-trivial read, as querysets already scoped to the requesting user and
shaped for the API (fixed number of queries per page, whatever its length).
"""
from datetime import datetime, timezone

from django.db.models import Count, F, DateTimeField, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from chats.models import Conversation, ConversationMembership, Message, MessageEdit, User

# Stands for "nothing read yet" in comparisons with a null read marker.
BEGINNING_OF_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _conversation_ids_of(user: User) -> QuerySet:
    # Served by the unique (user, conversation) membership index.
    return ConversationMembership.objects.filter(user=user).values("conversation_id")


def conversations_of(*, user: User) -> QuerySet[Conversation]:
    """The conversations the user takes part in, bare (for access checks)."""
    return Conversation.objects.filter(pk__in=_conversation_ids_of(user))


def _unread_messages(user: User) -> QuerySet[Message]:
    """Messages from others that are not deleted (what can be unread)."""
    return Message.objects.filter(is_deleted=False).exclude(sender=user)


def conversation_list_for_user(*, user: User) -> QuerySet[Conversation]:
    """
    The user's conversations with everything the API shows loaded up front,
    including `unread_count`: counted in SQL per row (a correlated subquery on the
    timeline index), so it is always exact and the page needs no extra queries.
    """
    my_marker = ConversationMembership.objects.filter(conversation=OuterRef("pk"), user=user).values(
        "last_read_at"
    )
    unread = (
        _unread_messages(user)
        .filter(
            conversation=OuterRef("pk"),
            sent_at__gt=Coalesce(OuterRef("my_last_read_at"), Value(BEGINNING_OF_TIME), output_field=DateTimeField()),
        )
        .order_by()
        .values("conversation")
        .annotate(n=Count("*"))
        .values("n")
    )
    return (
        conversations_of(user=user)
        .annotate(
            my_last_read_at=Subquery(my_marker),
            unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), 0),
        )
        .select_related("created_by", "last_message__sender")
        .prefetch_related("participants")
    )


def unread_total_for_user(*, user: User) -> int:
    """Unread messages across all of the user's conversations, in one query."""
    return (
        _unread_messages(user)
        # One filter() call, so both conditions apply to the same (the user's) membership row.
        .filter(
            Q(conversation__memberships__user=user)
            & (
                Q(conversation__memberships__last_read_at__isnull=True)
                | Q(sent_at__gt=F("conversation__memberships__last_read_at"))
            )
        )
        .count()
    )


def message_history(*, message: Message) -> QuerySet[MessageEdit]:
    """Earlier versions of a message, oldest first."""
    return MessageEdit.objects.filter(message=message).order_by("replaced_at", "id")


def message_list_for_user(*, user: User) -> QuerySet[Message]:
    """Messages of every conversation the user takes part in."""
    return Message.objects.filter(conversation_id__in=_conversation_ids_of(user)).select_related(
        "sender"
    )


def message_list_for_conversation(*, conversation: Conversation) -> QuerySet[Message]:
    return Message.objects.filter(conversation=conversation).select_related("sender")


def user_search(*, user: User, term: str) -> QuerySet[User]:
    """
    People to talk to. Without a term: the people the user already shares a
    conversation with. With a term: anyone active whose name contains it, or
    whose email is exactly it (so an email address cannot be guessed piecemeal).
    """
    others = User.objects.filter(is_active=True).exclude(pk=user.pk)
    term = term.strip()
    if not term:
        return others.filter(memberships__conversation_id__in=_conversation_ids_of(user)).distinct()
    name_match = Q()
    for word in term.split():
        name_match &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
    return others.filter(name_match | Q(email=term.lower()))
