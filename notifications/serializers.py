from rest_framework import serializers

from notifications.models import Webhook, WebhookDelivery


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
