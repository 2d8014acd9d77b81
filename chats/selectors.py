"""
Every non-trivial read, as querysets already scoped to the requesting user and
shaped for the API (fixed number of queries per page, whatever its length).
"""
from django.db.models import Q, QuerySet

from chats.models import Conversation, ConversationMembership, Message, User


def _conversation_ids_of(user: User) -> QuerySet:
    # Served by the unique (user, conversation) membership index.
    return ConversationMembership.objects.filter(user=user).values("conversation_id")


def conversations_of(*, user: User) -> QuerySet[Conversation]:
    """The conversations the user takes part in, bare (for access checks)."""
    return Conversation.objects.filter(pk__in=_conversation_ids_of(user))


def conversation_list_for_user(*, user: User) -> QuerySet[Conversation]:
    """The user's conversations with everything the API shows loaded up front."""
    return (
        conversations_of(user=user)
        .select_related("created_by", "last_message__sender")
        .prefetch_related("participants")
    )


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
