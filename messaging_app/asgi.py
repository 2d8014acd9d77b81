"""
ASGI entry point: the REST API over HTTP and live events over WebSockets (/ws/).

HTTP requests run through Django's WSGI handler on a fixed pool of threads per process
(messaging_app/wsgi_pool.py: persistent database connections, no per-request thread);
WebSockets stay on the event loop (Channels).
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")

# Set up Django before importing code that uses models.
django_wsgi_app = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chats.routing import websocket_urlpatterns  # noqa: E402
from messaging_app.limits import limit_request_body  # noqa: E402
from messaging_app.wsgi_pool import WSGIThreadPool  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Bodies counted as they are read (chunked ones too): 413 past MAX_REQUEST_BODY_BYTES.
        "http": limit_request_body(WSGIThreadPool(django_wsgi_app)),
        # Session auth for browsers; the consumer checks the Origin before trusting the cookie.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
