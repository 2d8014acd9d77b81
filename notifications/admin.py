from django.contrib import admin

from notifications.models import Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Read-only: webhooks change only through the services."""

    list_display = ["url", "owner", "is_active", "last_event_id", "consecutive_failures", "created_at"]
    exclude = ["secret"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
