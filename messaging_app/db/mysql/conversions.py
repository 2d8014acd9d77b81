"""
How MySQLdb turns MariaDB/MySQL column values into Python values: Django's table, with DATETIME
and TIMESTAMP read by `datetime.fromisoformat` (C) instead of MySQLdb's parser (Python, about a
seventh of the inbox's CPU: twenty conversations carry a hundred of them).

`AWARE_UTC_CONVERSIONS` also makes them aware (UTC) right there, which is what Django's own
converter (`convert_datetimefield_value`, a Python call per value) does later when the
connection's time zone is UTC; the backend (base.py) then leaves that converter out. Values
that fromisoformat refuses (zero dates) still go to MySQLdb's parser, so every result is the
same as Django's.
"""
from datetime import datetime, timezone

from django.db.backends.mysql.base import django_conversions
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.times import DateTime_or_None


def datetime_or_none(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return DateTime_or_None(value)


def utc_datetime_or_none(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    except ValueError:
        parsed = DateTime_or_None(value)
        return parsed.replace(tzinfo=timezone.utc) if isinstance(parsed, datetime) else parsed


CONVERSIONS = {**django_conversions, FIELD_TYPE.DATETIME: datetime_or_none, FIELD_TYPE.TIMESTAMP: datetime_or_none}
AWARE_UTC_CONVERSIONS = {
    **django_conversions, FIELD_TYPE.DATETIME: utc_datetime_or_none, FIELD_TYPE.TIMESTAMP: utc_datetime_or_none,
}
