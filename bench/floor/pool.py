"""The bare Django view served as production serves the API: Django's WSGI handler on
messaging_app/wsgi_pool.py's threads, under gunicorn + uvicorn workers."""
import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.floor.settings"
django_application = get_wsgi_application()

from messaging_app.wsgi_pool import WSGIThreadPool  # noqa: E402  (after Django's set-up)

application = WSGIThreadPool(django_application)
