"""
Prometheus metrics of the app (docs/observability.md lists them). Recorded in every process that
serves requests or sockets; scraped from gunicorn's master on METRICS_PORT (metrics_server.py),
never through the API's port, so the ingress cannot reach them.

Several worker processes per pod: under gunicorn (gunicorn.conf.py) PROMETHEUS_MULTIPROC_DIR names
a directory where each process keeps its values in memory-mapped files, and the master sums them
at scrape time (prometheus_client's multiprocess mode). Without it (tests, `make run`) the values
stay in this process's default registry.

Labels stay bounded: a request is labelled by the name of the URL pattern it resolved to
(`conversation-messages-list`), never by its path (ids), and "unmatched" when nothing resolved.

Cost per request: a perf_counter pair and four value updates (a counter, three histograms; the
overhead measured on /api/ping/ is in docs/observability.md); each SQL query adds a perf_counter
pair and a context-variable lookup.
"""
import os
import time
from contextvars import ContextVar

from django.db import connections
from django.db.backends.signals import connection_created

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Any process of the pod may start first (migrate, a management command): the directory exists.
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import Counter, Gauge, Histogram  # noqa: E402

# Seconds: from 2.5 ms (a cached read) to 10 s (HTTP_REQUEST_TIMEOUT answers 503).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUERY_COUNT_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
DB_TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_REQUESTS = Counter(
    "messaging_http_requests", "HTTP requests answered by Django, by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "messaging_http_request_duration_seconds", "Time Django took to answer an HTTP request, by route.",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)
HTTP_TIMEOUTS = Counter(
    "messaging_http_request_timeouts",
    "HTTP requests answered 503 because no response came within HTTP_REQUEST_TIMEOUT (wsgi_pool.py).",
)
DB_QUERIES = Histogram(
    "messaging_db_queries_per_request", "SQL queries run by one HTTP request, by route.",
    ["route"], buckets=QUERY_COUNT_BUCKETS,
)
DB_TIME = Histogram(
    "messaging_db_time_per_request_seconds", "Time one HTTP request spent in SQL queries, by route.",
    ["route"], buckets=DB_TIME_BUCKETS,
)
THROTTLED = Counter("messaging_throttled_requests", "Requests refused by a rate limit (429), by scope.", ["scope"])
# livesum: the open sockets of the processes alive now (a dead worker's are gone).
WEBSOCKETS_OPEN = Gauge("messaging_websockets_open", "Authenticated WebSockets open.", multiprocess_mode="livesum")
WS_EVENTS_SENT = Counter("messaging_ws_events_sent", "Stream events sent over WebSockets (live or caught up).")
WS_EVENTS_DROPPED = Counter(
    "messaging_ws_events_dropped",
    "Live items not queued for a socket that stopped reading (its client resumes from the stream).",
)
WS_SLOW_CLOSED = Counter(
    "messaging_ws_slow_sockets_closed", "WebSockets closed with 4408 because they stopped reading.")
REPLICA_USABLE = Gauge(
    "messaging_db_replica_usable", "1 while a read replica takes reads, 0 while reads fall back to the primary.",
    ["replica"], multiprocess_mode="liveall",
)
# Background tasks (messaging_app/celery.py records them where tasks run: the worker's processes,
# or the web's when tasks run in-process). Labelled by task name: the few tasks the code defines.
TASK_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
TASKS = Counter(
    "messaging_tasks", "Background tasks run, by task name and outcome (succeeded, failed, retried, other).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "messaging_task_duration_seconds", "Time one run of a background task took, by task name.",
    ["task"], buckets=TASK_DURATION_BUCKETS,
)
REPLICA_LAG = Gauge(
    "messaging_db_replica_lag_seconds", "Replication lag last measured on a read replica (-1: unreachable).",
    ["replica"], multiprocess_mode="livemax",
)

# [queries, seconds] of the current request (None outside one): each thread of the pool has its own.
_db_usage: ContextVar[list | None] = ContextVar("db_usage", default=None)


def _count_query(execute, sql, params, many, context):
    usage = _db_usage.get()
    if usage is None:
        return execute(sql, params, many, context)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        usage[0] += 1
        usage[1] += time.perf_counter() - started


def _instrument(wrapper) -> None:
    """Counts the queries of a connection (once per connection object of a thread)."""
    if not getattr(wrapper, "_metrics_instrumented", False):
        # First, not last: connection.execute_wrapper() blocks pop the last one when they end.
        wrapper.execute_wrappers.insert(0, _count_query)
        wrapper._metrics_instrumented = True


def _on_connection_created(sender, connection, **kwargs) -> None:
    _instrument(connection)


connection_created.connect(_on_connection_created, dispatch_uid="messaging_app.metrics")


# Any other method (a client may send any token) is counted as "other": labels stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else "unmatched"


class MetricsMiddleware:
    """Rate, latency, status and SQL queries/time of each request, labelled by its route."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for wrapper in connections.all(initialized_only=True):
            _instrument(wrapper)
        usage = [0, 0.0]
        token = _db_usage.set(usage)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            _db_usage.reset(token)
        elapsed = time.perf_counter() - started
        route = route_of(request)
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, method).observe(elapsed)
        DB_QUERIES.labels(route).observe(usage[0])
        DB_TIME.labels(route).observe(usage[1])
        return response
