"""
One log line per request: method, path (without the query string, so no search terms or
other values reach the logs), status and duration; the log format adds the request id
that django-guid takes from X-Request-ID (only a canonical UUID, see CanonicalRequestIdMiddleware)
or makes, and returns in that header.
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


# The canonical spelling only: 8-4-4-4-12 lowercase hex digits.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class CanonicalRequestIdMiddleware:
    """
    Runs before django-guid: an X-Request-ID that is not a canonical UUID is dropped, so
    django-guid makes a new id. (django-guid accepts whatever uuid.UUID() parses: braces,
    `urn:uuid:`, no hyphens, upper case; each spelling was echoed and logged as sent.)
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get("HTTP_X_REQUEST_ID")
        if given is not None and not _CANONICAL_UUID.fullmatch(given):
            del request.META["HTTP_X_REQUEST_ID"]
        return self.get_response(request)


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        # The log formatter adds the request id ([%(correlation_id)s]) and escapes control characters.
        duration_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms)
        return response
