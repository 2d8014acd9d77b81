"""
How MySQLdb turns MariaDB/MySQL column values into Python values: Django's table, with
DATETIME and TIMESTAMP read by `datetime.fromisoformat` (C) instead of MySQLdb's parser (Python,
about a seventh of the inbox's CPU: twenty conversations carry a hundred times). Values that
fromisoformat refuses (zero dates) still go to MySQLdb's parser, so every result is the same.
Installed by settings (DATABASES OPTIONS "conv") when the database is MySQL/MariaDB.
"""
from datetime import datetime

from django.db.backends.mysql.base import django_conversions
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None


def datetime_or_none(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return DateTime_or_None(value)


CONVERSIONS = {**django_conversions, FIELD_TYPE.DATETIME: datetime_or_none, FIELD_TYPE.TIMESTAMP: datetime_or_none}
