from django.apps import AppConfig


class WebclientConfig(AppConfig):
    """The reference web client: static files and the HTML shell at /app/ (no models, no API of its own)."""

    name = "webclient"
    verbose_name = "Reference web client"
