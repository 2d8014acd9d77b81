"""
The attachment's one output shape: the upload's response, `GET /api/attachments/<id>/` and
each item of a message's `attachments`. `attachment_payload` builds it from a row or a model
instance without a serializer (the timelines' fast path); test_attachments pins the two equal.
"""
from rest_framework import serializers

from attachments.models import Attachment


def download_path(attachment_id) -> str:
    return f"/api/attachments/{attachment_id}/download/"


def thumbnail_path(attachment_id) -> str:
    return f"/api/attachments/{attachment_id}/thumbnail/"


def attachment_payload(source) -> dict:
    """AttachmentSerializer's output for an Attachment or a selectors.PAYLOAD_FIELDS row."""
    row = source if isinstance(source, dict) else {
        "attachment_id": source.pk, "file_name": source.file_name, "content_type": source.content_type,
        "size": source.size, "width": source.width, "height": source.height, "thumbnail_key": source.thumbnail_key,
    }
    attachment_id = str(row["attachment_id"])
    return {
        "attachment_id": attachment_id,
        "file_name": row["file_name"],
        "content_type": row["content_type"],
        "size": row["size"],
        "width": row["width"],
        "height": row["height"],
        "download_url": download_path(attachment_id),
        "thumbnail_url": thumbnail_path(attachment_id) if row["thumbnail_key"] else None,
    }


class AttachmentSerializer(serializers.ModelSerializer):
    """An uploaded file. Its URLs are paths on this server; fetching them needs your credentials."""

    download_url = serializers.SerializerMethodField(help_text="GET it (with your credentials) for the file.")
    thumbnail_url = serializers.SerializerMethodField(
        help_text="Images only: a PNG preview at most 320x320 pixels; null for other files."
    )

    class Meta:
        model = Attachment
        fields = ["attachment_id", "file_name", "content_type", "size", "width", "height", "download_url",
                  "thumbnail_url"]
        read_only_fields = fields
        extra_kwargs = {
            "file_name": {"help_text": "The uploaded file's name (without any path)."},
            "content_type": {"help_text": "For images, the type their content shows, whatever was declared."},
            "size": {"help_text": "Bytes."},
            "width": {"help_text": "Images (PNG, JPEG, GIF, WebP) only: pixels; null for other files."},
            "height": {"help_text": "Images only: pixels; null for other files."},
        }

    def get_download_url(self, attachment) -> str:
        return download_path(attachment.pk)

    def get_thumbnail_url(self, attachment) -> str | None:
        return thumbnail_path(attachment.pk) if attachment.thumbnail_key else None


class AttachmentUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        allow_empty_file=False,
        use_url=False,
        help_text="The file (multipart/form-data): at most ATTACHMENTS_MAX_BYTES (25 MiB unless configured).",
    )
