"""Thin views of Web Push subscriptions (notifications/push.py); another user's subscription is a 404."""
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from chats.schema import document_validation_errors
from notifications import push
from notifications.models import PushSubscription
from notifications.serializers import (
    PushSubscriptionCreateSerializer,
    PushSubscriptionListSerializer,
    PushSubscriptionSerializer,
)


# `keys` itself (missing, null, not an object): drf-standardized-errors lists only its fields.
@document_validation_errors({"endpoint": ["url_refused", "too_many_subscriptions"], "keys.p256dh": ["invalid"],
                             "keys.auth": ["invalid"], "keys": ["required", "null", "invalid"]})
class PushSubscriptionListView(GenericAPIView):
    serializer_class = PushSubscriptionCreateSerializer
    queryset = PushSubscription.objects.none()  # the schema's model; requests use the service

    @extend_schema(
        summary="Your browsers' push subscriptions, and the key to subscribe with",
        responses={200: PushSubscriptionListSerializer},
    )
    def get(self, request):
        return Response(PushSubscriptionListSerializer({
            "vapid_public_key": push.vapid_public_key(),
            "subscriptions": PushSubscription.objects.filter(user=request.user),
        }).data)

    @extend_schema(
        summary="Register a browser for Web Push",
        description=(
            "Post the browser's `PushSubscription.toJSON()` (made with `vapid_public_key` of the GET). While you "
            "have no open socket, new messages push to it: one push per conversation per burst, never for muted "
            "conversations or your own messages, without the text unless `push_include_text` "
            "(/api/users/me/notifications/). 201, or 200 when this browser was registered already (its keys "
            "are updated). The endpoint must be https on a public address (400 `url_refused`)."
        ),
        request=PushSubscriptionCreateSerializer,
        responses={201: PushSubscriptionSerializer, 200: PushSubscriptionSerializer},
        examples=[OpenApiExample(
            "A browser", request_only=True,
            value={"endpoint": "https://push.example.com/send/abc123", "keys": {
                "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                "auth": "tBHItJI5svbpez7KI4CCXg",
            }},
        )],
    )
    def post(self, request):
        serializer = PushSubscriptionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        subscription, created = push.subscription_register(
            user=request.user, endpoint=data["endpoint"], p256dh=data["keys"]["p256dh"], auth=data["keys"]["auth"]
        )
        return Response(PushSubscriptionSerializer(subscription).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class PushSubscriptionDetailView(GenericAPIView):
    serializer_class = PushSubscriptionSerializer
    queryset = PushSubscription.objects.none()

    @extend_schema(summary="Remove a push subscription", description="Any other id is a 404.", responses={204: None})
    def delete(self, request, subscription_id):
        subscription = push.subscription_for_user(user=request.user, subscription_id=subscription_id)
        if subscription is None:
            raise Http404("No push subscription with this id.")
        push.subscription_delete(subscription=subscription)
        return Response(status=status.HTTP_204_NO_CONTENT)
