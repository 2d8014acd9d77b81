"""Reads of attachments, scoped to the requesting user."""
import uuid
from collections.abc import Iterable

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce

from attachments.models import Attachment
from chats.models import ConversationMembership, User

# What a message payload shows of each attachment (attachments.serializers.attachment_payload).
PAYLOAD_FIELDS = (
    "attachment_id", "message_id", "file_name", "content_type", "size", "width", "height", "thumbnail_key",
)


def bytes_stored_by(*, user: User) -> int:
    """What counts against the user's quota: every attachment of theirs still stored."""
    return Attachment.objects.filter(uploader=user).aggregate(total=Coalesce(Sum("size"), 0))["total"]


def attachment_for_user(*, user: User, attachment_id) -> Attachment | None:
    """
    The attachment if the user may see it: they uploaded it, or they take part in the
    conversation of the message carrying it, or in the conversation whose avatar it is.
    Else None, the same for an unknown id.
    """
    try:
        attachment_id = uuid.UUID(str(attachment_id))
    except ValueError:
        return None
    their_conversations = ConversationMembership.objects.filter(user=user).values("conversation_id")
    return (
        Attachment.objects.filter(pk=attachment_id)
        .filter(
            Q(uploader=user)
            | Q(message__conversation_id__in=their_conversations)
            | Q(avatar_of__in=their_conversations)
        )
        .first()
    )


def payload_rows_by_message(message_ids: Iterable) -> dict[str, list[dict]]:
    """{str(message_id): [PAYLOAD_FIELDS rows in upload order]} for these messages: one query."""
    ids = list(message_ids)
    found: dict[str, list[dict]] = {str(pk): [] for pk in ids}
    if not ids:
        return found
    rows = Attachment.objects.filter(message_id__in=ids).order_by("created_at", "attachment_id").values(*PAYLOAD_FIELDS)
    for row in rows:
        found[str(row["message_id"])].append(row)
    return found
