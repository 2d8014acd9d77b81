"""
HTTP under the ASGI server (uvicorn in production, daphne under `make run`), served by Django's
WSGI handler on a fixed pool of threads per process. WebSockets stay on the event loop
(Channels); only plain HTTP requests come here.

Why not Django's own ASGI handler: it runs every request's synchronous code (middleware, DRF,
the ORM) in a thread of its own, so a thread-local database connection is never reused (two new
MariaDB connections per request, with their SET statements) and every request pays for the
async/sync hops of its middleware. Measured side by side on one pinned CPU (docs/benchmarks.md,
"Serving"): a bare Django JSON view served by Django's ASGI handler under uvicorn ~660 req/s, by
gunicorn sync workers (WSGI) ~2,980, by a2wsgi's thread pool under uvicorn ~1,550, and by this
module under uvicorn ~3,180.

How: the event loop reads the request body (bounded by limits.limit_request_body), then makes
one hop into the pool, where Django's WSGI handler runs the request to its full response; one
hop back, and the loop writes it. Streaming responses (static files) are read in the pool, about
64 KiB per hop. Each pool thread keeps its own database connection across requests (CONN_MAX_AGE,
checked before reuse by CONN_HEALTH_CHECKS): the pool is the connection pool.

Bounds, so a database that stops answering (frozen, partitioned) never holds a client or a
probe:
- HTTP_THREADS (default 4): requests in progress per process; the rest wait on the loop.
- HTTP_REQUEST_TIMEOUT (seconds, default 10): a request without a response by then is answered
  503 (`service_unavailable`, Retry-After). One still waiting for a thread is dropped and never
  runs; one already running finishes in its thread, and its late response is discarded (so a
  send may be stored though its client saw 503: retrying it with its `client_id` is safe).
- /healthz is answered on the event loop (no thread, no I/O); /readyz runs on a thread of its
  own with its own deadline (READYZ_TIMEOUT, 3 s): probes that arrive during a check share its
  answer, and while a check is stuck past the deadline every probe is answered 503 at once.
"""
import asyncio
import io
import json
import logging
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

from messaging_app import metrics
from messaging_app.errors import error_body
from messaging_app.limits import BODY_TOO_LARGE

logger = logging.getLogger(__name__)

HTTP_THREADS = int(os.environ.get("HTTP_THREADS", "4"))
HTTP_REQUEST_TIMEOUT = float(os.environ.get("HTTP_REQUEST_TIMEOUT", "10"))
READYZ_TIMEOUT = float(os.environ.get("READYZ_TIMEOUT", "3"))
RETRY_AFTER = "5"
# A streaming response (a static file: Django reads them 4 KiB at a time) crosses from the pool to
# the loop in pieces of about this size, not one hop per chunk.
STREAM_BYTES = 64 * 1024

# The headers of every API answer (security_headers.py) on the answers made here.
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
         (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


def environ_from_scope(scope: dict, body: bytes) -> dict:
    """The WSGI environ (PEP 3333) of an ASGI HTTP request whose whole body is `body`."""
    root = scope.get("root_path", "")
    path = scope["path"]
    if root and path.startswith(root):
        path = path[len(root):]
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        # Always the length of the body read (a chunked request announces none).
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_LENGTH":
            continue
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class Response:
    """What the WSGI application answered: status, headers, and its body or a chunk iterator."""

    __slots__ = ("status", "headers", "body", "chunks", "result")

    def __init__(self) -> None:
        self.status, self.headers, self.body, self.chunks, self.result = 500, [], b"", None, None

    def start(self, status: str, headers: list, exc_info=None) -> None:
        self.status = int(status.split(" ", 1)[0])
        # Stripped as Django's ASGI handler does: its WSGI handler writes each Set-Cookie value with
        # a leading space (`cookie.output(header="")`), which h11 (uvicorn) refuses as illegal.
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1").strip()) for name, value in headers]

    def close(self) -> None:
        """Ends the request in Django (request_finished: the connection goes back to its thread)."""
        if self.result is not None and hasattr(self.result, "close"):
            self.result.close()
        self.result = None


class WSGIThreadPool:
    """An ASGI application serving HTTP through `wsgi_app` on HTTP_THREADS threads."""

    def __init__(self, wsgi_app, threads: int = HTTP_THREADS, timeout: float = HTTP_REQUEST_TIMEOUT,
                 readyz_timeout: float = READYZ_TIMEOUT) -> None:
        self.app = wsgi_app
        self.threads = threads
        self.timeout = timeout
        self.readyz_timeout = readyz_timeout
        self._pool = None
        self._probe = None
        self._probe_running = None
        self._probe_started = 0.0

    def _executors(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        # Made in the serving process (gunicorn forks its workers after importing the app).
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="http")
            self._probe = ThreadPoolExecutor(1, thread_name_prefix="readyz")
        return self._pool, self._probe

    def _run(self, environ: dict) -> Response:
        """In a pool thread: the whole request, up to its body or its chunk iterator."""
        response = Response()
        response.result = result = self.app(environ, response.start)
        if getattr(result, "streaming", False):
            response.chunks = iter(result)
            return response
        try:
            response.body = b"".join(result)
        finally:
            response.close()
        return response

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"WSGIThreadPool serves HTTP only, not {scope['type']!r}")
        loop = asyncio.get_running_loop()
        if scope["path"] == "/healthz":
            return await self._answer(send, 200, {"status": "ok"})
        body = await read_body(receive)
        if body is None:
            return  # the client went away before its body was complete
        environ = environ_from_scope(scope, body)
        if scope.get(BODY_TOO_LARGE):
            environ[BODY_TOO_LARGE] = True
        pool, probe = self._executors()
        if scope["path"] == "/readyz":
            return await self._readyz(loop, probe, environ, send)
        future = loop.run_in_executor(pool, self._run, environ)
        try:
            response = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()  # never runs if it still waits for a thread
            future.add_done_callback(_discard)
            metrics.HTTP_TIMEOUTS.inc()
            logger.warning("%s %s: no response within %ss (HTTP_REQUEST_TIMEOUT), answered 503",
                           scope["method"], scope["path"], self.timeout)
            return await self._answer(send, 503, error_body(
                "server_error", "service_unavailable",
                "The service is temporarily unavailable. Try again shortly."), retry_after=True)
        await self._send(loop, pool, response, send)

    async def _readyz(self, loop, probe, environ: dict, send) -> None:
        """
        One check at a time: probes that arrive while it runs share its answer. A check still running
        after READYZ_TIMEOUT is stuck: until it ends, every probe is answered 503 at once.
        """
        check = self._probe_running
        if check is None or check.done():
            check = self._probe_running = loop.run_in_executor(probe, self._run, environ)
            self._probe_started = loop.time()
        remaining = self.readyz_timeout - (loop.time() - self._probe_started)
        if remaining > 0:
            try:
                response = await asyncio.wait_for(asyncio.shield(check), remaining)
                return await self._send(loop, probe, response, send)
            except asyncio.TimeoutError:
                pass
        await self._answer(send, 503, {"status": "unavailable", "checks": {"database": False},
                                       "detail": "The readiness check did not finish in time."})

    async def _send(self, loop, pool, response: Response, send) -> None:
        await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
        if response.chunks is None:
            await send({"type": "http.response.body", "body": response.body})
            return
        try:
            while (chunk := await loop.run_in_executor(pool, _read_up_to, response.chunks, STREAM_BYTES)) is not None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await loop.run_in_executor(pool, response.close)

    @staticmethod
    async def _answer(send, status: int, payload: dict, retry_after: bool = False) -> None:
        headers = [*_JSON, (b"x-request-id", str(uuid.uuid4()).encode())]
        if retry_after:
            headers.append((b"retry-after", RETRY_AFTER.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _read_up_to(chunks, size: int) -> bytes | None:
    """The next chunks of a streaming response, joined up to about `size` bytes; None at its end."""
    parts, length = [], 0
    for chunk in chunks:
        parts.append(chunk)
        length += len(chunk)
        if length >= size:
            break
    return b"".join(parts) if parts else None


def _discard(future) -> None:
    """A response nobody waits for any more: end its request in Django all the same."""
    if future.cancelled() or future.exception() is not None:
        return
    future.result().close()


async def read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
