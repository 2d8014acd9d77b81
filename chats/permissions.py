"""
Authorization. List and detail querysets are scoped to the requesting user in
selectors; this covers the paths that start from an id in the URL or payload.
A non-participant is told "not found", never that the conversation exists.
"""
from rest_framework.generics import get_object_or_404

from chats.models import Conversation, User
from chats.selectors import conversations_of


def conversation_for_participant_or_404(*, user: User, conversation_id) -> Conversation:
    # DRF's get_object_or_404 also turns a malformed UUID into a 404.
    return get_object_or_404(conversations_of(user=user), pk=conversation_id)
