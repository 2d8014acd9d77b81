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

import h11
import uvicorn_worker
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = float(os.environ.get("GUNICORN_HEADER_TIMEOUT", "10"))
# Same value as settings.WS_MAX_MESSAGE_BYTES (this module is loaded before Django's settings;
# a test checks they agree). uvicorn accepts WebSocket messages up to 16 MiB by default; ours are
# a few hundred bytes: 1009 past 64 KiB.
WS_MAX_MESSAGE_BYTES = 65536


class HeaderDeadlineH11Protocol(H11Protocol):
    _header_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # h11 leaves IDLE once a request's headers are complete (or the connection upgrades).
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Keep-alive: the next request's headers get the same deadline (a pipelined one may be in already).
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
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
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.debug("Closed a connection that did not send its request headers within %ss.", HEADER_TIMEOUT)
            self.transport.close()


class UvicornWorker(uvicorn_worker.UvicornWorker):
    CONFIG_KWARGS = {
        **uvicorn_worker.UvicornWorker.CONFIG_KWARGS,
        "http": HeaderDeadlineH11Protocol,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
    }
