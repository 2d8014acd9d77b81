"""
Every write of attachments. An upload is stored by `attachment_create`; `message_send`
(chats/services.py) attaches uploads to the message it creates (`attachments_attach`), and
the message's deletion deletes them (`attachments_delete_for_message`). Files are deleted
from the storage only after the transaction that deleted their rows commits.

Locks: the uploader's user row while an upload checks the quota and is stored (uploads of one
user queue there, so two cannot both pass the quota); the attachment rows last, after the
message's (chats/services.py's lock order: users, conversations, messages, then these).
"""
import mimetypes
import os
import re
import unicodedata
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from attachments import selectors
from attachments.images import inspect_image
from attachments.models import Attachment
from attachments.storage import attachment_storage, delete_files, delete_files_on_commit
from chats.models import Conversation, Message, User
from chats.selectors import for_update

FILE_NAME_MAX_LENGTH = 255
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def clean_file_name(name: str) -> str:
    """The uploaded name without any path or control character, at most 255 characters (extension kept)."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C").strip().strip(".")
    if not name:
        return "file"
    if len(name) > FILE_NAME_MAX_LENGTH:
        stem, extension = os.path.splitext(name)
        extension = extension[:16]
        name = stem[:FILE_NAME_MAX_LENGTH - len(extension)] + extension
    return name


def declared_type(upload: UploadedFile, file_name: str) -> str:
    """The client's content type (parameters dropped), or the name's, or application/octet-stream."""
    value = (upload.content_type or "").split(";")[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(value) or value == "application/octet-stream":
        value = (mimetypes.guess_type(file_name)[0] or "application/octet-stream").lower()
    return value


def type_allowed(content_type: str) -> bool:
    for pattern in settings.ATTACHMENTS_ALLOWED_TYPES:
        pattern = pattern.strip().lower()
        if pattern == content_type or pattern == "*/*" or (
            pattern.endswith("/*") and content_type.startswith(pattern[:-1])
        ):
            return True
    return False


@transaction.atomic
def attachment_create(*, uploader: User, upload: UploadedFile) -> Attachment:
    """
    Stores an upload (not attached to any message yet). Refused: past ATTACHMENTS_MAX_BYTES
    (413), an empty file, a type not in ATTACHMENTS_ALLOWED_TYPES, an image that does not
    decode or is too large to decode, or past the uploader's quota (400).
    """
    if upload.size > settings.ATTACHMENTS_MAX_BYTES:
        from attachments.uploads import FileTooLarge  # an API error: DRF is not imported with the services

        raise FileTooLarge()
    if upload.size == 0:
        raise _invalid("file", "The file is empty.", "empty")
    file_name = clean_file_name(upload.name)
    claimed = declared_type(upload, file_name)
    image = inspect_image(upload, claimed)
    content_type = image.content_type if image else claimed
    if not type_allowed(content_type):
        raise _invalid("file", f"Files of type {content_type} are not accepted.", "unsupported_type")

    # Uploads of one user queue here, so two cannot both pass the quota.
    list(for_update(User.objects.filter(pk=uploader.pk)).values_list("pk", flat=True))
    stored = selectors.bytes_stored_by(user=uploader)
    if stored + upload.size > settings.ATTACHMENTS_USER_QUOTA_BYTES:
        raise _invalid(
            "file",
            f"Storing this file would pass your quota of {settings.ATTACHMENTS_USER_QUOTA_BYTES} bytes "
            f"({stored} stored). Delete messages with attachments to make room.",
            "quota_exceeded",
        )

    attachment = Attachment(
        uploader=uploader,
        file_name=file_name,
        content_type=content_type,
        size=upload.size,
        width=image.width if image else None,
        height=image.height if image else None,
    )
    storage = attachment_storage()
    key = f"{uploader.pk.hex}/{attachment.pk.hex}"
    saved = []
    try:
        upload.seek(0)
        # Copied through a plain File: the local storage would otherwise move Django's temporary
        # upload file away, and the request's own clean-up then finds it gone.
        attachment.storage_key = storage.save(key, File(upload.file, name=upload.name))
        saved.append(attachment.storage_key)
        if image:
            attachment.thumbnail_key = storage.save(f"{key}-thumbnail.png", ContentFile(image.thumbnail))
            saved.append(attachment.thumbnail_key)
        attachment.full_clean(exclude=["uploader", "message"])
        attachment.save(force_insert=True)
    except BaseException:
        delete_files(saved)  # no row refers to them
        raise
    return attachment


def attachments_attach(*, sender: User, message: Message, attachment_ids: Sequence[UUID]) -> None:
    """
    Part of message_send (in its transaction, after the message's insert): the sender's own
    uploads, not yet attached, now belong to `message`. Anything else is a 400 naming the ids.
    """
    ids = list(dict.fromkeys(attachment_ids))
    if len(ids) > settings.ATTACHMENTS_MAX_PER_MESSAGE:
        raise _invalid(
            "attachments", f"At most {settings.ATTACHMENTS_MAX_PER_MESSAGE} attachments per message.", "max_length"
        )
    found = {
        row["attachment_id"]: row
        for row in for_update(Attachment.objects.filter(pk__in=ids, uploader=sender))
        .order_by("pk")
        .values("attachment_id", "message_id")
    }
    errors = []
    for attachment_id in ids:
        row = found.get(attachment_id)
        if row is None:
            # The same answer for someone else's upload and an unknown id.
            errors.append(ValidationError(f"No upload of yours has this id: {attachment_id}.", code="does_not_exist"))
        elif row["message_id"] is not None:
            errors.append(ValidationError(
                f"This upload is already attached to a message: {attachment_id}.", code="already_attached"
            ))
    if errors:
        raise ValidationError({"attachments": errors})
    Attachment.objects.filter(pk__in=ids).update(message=message)


def attachments_delete_for_message(*, message: Message) -> None:
    """A message became a tombstone (message_delete): its attachments go, files after commit."""
    _delete(Attachment.objects.filter(message=message))


def attachments_delete_for_conversation(*, conversation_id: UUID) -> None:
    """A conversation is deleted (conversation_delete): the files of its messages' attachments and its avatar go too."""
    _delete(Attachment.objects.filter(Q(message__conversation_id=conversation_id) | Q(avatar_of=conversation_id)))


def attachments_delete(*, attachment_ids: Sequence[UUID]) -> None:
    """These attachments go, files after commit (a group's replaced avatar: chats/services_groups.py)."""
    _delete(Attachment.objects.filter(pk__in=attachment_ids))


def attachments_delete_for_uploader(*, user: User) -> None:
    """A user is deleted (user_delete: only one who never sent a message): their unsent uploads' files go too."""
    _delete(Attachment.objects.filter(uploader=user))


def _delete(queryset) -> int:
    keys = [key for pair in queryset.values_list("storage_key", "thumbnail_key") for key in pair]
    deleted, _ = queryset.delete()
    delete_files_on_commit(keys)
    return deleted


def _unattached():
    """Uploads neither sent with a message nor a conversation's avatar (a subquery: no outer join to lock)."""
    avatars = Conversation.objects.filter(avatar__isnull=False).values("avatar_id")
    return Attachment.objects.filter(message__isnull=True).exclude(pk__in=avatars)


def attachments_prune(*, hours: int | None = None, batch_size: int = 500) -> int:
    """
    Deletes uploads never attached to a message within `hours` (ATTACHMENTS_UNATTACHED_TTL_HOURS),
    in batches, each its own transaction. Returns how many were deleted.
    """
    hours = settings.ATTACHMENTS_UNATTACHED_TTL_HOURS if hours is None else hours
    cutoff = timezone.now() - timedelta(hours=hours)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                for_update(_unattached().filter(created_at__lt=cutoff))
                .order_by("created_at", "pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return total
            # Still unattached under the lock: a send attaching one of them waits, then finds it gone.
            total += _delete(_unattached().filter(pk__in=ids))
