from django.urls import path
from rest_framework.routers import DefaultRouter, SimpleRouter
from rest_framework_nested.routers import NestedSimpleRouter

from chats import views

router = DefaultRouter()
router.APIRootView = views.ApiRootView
router.register("users", views.UserViewSet, basename="user")
router.register("conversations", views.ConversationViewSet, basename="conversation")
router.register("messages", views.MessageViewSet, basename="message")


class _ConversationPath:
    """Parent of the nested routes: names their URL kwarg `conversation_id`."""

    lookup_field = "pk"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"


_parent = SimpleRouter()
_parent.register("conversations", _ConversationPath, basename="conversation-parent")
conversation_router = NestedSimpleRouter(_parent, "conversations", lookup="conversation")
conversation_router.register(
    "messages", views.ConversationMessageViewSet, basename="conversation-message"
)

conversation_router.register("pins", views.ConversationPinViewSet, basename="conversation-pin")

urlpatterns = [
    path("ping/", views.ping, name="ping"),
    path("events/", views.EventsView.as_view(), name="events"),
    path("presence/", views.PresenceView.as_view(), name="presence"),
] + router.urls + conversation_router.urls
