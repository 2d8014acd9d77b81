"""Reads of notifications, scoped to the requesting user (another user's webhook is None, hence 404)."""
import uuid

from django.db.models import QuerySet

from chats.models import User
from notifications.models import Webhook, WebhookDelivery


def webhook_list_for_user(*, user: User) -> QuerySet[Webhook]:
    return Webhook.objects.filter(owner=user).order_by("created_at", "webhook_id")


def webhook_for_user(*, user: User, webhook_id) -> Webhook | None:
    try:
        webhook_id = uuid.UUID(str(webhook_id))
    except ValueError:
        return None
    return Webhook.objects.filter(owner=user, pk=webhook_id).first()


def delivery_list_for_webhook(*, webhook: Webhook) -> QuerySet[WebhookDelivery]:
    """The webhook's delivery log, newest event first."""
    return WebhookDelivery.objects.filter(webhook=webhook).order_by("-event_id")
