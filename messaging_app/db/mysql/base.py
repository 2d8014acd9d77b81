"""
Django's MySQL/MariaDB backend with two changes:
- messaging_app.db's health-check bypass;
- date-times parsed in C by the driver, and made aware (UTC) there when the connection's time
  zone is UTC (USE_TZ, no DATABASES TIME_ZONE: this project's settings), so the ORM's
  per-value converter is left out (conversions.py). Same values as Django's backend.
"""
from datetime import timezone

from django.conf import settings
from django.db.backends.mysql import base, operations

from messaging_app.db import RecentlyAliveMixin
from messaging_app.db.mysql.conversions import AWARE_UTC_CONVERSIONS, CONVERSIONS


class DatabaseOperations(operations.DatabaseOperations):
    def get_db_converters(self, expression):
        converters = super().get_db_converters(expression)
        if self.connection.datetimes_are_aware:
            converters = [c for c in converters if c != self.convert_datetimefield_value]
        return converters


class DatabaseWrapper(RecentlyAliveMixin, base.DatabaseWrapper):
    ops_class = DatabaseOperations

    @property
    def datetimes_are_aware(self) -> bool:
        """The driver returns aware UTC date-times (what Django's converter would make of them)."""
        return settings.USE_TZ and self.timezone == timezone.utc

    def get_connection_params(self):
        params = super().get_connection_params()
        if "conv" not in self.settings_dict["OPTIONS"]:
            params["conv"] = AWARE_UTC_CONVERSIONS if self.datetimes_are_aware else CONVERSIONS
        return params
