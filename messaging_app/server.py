"""
The production server's worker (gunicorn.conf.py): uvicorn's, with a deadline for a request's
headers and our WebSocket message bound. uvicorn has no header deadline: a client sending a
header byte every few seconds (slowloris) held a connection, and a slot of the worker's, for as
long as it liked, and `make serve`, `docker run -p` and compose expose the server with no proxy
in front.

GUNICORN_HEADER_TIMEOUT (seconds, default 10): time a connection has, from when it opens or its
previous response ends, to send a complete request line and headers; then it is closed. Bodies
and WebSockets are not affected (a slow body is the proxy's to bound: README "Running in production").
"""
import os

import uvicorn_worker
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

HEADER_TIMEOUT = float(os.environ.get("GUNICORN_HEADER_TIMEOUT", "10"))
# Same value as settings.WS_MAX_MESSAGE_BYTES (this module is loaded before Django's settings;
# a test checks they agree). uvicorn accepts WebSocket messages up to 16 MiB by default; ours are
# a few hundred bytes: 1009 past 64 KiB.
WS_MAX_MESSAGE_BYTES = 65536


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """
    uvicorn's HTTP protocol on httptools (its C parser; h11's pure-Python one cost about a tenth
    of the CPU of a small API request), with the header deadline: armed when the connection opens
    and when a response ends, disarmed when a request's headers are complete.
    """

    _header_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # its headers are in already: it starts now
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.logger.debug("Closed a connection that did not send its request headers within %ss.", HEADER_TIMEOUT)
            self.transport.close()


class StalledClientWebSocketProtocol(WebSocketsSansIOProtocol):
    """
    uvicorn's WebSocket protocol (websockets' sans-I/O one), able to end a connection whose client
    stopped reading. uvicorn waits for room in the write buffer before it handles any message of
    the application, a close included, and its timeouts call transport.close(), which waits for the
    buffer to drain: a socket the application closed because its client stopped reading
    (chats/consumers.py, 4408) stayed open, holding its buffers, until TCP gave up. Here a close
    while the buffer is full is queued behind it at once, and the connection is aborted
    close_timeout (10 s) later if it has not ended by then; a keepalive timeout aborts likewise.
    """

    async def send(self, message) -> None:
        if message["type"] == "websocket.close" and not self.writable.is_set() and self._open():
            code, reason = message.get("code", 1000), message.get("reason", "") or ""
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
            return
        await super().send(message)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if not self.writable.is_set():
            self.loop.call_later(self.close_timeout, self.transport.abort)

    def _open(self) -> bool:
        return (self.handshake_complete and not self.close_sent and not self.disconnected
                and self.initial_response is None)


class UvicornWorker(uvicorn_worker.UvicornWorker):
    CONFIG_KWARGS = {
        **uvicorn_worker.UvicornWorker.CONFIG_KWARGS,
        "http": HeaderDeadlineProtocol,
        "ws": StalledClientWebSocketProtocol,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
    }
