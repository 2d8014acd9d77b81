"""
/healthz (the process is up: no I/O) and /readyz (the database and, if configured,
Redis answer; 503 otherwise). Answered by the first middleware, before host
validation, HTTPS redirects and sessions, so orchestrator probes that use a pod IP
as Host and plain HTTP work, and the checks stay cheap. Not part of the API schema.
"""
import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)


def _database_ready() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readyz: database unreachable: %s", exc)
        return False


def _redis_ready() -> bool:
    if not settings.REDIS_URL:
        return True
    import redis

    from messaging_app.redis_clients import sync_client

    # With Sentinel: the primary the sentinels name now (none while they fail over).
    client = sync_client(socket_connect_timeout=1, socket_timeout=1, retry=None)  # answer within the probe's timeout
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        logger.warning("readyz: redis unreachable: %s", exc)
        return False
    finally:
        client.close()


def readiness() -> tuple[bool, dict]:
    checks = {"database": _database_ready(), "redis": _redis_ready() if settings.REDIS_URL else None}
    ready = all(ok for ok in checks.values() if ok is not None)
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    if settings.DATABASE_REPLICAS:
        # Informational: a replica that lags or is down only sends reads back to the primary.
        from messaging_app.db.replicas import HEALTH

        body["replicas"] = HEALTH.report()
    return ready, body


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            ready, body = readiness()
            return JsonResponse(body, status=200 if ready else 503)
        return self.get_response(request)
