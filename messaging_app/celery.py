"""
The Celery application: background tasks (notifications/tasks.py) run by `make worker`.

Configured from the Django settings named CELERY_* (messaging_app/settings.py): the broker is
CELERY_BROKER_URL, else REDIS_URL; with neither, tasks run in-process (task_always_eager).
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")

app = Celery("messaging_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
