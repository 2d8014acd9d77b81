"""
Thin views: querysets come from selectors, writes go to services, and
authorization is checked where a path or payload names a conversation.
"""
from chats.views.auth import TokenBlacklistView, TokenObtainView, TokenRefreshView, ping
from chats.views.conversations import ConversationViewSet
from chats.views.events import EventsView
from chats.views.messages import ConversationMessageViewSet, MessageViewSet
from chats.views.pins import ConversationPinViewSet
from chats.views.presence import PresenceView
from chats.views.root import ApiRootView
from chats.views.users import UserViewSet

__all__ = [
    "ApiRootView",
    "ConversationMessageViewSet",
    "ConversationPinViewSet",
    "ConversationViewSet",
    "EventsView",
    "MessageViewSet",
    "PresenceView",
    "TokenBlacklistView",
    "TokenObtainView",
    "TokenRefreshView",
    "UserViewSet",
    "ping",
]
