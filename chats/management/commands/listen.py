"""
A small command-line client of the WebSocket protocol: logs in, connects to /ws/
and prints every event as it arrives, one JSON object a line on stdout (what it is doing goes
to stderr). Ctrl-C stops it. Reconnects with backoff, and resumes from the last `event_id` it
printed (the socket's `resume` frame), so nothing is missed or printed twice across reconnects.
`--since N` starts from event N of the user's stream instead of from now.

    python manage.py listen --email alice@example.com --password ... [--server http://127.0.0.1:$PORT]
"""
import getpass
import json
import os
import random
import time
import urllib.error
import urllib.request

from django.core.management.base import BaseCommand, CommandError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class Command(BaseCommand):
    help = "Print live events for a user (WebSocket client example)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--server",
            default=f"http://127.0.0.1:{os.environ.get('PORT') or 8000}",
            help="Base URL of the API server (default: port $PORT, else 8000).",
        )
        parser.add_argument("--email", help="Log in with this email (asks for the password if not given).")
        parser.add_argument("--password")
        parser.add_argument(
            "--token",
            help="An access JWT, or a personal access token with the read scope, instead of email and password.",
        )
        parser.add_argument("--once", action="store_true", help="Exit when the connection closes (no reconnect).")
        parser.add_argument("--since", type=int, help="Replay the events after this event_id first.")

    def handle(self, *args, **options):
        try:
            self._run(**options)
        except KeyboardInterrupt:
            # Ctrl-C is how this command ends: one line, exit status 0, no traceback.
            self.stderr.write("\nStopped.")

    def _run(self, *, server, email, password, token, once, since=None, **options):
        server = server.rstrip("/")
        if not token:
            if not email:
                raise CommandError("Give --email (and --password) or --token.")
            token = self._login(server, email, password or getpass.getpass("Password: "))
        ws_url = server.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws/"
        delay = 1.0
        self.last_event_id = since  # None: from now on
        while True:
            try:
                self._listen(ws_url, token, who=email)
                delay = 1.0
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                self.stderr.write(f"connection closed ({code})")
                if code == 4401:
                    raise CommandError("Not authenticated: the token is invalid, expired or revoked.")
                if code == 4403:
                    raise CommandError("This personal access token lacks the read scope a socket needs.")
            except OSError as exc:
                self.stderr.write(f"cannot connect: {exc}")
            if once:
                return
            # Reconnect with jittered exponential backoff; then resume from the last event printed.
            wait = delay + random.random()
            self.stderr.write(f"reconnecting in {wait:.0f} s (Ctrl-C to stop)")
            time.sleep(wait)
            delay = min(delay * 2, 30.0)

    def _login(self, server: str, email: str, password: str) -> str:
        request = urllib.request.Request(
            f"{server}/api/token/",
            data=json.dumps({"email": email, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)["access"]
        except urllib.error.HTTPError as exc:
            raise CommandError(f"Login failed ({exc.code}): {exc.read().decode(errors='replace')}")
        except urllib.error.URLError as exc:
            raise CommandError(f"Cannot reach {server}: {exc.reason}. Is the server running (make run; PORT=...)?")

    def _listen(self, ws_url: str, token: str, who: str | None) -> None:
        with connect(ws_url, open_timeout=10) as socket:
            socket.send(json.dumps({"type": "auth", "token": token}))
            for frame in socket:
                event = json.loads(frame)
                kind = event.get("type")
                if kind == "auth.ok":
                    # A protocol frame, not an event: say what we are doing instead.
                    as_whom = who or f"user {event.get('user_id')}"
                    self.stderr.write(f"Connected to {ws_url} as {as_whom}; waiting for events (Ctrl-C to stop)")
                    if self.last_event_id is None:
                        self.last_event_id = event.get("last_event_id", 0)
                    else:
                        self.stderr.write(f"Resuming after event {self.last_event_id}")
                        socket.send(json.dumps({"type": "resume", "since": self.last_event_id}))
                    self.stderr.flush()
                    continue
                if kind == "resumed":
                    continue
                if kind == "error" and event.get("code") == "cursor_expired":
                    self.stderr.write("Events were missed and are no longer kept: reload the state over REST.")
                    self.last_event_id = event.get("last_event_id", self.last_event_id)
                self.stdout.write(json.dumps(event, ensure_ascii=False))
                self.stdout.flush()
                if isinstance(event.get("event_id"), int):
                    self.last_event_id = event["event_id"]
