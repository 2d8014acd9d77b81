"""ASGI entry point: serves the REST API (and, later, WebSockets)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")

application = get_asgi_application()
