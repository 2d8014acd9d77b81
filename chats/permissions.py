"""
Authorization. List and detail querysets are scoped to the requesting user in
selectors; this covers the paths that start from an id in the URL or payload.
A non-participant is told "not found", never that the conversation exists.
"""
from django.http import Http404

from chats.models import Conversation, User
from chats.selectors import conversation_of_participant


def conversation_for_participant_or_404(*, user: User, conversation_id) -> Conversation:
    # A malformed id is a 404 too, like an unknown one.
    conversation = conversation_of_participant(user=user, conversation_id=conversation_id)
    if conversation is None:
        raise Http404
    return conversation
