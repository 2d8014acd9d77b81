from rest_framework import serializers

from notifications.models import NotificationPreferences, PushSubscription, Webhook, WebhookDelivery


class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="https URL that receives your events (POST, JSON).")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook, as listed: never its secret."""

    class Meta:
        model = Webhook
        fields = ["webhook_id", "url", "description", "is_active", "disabled_reason", "last_event_id",
                  "consecutive_failures", "next_attempt_at", "created_at"]
        read_only_fields = fields


class WebhookCreatedSerializer(WebhookSerializer):
    """The answer to a registration: the only time the signing secret is shown."""

    class Meta(WebhookSerializer.Meta):
        fields = WebhookSerializer.Meta.fields + ["secret"]
        read_only_fields = fields
        extra_kwargs = {"secret": {"help_text": "Signs every delivery (docs/webhooks.md). Shown only now."}}


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["event_id", "event_type", "status", "attempts", "response_code", "last_error", "created_at",
                  "last_attempt_at", "delivered_at"]
        read_only_fields = fields


class NotificationPreferencesSerializer(serializers.ModelSerializer):
    """Your notification settings; PATCH changes the fields sent."""

    class Meta:
        model = NotificationPreferences
        fields = ["push_enabled", "push_include_text", "email_digest_enabled", "email_digest_delay_minutes",
                  "updated_at"]
        read_only_fields = ["updated_at"]
        extra_kwargs = {
            "push_enabled": {"help_text": "Web Push to your browsers while you have no open socket."},
            "push_include_text": {"help_text": "Whether a push shows the message's text (default: off)."},
            "email_digest_enabled": {"help_text": "An email of your unread messages once you have been offline "
                                                  "longer than email_digest_delay_minutes."},
            "email_digest_delay_minutes": {"help_text": "Minutes offline before a digest (5 to 10080)."},
        }


class PushKeysSerializer(serializers.Serializer):
    p256dh = serializers.CharField(max_length=100, help_text="The browser's P-256 public key, base64url.")
    auth = serializers.CharField(max_length=40, help_text="The browser's auth secret, base64url.")


class PushSubscriptionCreateSerializer(serializers.Serializer):
    """What a browser's PushSubscription.toJSON() gives (expirationTime is ignored)."""

    endpoint = serializers.URLField(max_length=600, help_text="The push service URL of this browser (https).")
    keys = PushKeysSerializer()


class PushSubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PushSubscription
        fields = ["subscription_id", "endpoint", "created_at"]
        read_only_fields = fields


class PushSubscriptionListSerializer(serializers.Serializer):
    vapid_public_key = serializers.CharField(
        allow_null=True, read_only=True,
        help_text="The applicationServerKey to subscribe with (base64url); null when this server sends no push.",
    )
    subscriptions = PushSubscriptionSerializer(many=True, read_only=True)
