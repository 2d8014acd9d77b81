"""
Read replicas (DATABASE_REPLICA_URLS; docs/observability.md "Read replicas"): reads of safe HTTP
requests (GET, HEAD, OPTIONS) go to a replica, everything else to the primary ("default").

What stays on the primary, so nobody reads a stale row where it matters:
- every write, and every read of a request that is not GET/HEAD/OPTIONS, and any read after the
  request's first write (db_for_write pins the rest of the request);
- every read inside a transaction on the primary (select_for_update, the services' atomic blocks);
- read-your-writes: for READ_YOUR_WRITES_SECONDS after a client wrote, all its reads. The client
  is known before authentication from its credentials (the JWT's user_id claim, unverified: a
  forged one only sends its reads to the primary; else a digest of the Authorization header or
  the session cookie), marked in the shared cache (Redis) so every pod sees it;
- everything outside an HTTP request (WebSockets, Celery tasks, management commands): their reads
  follow events just written, and they are a small share of the reads.

A replica takes reads only while it answers and lags at most REPLICA_MAX_LAG_SECONDS, measured by a
thread of each process every REPLICA_CHECK_SECONDS (MariaDB/MySQL: Seconds_Behind_Master, NULL when
replication stopped; PostgreSQL: the age of the last replayed transaction, 0 when it has replayed
all it received). Otherwise reads fall back to the primary, /readyz lists the replica as not
usable (readiness itself does not fail: the primary serves), and the metrics show it.
"""
import base64
import hashlib
import logging
import random
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connections

from messaging_app import metrics

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WROTE_KEY = "ryw:{}"


@dataclass
class Routing:
    """The current request's routing: may its reads use a replica, and did it write."""

    replica_reads: bool
    wrote: bool = False


_routing: ContextVar[Routing | None] = ContextVar("replica_routing", default=None)


@dataclass
class ReplicaState:
    usable: bool = False  # unknown until the first check
    lag_seconds: float | None = None
    error: str | None = None


class ReplicaHealth:
    """Each replica's state in this process, refreshed by one thread every REPLICA_CHECK_SECONDS."""

    def __init__(self, aliases: list[str]) -> None:
        self.aliases = aliases
        self.states = {alias: ReplicaState() for alias in aliases}
        self._thread = None
        self._lock = threading.Lock()

    def usable(self) -> list[str]:
        return [alias for alias, state in self.states.items() if state.usable]

    def start(self) -> None:
        """The checking thread of this process (started after gunicorn forked the worker)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="replica-check", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self.check()
            time.sleep(settings.REPLICA_CHECK_SECONDS)

    def check(self) -> None:
        """Measures every replica now (on this thread's connections)."""
        for alias in self.aliases:
            try:
                lag = replication_lag(alias)
                error = None if lag is not None else "replication is not running"
            except Exception as exc:  # any driver error: the replica is not usable
                lag, error = None, str(exc) or type(exc).__name__
                connections[alias].close()
            usable = lag is not None and lag <= settings.REPLICA_MAX_LAG_SECONDS
            if error is None and not usable:
                error = f"lagging {lag:.1f}s behind (REPLICA_MAX_LAG_SECONDS={settings.REPLICA_MAX_LAG_SECONDS:g})"
            previous = self.states[alias]
            if previous.usable != usable:
                logger.log(logging.INFO if usable else logging.WARNING, "replica %s: %s", alias,
                           "takes reads" if usable else f"reads fall back to the primary ({error})")
            self.states[alias] = ReplicaState(usable, lag, None if usable else error)
            metrics.REPLICA_USABLE.labels(alias).set(1 if usable else 0)
            metrics.REPLICA_LAG.labels(alias).set(-1 if lag is None else lag)

    def report(self) -> dict:
        """For /readyz: {alias: {"usable", "lag_seconds", "detail"}}."""
        return {
            alias: {"usable": state.usable, "lag_seconds": state.lag_seconds, "detail": state.error}
            for alias, state in self.states.items()
        }


def replication_lag(alias: str) -> float | None:
    """Seconds the replica is behind its primary; None when replication is not running."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            if row is None:
                return 0.0  # not replicating from anything: nothing to lag behind
            columns = [column[0] for column in cursor.description]
            behind = dict(zip(columns, row))["Seconds_Behind_Master"]
            return None if behind is None else float(behind)
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
                " WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
                " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
            )
            return float(cursor.fetchone()[0])
        cursor.execute("SELECT 1")
        return 0.0


HEALTH = ReplicaHealth(list(settings.DATABASE_REPLICAS))


class ReplicaRouter:
    """settings.DATABASE_ROUTERS when replicas are configured."""

    def db_for_read(self, model, **hints):
        routing = _routing.get()
        if routing is None or not routing.replica_reads or connections["default"].in_atomic_block:
            return "default"
        usable = HEALTH.usable()
        return random.choice(usable) if usable else "default"

    def db_for_write(self, model, **hints):
        routing = _routing.get()
        if routing is not None:
            routing.replica_reads = False  # the rest of this request reads what it wrote
            routing.wrote = True
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the replicas hold the primary's rows

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"  # the replicas get the schema by replication


def client_key(request) -> str | None:
    """Who is asking, before authentication: for read-your-writes only, never for access."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.startswith("Bearer "):
        try:
            payload = header[7:].split(".")[1]
            claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return f"user:{claims['user_id']}"
        except (IndexError, ValueError, KeyError, TypeError):
            pass
    credential = header or request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")
    return f"credential:{hashlib.sha256(credential.encode()).hexdigest()[:32]}" if credential else None


class ReplicaRoutingMiddleware:
    """Decides, per request, whether its reads may use a replica (settings.MIDDLEWARE with replicas)."""

    def __init__(self, get_response):
        self.get_response = get_response
        HEALTH.start()

    def __call__(self, request):
        key = client_key(request)
        replica_reads = request.method in SAFE_METHODS and not (key and cache.get(WROTE_KEY.format(key)))
        routing = Routing(replica_reads)
        token = _routing.set(routing)
        try:
            response = self.get_response(request)
        finally:
            _routing.reset(token)
        if routing.wrote or request.method not in SAFE_METHODS:
            keys = {key} if key else set()
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                keys.add(f"user:{user.pk}")
            if keys:
                cache.set_many({WROTE_KEY.format(k): 1 for k in keys}, settings.READ_YOUR_WRITES_SECONDS)
        return response
