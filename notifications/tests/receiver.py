"""A small real HTTP receiver for webhook tests (http.server in a thread, or its own process)."""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """
    Records each POST (headers, body). `script` is what to answer next, one item per request:
    an HTTP status, or ("sleep", seconds) to answer 200 only after that long (a timeout);
    once it is empty, 200.
    """

    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.script: list = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    action = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "answered": action})
                if isinstance(action, tuple):
                    time.sleep(action[1])
                    action = 200
                self.send_response(action)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def frames(self) -> list[dict]:
        with self.lock:
            return [json.loads(request["body"]) for request in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # A receiver in its own process (integration tests): prints each body as a line on stdout.
    # argv: port, then the script (statuses; "sleep:N" for a slow answer).
    receiver = Receiver(int(sys.argv[1]))
    receiver.script = [("sleep", float(a[6:])) if a.startswith("sleep:") else int(a) for a in sys.argv[2:]]

    class Printed(list):
        def append(self, item):
            super().append(item)
            print(item["body"].decode(), item["answered"], flush=True)

    receiver.requests = Printed()
    receiver.server.serve_forever()
