"""
Thin views of webhooks (writes go to notifications.services, reads through
notifications.selectors: another user's webhook is answered 404, exactly as an unknown id)
and of the caller's notification preferences (notifications.preferences).
"""
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from chats.pagination import StandardPagination
from chats.schema import document_validation_errors
from notifications import preferences, selectors, services
from notifications.models import NotificationPreferences, Webhook, WebhookDelivery
from notifications.serializers import (
    NotificationPreferencesSerializer,
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)


def _webhook_or_404(request, webhook_id) -> Webhook:
    webhook = selectors.webhook_for_user(user=request.user, webhook_id=webhook_id)
    if webhook is None:
        raise Http404("No webhook with this id.")
    return webhook


@document_validation_errors({"url": ["url_refused", "too_many_webhooks"]})
class WebhookListView(GenericAPIView):
    serializer_class = WebhookSerializer
    pagination_class = StandardPagination
    queryset = Webhook.objects.none()  # the schema's model; requests use the selector

    def get_queryset(self):
        return selectors.webhook_list_for_user(user=self.request.user)

    @extend_schema(summary="Your webhooks", description="Never their secrets.",
                   responses={200: WebhookSerializer(many=True)})
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookSerializer(page, many=True).data)

    @extend_schema(
        summary="Register a webhook",
        description=(
            "Your events (the frames of your WebSocket, with `event_id`) from now on are POSTed to `url`, "
            "in order, at least once, each signed with `X-Messaging-Signature` (docs/webhooks.md). The answer "
            "carries the signing `secret`: the only time it is shown. `url` must be https and name a public "
            "address (400 `url_refused`); at most WEBHOOKS_MAX_PER_USER (10) webhooks each."
        ),
        request=WebhookCreateSerializer,
        responses={201: WebhookCreatedSerializer},
        examples=[OpenApiExample(
            "Your endpoint", request_only=True,
            value={"url": "https://hooks.example.com/messaging", "description": "My bot"},
            description="Replace the URL with your endpoint's (https, a public address).",
        )],
    )
    def post(self, request):
        serializer = WebhookCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook = services.webhook_create(owner=request.user, **serializer.validated_data)
        return Response(WebhookCreatedSerializer(webhook).data, status=status.HTTP_201_CREATED)


class WebhookDetailView(GenericAPIView):
    serializer_class = WebhookSerializer
    queryset = Webhook.objects.none()  # the schema's model; requests use the selector

    @extend_schema(summary="One of your webhooks", description="Any other id is a 404.")
    def get(self, request, webhook_id):
        return Response(WebhookSerializer(_webhook_or_404(request, webhook_id)).data)

    @extend_schema(summary="Delete a webhook", description="Nothing more is sent to it. Any other id is a 404.",
                   responses={204: None})
    def delete(self, request, webhook_id):
        services.webhook_delete(webhook=_webhook_or_404(request, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(GenericAPIView):
    serializer_class = WebhookDeliverySerializer
    pagination_class = StandardPagination
    queryset = WebhookDelivery.objects.none()  # the schema's model; requests use the selector

    @extend_schema(
        summary="A webhook's delivery log",
        description=(
            "One entry per event sent (or being sent), newest first: `status` pending (failed so far, will be "
            "retried), succeeded, or failed (given up: the webhook was disabled); `attempts`, the last "
            "`response_code` (null without an answer) and `last_error`."
        ),
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    def get(self, request, webhook_id):
        webhook = _webhook_or_404(request, webhook_id)
        page = self.paginate_queryset(selectors.delivery_list_for_webhook(webhook=webhook))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class NotificationPreferencesView(GenericAPIView):
    serializer_class = NotificationPreferencesSerializer
    queryset = NotificationPreferences.objects.none()  # the schema's model; requests use preferences_for

    @extend_schema(
        summary="Your notification settings",
        description="Defaults until you change one: push on, without message text; email digest on, after 60 minutes "
                    "offline. Per conversation: `notifications` (all / mentions / none) and `muted` on "
                    "`PATCH /api/conversations/{conversation_id}/membership/` (docs/notifications.md).",
    )
    def get(self, request):
        return Response(NotificationPreferencesSerializer(preferences.preferences_for(user=request.user)).data)

    @extend_schema(
        summary="Change your notification settings",
        description="Only the fields sent change.",
        examples=[OpenApiExample(
            "Push with the text, no email", request_only=True,
            value={"push_include_text": True, "email_digest_enabled": False},
        )],
    )
    def patch(self, request):
        serializer = NotificationPreferencesSerializer(
            preferences.preferences_for(user=request.user), data=request.data, partial=True
        )
        serializer.is_valid(raise_exception=True)
        changed = preferences.preferences_update(user=request.user, **serializer.validated_data)
        return Response(NotificationPreferencesSerializer(changed).data)
