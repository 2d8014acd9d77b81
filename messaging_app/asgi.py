"""ASGI entry point: the REST API over HTTP and live events over WebSockets (/ws/)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")

# Set up Django before importing code that uses models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chats.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session auth for browsers; the consumer checks the Origin before trusting the cookie.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
