"""
daphne's `runserver` (HTTP and WebSockets), except that a port it cannot listen on ends the
command with one line and exit status 1.

daphne logs "Listen failure: ... Address already in use" and returns from its server loop,
but under the autoreloader that loop runs in a thread, so the process went on watching files
without serving. Like Django's own runserver, exit the whole process when the bind fails
(`os._exit`: `sys.exit` would only end the thread).
"""
import errno
import os
import sys

from daphne.management.commands.runserver import Command as DaphneRunserverCommand
from daphne.server import Server


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


class FailFastServer(Server):
    def listen_error(self, failure):
        sys.stdout.flush()
        sys.stderr.write(listen_error_message(failure.value) + "\n")
        sys.stderr.flush()
        os._exit(1)


class Command(DaphneRunserverCommand):
    server_cls = FailFastServer
