"""
Attachments in the admin: read-only. They are written by the upload and message_send and
deleted with their message (the Message admin's tombstone action), their conversation or
their uploader, or by prune_attachments: each of those also deletes the files.
"""
from django.contrib import admin

from attachments.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["attachment_id", "file_name", "content_type", "size", "uploader", "message", "created_at"]
    list_filter = ["created_at", "content_type"]
    search_fields = ["file_name", "uploader__email", "attachment_id"]
    list_select_related = ["uploader", "message"]
    date_hierarchy = "created_at"
    fields = readonly_fields = [
        "attachment_id", "uploader", "message", "file_name", "content_type", "size", "width", "height",
        "storage_key", "thumbnail_key", "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
