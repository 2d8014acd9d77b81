"""
Database backends: Django's MySQL/MariaDB and PostgreSQL backends, with the health check of a
persistent connection skipped when that connection answered moments ago.

With CONN_HEALTH_CHECKS Django pings a reused connection before the first query of every
request (one more round trip per request: on the inbox, a fifth of its statements). Like
HikariCP's `aliveBypassWindowMs`, a connection whose last request finished without a database
error less than DB_HEALTH_CHECK_BYPASS seconds ago (default 0.5) is trusted without a ping;
an idle one is still pinged. And none is trusted once any request of the process has met a
database error since that connection last answered: after an outage, every connection that
lived through it is pinged (and replaced) before use, whichever thread saw the outage.

What the window still allows: a server restarted within it, with no request of this process
in between to notice. That request's first query fails and is answered 503 like any database
outage (errors.py); Django finds the connection unusable at the end of that request and closes
it, and the next request connects afresh.
"""
import os
import time

HEALTH_CHECK_BYPASS = float(os.environ.get("DB_HEALTH_CHECK_BYPASS", "0.5"))
# When a request of this process last ended with a database error (any connection, any thread).
_failed_at = float("-inf")


class RecentlyAliveMixin:
    """For a DatabaseWrapper: no liveness ping for a connection that answered moments ago."""

    alive_at = float("-inf")

    def close_if_unusable_or_obsolete(self):
        # Called as each request starts and finishes. health_check_done is set by the request's
        # first cursor, so here it means: this connection ran statements, and none failed.
        global _failed_at
        if self.errors_occurred:
            _failed_at = time.monotonic()
        elif self.connection is not None and self.health_check_done:
            self.alive_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self.alive_at < HEALTH_CHECK_BYPASS
            and self.alive_at > _failed_at
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def close(self):
        self.alive_at = float("-inf")
        super().close()
