"""
Request ids and one log line per request (RequestLogMiddleware): the id is taken from
X-Request-ID when it is a canonical UUID, else made, returned in that header and written on
every log line of the request (RequestIdFilter); the line has the method, the path (without
the query string, so no search terms or other values reach the logs), status and duration.
Bodies and headers are never logged, so neither are passwords or tokens.

Every log line the app writes goes through SafeLineFormatter (settings.LOGGING): control
characters coming from a request (a path with %0d%0a, an ESC sequence, a Unicode line
separator) are written as escapes, so a request can neither forge log lines nor drive the
terminal of whoever reads the log. Django escapes its own request warnings the same way
(CVE-2025-48432); this covers every logger that reaches our handler, whatever it logs.
"""
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone

import orjson

logger = logging.getLogger("messaging_app.requests")

# C0 controls, DEL, C1 controls (NEL, CSI...), and the Unicode line and paragraph separators:
# everything a terminal or a line-based log reader may act on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_control_characters(text: str, keep_newlines: bool = False) -> str:
    """`GET /\\r\\nFORGED`: one printable line for any text (keep_newlines for tracebacks)."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escape, text)


def _indented(text: str) -> str:
    return "\n".join(line if line[:1].isspace() else f"  {line}" for line in text.split("\n"))


class SafeLineFormatter(logging.Formatter):
    """
    A record's message is one physical line. A traceback keeps its line breaks, but each of its
    lines starts with a space: a line starting in column 0 always begins a record, even when an
    exception's message carries text from a request.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_control_characters(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return _indented(escape_control_characters(super().formatException(ei), keep_newlines=True))

    def formatStack(self, stack_info: str) -> str:
        return _indented(escape_control_characters(super().formatStack(stack_info), keep_newlines=True))


class JsonLineFormatter(logging.Formatter):
    """
    DJANGO_LOG_FORMAT=json: one JSON object per line for log shippers, with `timestamp` (UTC,
    ISO 8601, milliseconds), `level`, `logger`, `message`, `request_id` (null outside a request),
    the request line's `method`, `path`, `status` and `duration_ms` when it is one, and `exception`
    (the formatted traceback) when there is one. JSON escapes every control character, so one
    record stays one line whatever a request put in it.
    """

    REQUEST_FIELDS = ("method", "path", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for field in self.REQUEST_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


# The canonical spelling only: 8-4-4-4-12 lowercase hex digits. Any other spelling that
# uuid.UUID() would parse (braces, `urn:uuid:`, no hyphens, upper case) is replaced by a new id,
# so what is logged and echoed is always the one form.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The current request's id: a context variable, so each thread of the pool (and each task on
# an event loop) has its own.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (`%(request_id)s`; None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RequestLogMiddleware:
    """The request id (taken or made, returned in X-Request-ID) and the request's log line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        given = request.META.get("HTTP_X_REQUEST_ID")
        current = given if given is not None and _CANONICAL_UUID.fullmatch(given) else str(uuid.uuid4())
        token = request_id.set(current)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = current
            duration_ms = (time.perf_counter() - started) * 1000
            # The log formatter adds the request id and escapes control characters.
            logger.info("%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms, extra={
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
            })
            return response
        finally:
            request_id.reset(token)
