"""
messaging_app.db, our database backends.

The health-check bypass: a persistent connection that answered moments ago is not pinged before the
next request's first query; one idle past the window, or whose last request hit a database
error, still is. Run on Django's SQLite backend with the same mixin (the MySQL and PostgreSQL
wrappers are that mixin on their own backends; the outage integration tests run those).

MySQL/MariaDB date-times: made aware (UTC) by the driver, so the ORM's converter is left out; the
same values as Django's backend (the whole suite runs on MariaDB in CI).
"""
from datetime import datetime, timezone

import pytest
from django.db.backends.sqlite3 import base as sqlite_base
from django.db.utils import OperationalError

from django.db.models import DateTimeField
from django.db.models.expressions import Col

import messaging_app.db as db
from messaging_app.db.mysql import conversions
from messaging_app.db.mysql.base import DatabaseWrapper as MySQLWrapper
from messaging_app.db.postgresql.base import DatabaseWrapper as PostgreSQLWrapper


SQLITE_SETTINGS = {
    "NAME": ":memory:", "ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": None,
    "CONN_HEALTH_CHECKS": True, "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False, "OPTIONS": {},
    "TIME_ZONE": None, "USER": "", "PASSWORD": "", "HOST": "", "PORT": "", "TEST": {},
}


class Wrapper(db.RecentlyAliveMixin, sqlite_base.DatabaseWrapper):
    pings = 0

    def is_usable(self):
        self.pings += 1
        return super().is_usable()


@pytest.fixture
def conn(django_db_blocker):
    django_db_blocker.unblock()  # a connection of the test's own, outside Django's registry
    wrapper = Wrapper(dict(SQLITE_SETTINGS))
    yield wrapper
    wrapper.close()
    django_db_blocker.restore()


def request(conn, sql="SELECT 1"):
    """What Django does around a request: check as it starts, run statements, check as it ends."""
    conn.close_if_unusable_or_obsolete()
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close_if_unusable_or_obsolete()


def test_a_connection_that_just_answered_is_not_pinged(conn):
    request(conn)  # connects: a new connection is never pinged
    assert conn.pings == 0
    for _ in range(5):
        request(conn)
    assert conn.pings == 0


def test_an_idle_connection_is_pinged(conn, monkeypatch):
    request(conn)
    monkeypatch.setattr(db, "HEALTH_CHECK_BYPASS", 0.0)
    request(conn)
    assert conn.pings == 1
    request(conn)
    assert conn.pings == 2


def test_a_connection_whose_request_failed_is_checked_again(conn):
    request(conn)
    with pytest.raises(OperationalError):
        request(conn, "SELECT * FROM no_such_table")
    # Django checks it at the end of the failed request (errors_occurred) ...
    assert conn.pings == 1
    # ... and the bypass is not renewed by that failed request, nor refreshed by the check.
    before = conn.alive_at
    request(conn)
    assert conn.alive_at >= before
    assert conn.pings == 1


def test_a_closed_connection_forgets_it_answered(conn):
    request(conn)
    conn.close()
    assert conn.alive_at == float("-inf")


def test_production_backends_carry_the_bypass():
    assert issubclass(MySQLWrapper, db.RecentlyAliveMixin)
    assert issubclass(PostgreSQLWrapper, db.RecentlyAliveMixin)


MYSQL_SETTINGS = {
    "NAME": "unused", "ENGINE": "messaging_app.db.mysql", "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True,
    "AUTOCOMMIT": True, "ATOMIC_REQUESTS": False, "OPTIONS": {}, "TIME_ZONE": None, "USER": "root",
    "PASSWORD": "", "HOST": "127.0.0.1", "PORT": "", "TEST": {},
}


def test_mysql_date_times_arrive_aware_and_skip_the_orms_converter():
    wrapper = MySQLWrapper(dict(MYSQL_SETTINGS))  # never connects
    assert wrapper.datetimes_are_aware
    assert wrapper.get_connection_params()["conv"] is conversions.AWARE_UTC_CONVERSIONS
    column = Col("t", DateTimeField())
    assert wrapper.ops.convert_datetimefield_value not in wrapper.ops.get_db_converters(column)


def test_mysql_with_a_database_time_zone_keeps_djangos_converter():
    wrapper = MySQLWrapper({**MYSQL_SETTINGS, "TIME_ZONE": "Europe/Paris"})
    assert not wrapper.datetimes_are_aware
    assert wrapper.get_connection_params()["conv"] is conversions.CONVERSIONS
    assert wrapper.ops.convert_datetimefield_value in wrapper.ops.get_db_converters(Col("t", DateTimeField()))


def test_the_driver_parses_date_times_as_djangos_backend_would():
    assert conversions.utc_datetime_or_none("2026-12-07 15:42:08.855123") == datetime(
        2026, 12, 7, 15, 42, 8, 855123, tzinfo=timezone.utc)
    assert conversions.utc_datetime_or_none("2026-12-07 15:42:08").tzinfo is timezone.utc
    assert conversions.utc_datetime_or_none("0000-00-00 00:00:00") is None  # MySQL's zero date
    assert conversions.datetime_or_none("2026-12-07 15:42:08").tzinfo is None


def test_after_any_database_error_every_connection_is_pinged_again(django_db_blocker):
    """Another thread's connection met an error (an outage): this one, though it answered moments
    ago, is pinged before its next use."""
    django_db_blocker.unblock()
    quiet, failing = Wrapper(dict(SQLITE_SETTINGS)), Wrapper(dict(SQLITE_SETTINGS))
    try:
        request(quiet)
        request(failing)
        with pytest.raises(OperationalError):
            request(failing, "SELECT * FROM no_such_table")
        request(quiet)
        assert quiet.pings == 1
        request(quiet)  # it answered after the error: trusted again
        assert quiet.pings == 1
    finally:
        quiet.close()
        failing.close()
        django_db_blocker.restore()
