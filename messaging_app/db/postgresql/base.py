"""Django's PostgreSQL backend, with messaging_app.db's health-check bypass."""
from django.db.backends.postgresql import base

from messaging_app.db import RecentlyAliveMixin


class DatabaseWrapper(RecentlyAliveMixin, base.DatabaseWrapper):
    pass
