"""
daphne's `runserver` (HTTP and WebSockets), except that a port it cannot listen on ends the
command with one line and exit status 1, and that request bodies are counted as they arrive.

daphne logs "Listen failure: ... Address already in use" and returns from its server loop,
but under the autoreloader that loop runs in a thread, so the process went on watching files
without serving. Like Django's own runserver, exit the whole process when the bind fails
(`os._exit`: `sys.exit` would only end the thread).

daphne reads a whole request body (into a temporary file past 100 KB) before the application
sees any of it, so the application's own limit (messaging_app/limits.py) came too late for a
chunked body of any size: here each chunk is counted as it arrives, and past
MAX_REQUEST_BODY_BYTES the server answers 413 and closes the connection, reading no further.
"""
import errno
import io
import json
import os
import sys

from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.management.commands.runserver import Command as DaphneRunserverCommand
from daphne.server import Server
from django.conf import settings

from messaging_app.errors import error_body
from messaging_app.limits import body_limit, too_large_detail


def listen_error_message(error) -> str:
    """One line for a twisted CannotListenError (it carries interface, port and socketError)."""
    host, port = getattr(error, "interface", "") or "0.0.0.0", getattr(error, "port", "?")
    socket_error = getattr(error, "socketError", None)
    code = getattr(socket_error, "errno", None)
    if code == errno.EADDRINUSE:
        suggestion = f"PORT={port + 1} make run" if isinstance(port, int) else "PORT=... make run"
        return (
            f"Error: port {port} on {host} is already in use (another server is running there?). "
            f"Stop it, or serve on another port: {suggestion}"
        )
    if code == errno.EACCES:
        return f"Error: no permission to listen on port {port}; use a port above 1023 (PORT=... make run)."
    return f"Error: cannot listen on {host}:{port}: {socket_error or error}"


class BoundedWebRequest(WebRequest):
    received = 0
    refused = False
    limit = None

    def gotLength(self, length):
        # The request line is on the channel until the whole request has arrived.
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0].decode("latin-1")
        method = getattr(self.channel, "_command", b"").decode("latin-1")
        self.limit = body_limit(path, method)
        self.content = io.BytesIO()  # at most the limit (an upload's: ATTACHMENTS_MAX_BYTES): no temporary file
        if length is not None and length > self.limit:
            self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
            self.refuse_too_large()

    def handleContentChunk(self, data):
        if self.refused:
            return
        self.received += len(data)
        if self.received > (self.limit or settings.MAX_REQUEST_BODY_BYTES):
            self.refuse_too_large()
        else:
            super().handleContentChunk(data)

    def refuse_too_large(self):
        """413 in the API's error shape, then close: the rest of the body is never read."""
        self.refused = True
        body = json.dumps(error_body("client_error", "request_too_large", too_large_detail(self.limit))).encode()
        head = (
            "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        self.channel.transport.write(head.encode() + body)
        self.channel.loseConnection()


class BoundedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedWebRequest
        return protocol


class FailFastServer(Server):
    @property
    def http_factory(self):
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory):
        # Server.run() builds daphne's HTTPFactory and listens with it at once: swap in ours here.
        self._http_factory = BoundedHTTPFactory(self) if type(factory) is HTTPFactory else factory

    def listen_error(self, failure):
        sys.stdout.flush()
        sys.stderr.write(listen_error_message(failure.value) + "\n")
        sys.stderr.flush()
        os._exit(1)


class Command(DaphneRunserverCommand):
    server_cls = FailFastServer
