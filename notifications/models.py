"""
Outgoing webhooks: endpoints a user registers to receive their event stream (chats/stream.py)
over HTTPS, and the log of each event's delivery to each of them; and each user's notification
preferences.
"""
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


class Webhook(models.Model):
    # Public identifier; exposed as `webhook_id`.
    webhook_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Whose events it receives, and the only one who may see or manage it. Served by the
    # (owner, is_active) index below.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks",
                              db_index=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    # Signs every delivery (HMAC-SHA256). Kept as is (signing needs it); shown once, at creation.
    secret = models.CharField(max_length=100)
    # False once disabled after sustained failure (disabled_reason says why); nothing is sent then.
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    # The owner's last event_id delivered (answered 2xx): the next delivery sends the one after.
    last_event_id = models.PositiveBigIntegerField(default=0)
    # Failed attempts in a row (reset by a success); WEBHOOKS_DISABLE_AFTER_FAILURES disables it.
    consecutive_failures = models.PositiveIntegerField(default=0)
    # A worker delivering holds the webhook until then (renewed per event): one sender at a time,
    # so events go out in order; another worker takes over when it passes.
    lease_until = models.DateTimeField(null=True, blank=True)
    # After a failed attempt: no run before then (exponential backoff); null when healthy.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "webhook_id"]
        indexes = [
            # The owner's list, and after each commit the active webhooks of the events' recipients.
            models.Index(fields=["owner", "is_active"], name="webhook_owner_active_idx"),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook: its attempts and their outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # failed so far, will be retried
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # given up: the webhook was disabled at this event

    id = models.BigAutoField(primary_key=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    event_id = models.PositiveBigIntegerField()
    # The frame's "type" (message.created, ...), for the log.
    event_type = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # The last attempt's HTTP status; null when it got no answer (timeout, refused, blocked).
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-event_id"]
        constraints = [
            # One row per event and webhook (attempts update it), newest first in the log.
            models.UniqueConstraint(fields=["webhook", "event_id"], name="webhook_delivery_event_uniq"),
        ]


class NotificationPreferences(models.Model):
    """
    A user's notification settings (GET/PATCH /api/users/me/notifications/). No row means the
    defaults below (selectors.preferences_for answers an unsaved instance; the first PATCH saves it).
    Per conversation: ConversationMembership.notify_level and muted (chats/models.py).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="notification_preferences"
    )
    # Web Push to the user's registered browsers when they have no open socket.
    push_enabled = models.BooleanField(default=True)
    # Whether a push carries the message's text (off: only who wrote in which conversation).
    push_include_text = models.BooleanField(default=False)
    # An email of unread messages once the user has been offline longer than the delay.
    email_digest_enabled = models.BooleanField(default=True)
    email_digest_delay_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(5), MaxValueValidator(7 * 24 * 60)]
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"notification preferences of {self.user_id}"


class PushSubscription(models.Model):
    """A browser's Web Push subscription (PushSubscription.toJSON() in the browser), for its user."""

    # Public identifier; exposed as `subscription_id`.
    subscription_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Covered by the unique (user, endpoint) index below: "this user's subscriptions".
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions",
                             db_index=False)
    # The push service's URL for this browser (https, public: the webhook URL guard). 600 characters
    # (real ones are under 300) keep the unique index under MariaDB's 3072-byte key limit.
    endpoint = models.URLField(max_length=600)
    # The browser's P-256 public key (65 bytes, base64url) and auth secret (16 bytes, base64url).
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=40)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "subscription_id"]
        constraints = [
            # One row per browser of a user (registering again answers the same one).
            models.UniqueConstraint(fields=["user", "endpoint"], name="push_sub_user_endpoint_uniq"),
        ]

    def __str__(self) -> str:
        return self.endpoint

    def as_subscription_info(self) -> dict:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


class EmailDigest(models.Model):
    """One digest sent: what it covered, so no message is ever in two digests."""

    id = models.BigAutoField(primary_key=True)
    # Served by the (user, -through) index: the user's last digest bounds the next one.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_digests",
                             db_index=False)
    sent_at = models.DateTimeField(default=timezone.now)
    # sent_at of the newest message it listed: the next digest lists only messages after it.
    through = models.DateTimeField()
    message_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["-through"]
        indexes = [models.Index(fields=["user", "-through"], name="digest_user_through_idx")]
