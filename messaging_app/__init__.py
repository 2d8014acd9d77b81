# The Celery app is loaded with Django, so tasks scheduled by the services use its settings.
from messaging_app.celery import app as celery_app

__all__ = ("celery_app",)
