"""
Files uploaded to be sent with messages. The bytes live in the "attachments" storage
(settings.STORAGES: a local directory or an S3-compatible bucket); a row says whose they are,
what they are and which message carries them.
"""
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from chats.models import Message


class Attachment(models.Model):
    # Public identifier; exposed as `attachment_id`.
    attachment_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Who uploaded it: the only one who may attach it, and whose quota it counts against. The
    # (uploader, created_at) index below serves the quota's sum.
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments", db_index=False
    )
    # The message carrying it; null until it is sent (then pruned after
    # ATTACHMENTS_UNATTACHED_TTL_HOURS). Set once, by message_send. Its FK index is subsumed
    # by the (message, created_at) index below.
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments", db_index=False
    )
    # The name the uploader gave, cleaned (no path, no control characters): shown and offered
    # as the download's file name, never used as a storage key.
    file_name = models.CharField(max_length=255)
    # Recognised from the content for images (Pillow), else the client's declared type.
    content_type = models.CharField(max_length=127)
    size = models.PositiveBigIntegerField()
    # Key of the file in the attachments storage: "<uploader hex>/<attachment hex>".
    storage_key = models.CharField(max_length=255)
    # Raster images only (PNG, JPEG, GIF, WebP): their size and a small PNG preview.
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail_key = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "attachment_id"]
        indexes = [
            # The quota (a user's stored bytes) and the uploader's side of the access check.
            models.Index(fields=["uploader", "created_at"], name="attachment_uploader_idx"),
            # A page's attachments in upload order (message payloads, the download's access
            # check); with message NULL, prune_attachments' unattached uploads older than the TTL.
            models.Index(fields=["message", "created_at"], name="attachment_message_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.size} bytes)"

    @property
    def is_image(self) -> bool:
        return self.width is not None
