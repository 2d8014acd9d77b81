"""
One log line per request: method, path (without the query string, so no search terms or
other values reach the logs), status and duration; the log format adds the request id
that django-guid takes from X-Request-ID (when it is a valid UUID) or makes, and returns
in that header.
Bodies and headers are never logged, so neither are passwords or tokens.
"""
import logging
import time

logger = logging.getLogger("messaging_app.requests")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        # The log formatter adds the request id ([%(correlation_id)s]).
        duration_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms)
        return response
