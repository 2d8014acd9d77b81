"""
Refuses oversize request bodies (413) before anything reads or parses them.

Two layers, because a `Content-Length` header is optional: a chunked body announces no size.

- `limit_request_body` wraps the ASGI application (uvicorn in production, daphne under
  `make run`) and counts the bytes of the body as the server hands them over, before Django
  reads anything (Django would spool the whole body to a temporary file first). Past
  MAX_REQUEST_BODY_BYTES it reads no further: the request goes on to Django without its body,
  marked, and the middleware below answers 413, closing the connection.
- `BodySizeLimitMiddleware` answers that 413 (with the request log and every middleware's
  headers), and refuses a declared `Content-Length` over the limit, also under WSGI.

One route has a larger limit: an attachment upload (POST /api/attachments/) may carry
ATTACHMENTS_MAX_BYTES plus the multipart framing (`body_limit`); its file is then counted again
while it is parsed (attachments/uploads.py).

daphne reads a whole body before the application sees any of it; `make run`'s server counts
it as it arrives instead (messaging_app/devserver).
"""
import asyncio

from django.conf import settings

from messaging_app.errors import error_response

# Set in the ASGI scope (and, under wsgi_pool.py, the WSGI environ) of a request whose body
# passed the limit (its body is not read).
BODY_TOO_LARGE = "messaging_app.body_too_large"


UPLOAD_PATH = "/api/attachments/"


def body_limit(path: str, method: str) -> int:
    """The largest body a request to `path` may have: MAX_REQUEST_BODY_BYTES, more for an upload."""
    if method == "POST" and path == UPLOAD_PATH:
        from attachments.uploads import upload_body_limit

        return upload_body_limit()
    return settings.MAX_REQUEST_BODY_BYTES


def too_large_detail(limit: int | None = None) -> str:
    return f"The request body is larger than {limit or settings.MAX_REQUEST_BODY_BYTES} bytes."


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "client_error", "bad_request", "Invalid Content-Length header.")
        marked = request.META.get(BODY_TOO_LARGE) or getattr(request, "scope", {}).get(BODY_TOO_LARGE)
        limit = body_limit(request.path_info, request.method)
        if length > limit or marked:
            return error_response(413, "client_error", "request_too_large", too_large_detail(limit))
        return self.get_response(request)


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the middleware answers 400
    return None


def limit_request_body(app):
    """ASGI middleware: HTTP bodies are read here, at most `body_limit` bytes of them."""

    async def application(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        limit = body_limit(scope.get("path", ""), scope.get("method", ""))
        declared = _declared_length(scope)
        too_large = declared is not None and declared > limit
        chunks, size = [], 0
        while not too_large:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = size > limit
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if too_large:
            scope = {**scope, BODY_TOO_LARGE: True}
            return await app(scope, _no_body(), _closing_connection(send))
        return await app(scope, _replay(b"".join(chunks), receive), send)

    return application


def _replay(body: bytes, receive):
    """The body read so far as one message, then the server's own messages (http.disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _no_body():
    """An empty body, then nothing: the rest of the oversize body stays unread."""
    pending = [{"type": "http.request", "body": b"", "more_body": False}]

    async def no_more():
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # Django cancels its disconnect listener once it has answered

    return no_more


def _closing_connection(send):
    """The unread rest of the body cannot be skipped on a kept-alive connection: close it."""

    async def closing(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return closing
