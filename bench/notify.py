"""
Notification latency and worker throughput (issue 16), a companion of `make bench` (not run by it):

    .venv/bin/python -m bench.notify [--messages 200] [--burst 250] [--owners 4]

Starts its own stack on this machine: a SQLite database in a temporary folder, one Celery worker
(`make worker`'s command, solo pool) on Redis database 11 with a queue of its own, and an HTTP
receiver (http.server in a thread) playing the webhook endpoints. Messages are sent in this process
through the services (message_send: the same transaction and after-commit scheduling as the API).

- latency: a message sent every 20 ms to a conversation whose other member has a webhook; per message,
  the time from the send's commit to its event arriving at the receiver (the worker's POST): p50/p99.
- throughput: `--owners` members of one conversation each with a webhook, `--burst` messages sent as
  fast as possible; deliveries per second from the first arrival to the last, and the total.

Each webhook is delivered in order by one worker at a time (notifications/services.py): a single
webhook's throughput is bounded by its round trips, several webhooks share the worker.
"""
import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.fanout import percentile

BROKER = "redis://127.0.0.1:6379/11"


class TimedReceiver:
    """Records (arrival time, frame) of every POST; answers 200."""

    def __init__(self):
        self.arrivals: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.time()
                with receiver.lock:
                    receiver.arrivals.append((now, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count()} of {n} deliveries arrived within {timeout} s")
            time.sleep(0.01)


def configure(folder: Path, queue: str) -> dict:
    from chats.tests.integration.servers import app_env, migrate

    env = app_env(
        database_url=f"sqlite:///{folder / 'db.sqlite3'}", secret_key="bench-notify-" + uuid.uuid4().hex * 2,
        CELERY_BROKER_URL=BROKER, CELERY_QUEUE=queue, WEBHOOKS_ALLOW_PRIVATE="1", WEBHOOKS_ALLOW_HTTP="1",
    )
    migrate(env)
    os.environ.update(env)
    import django

    django.setup()
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="sends for the latency run")
    parser.add_argument("--burst", type=int, default=250, help="sends for the throughput run")
    parser.add_argument("--owners", type=int, default=4, help="webhooks for the throughput run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    queue = f"wt_notify-bench-{uuid.uuid4().hex[:8]}"
    env = configure(folder, queue)

    from chats import services
    from chats.models import User
    from notifications import services as webhooks
    from notifications.tests.test_worker import Worker

    receiver = TimedReceiver()
    worker = Worker(env, folder / "worker.log").start()
    try:
        people = [User.objects.create_user(f"n{i}@bench.invalid", "x" * 20, first_name=f"N{i}", last_name="B")
                  for i in range(args.owners + 1)]
        sender, others = people[0], people[1:]

        # Latency: one recipient with a webhook, a send every 20 ms.
        pair, _ = services.conversation_create(creator=sender, participant_ids=[others[0].pk], message_bodies=[])
        webhooks.webhook_create(owner=others[0], url=receiver.url("latency"))
        sent_at = {}
        for n in range(args.messages):
            message, _ = services.message_send(conversation=pair, sender=sender, message_body=f"latency {n}")
            sent_at[str(message.pk)] = time.time()
            time.sleep(0.02)
        receiver.wait_for(args.messages, timeout=120)
        latencies = [
            (arrived - sent_at[frame["message"]["message_id"]]) * 1000
            for arrived, frame in receiver.arrivals if frame.get("type") == "message.created"
        ]

        # Throughput: every other member has a webhook; a burst of sends.
        group, _ = services.conversation_create(
            creator=sender, participant_ids=[p.pk for p in others], message_bodies=[]
        )
        for person in others[1:]:
            webhooks.webhook_create(owner=person, url=receiver.url(f"owner-{person.pk}"))
        before = receiver.count()
        # others[0]'s webhook also gets the group's events (conversation.created came first).
        expected = before + args.burst * args.owners + 1
        for n in range(args.burst):
            services.message_send(conversation=group, sender=sender, message_body=f"burst {n}")
        receiver.wait_for(expected, timeout=600)
        burst = [arrived for arrived, _ in receiver.arrivals[before:]]
        elapsed = max(burst) - min(burst)
    finally:
        worker.stop()
        receiver.server.shutdown()

    print(json.dumps({
        "latency_ms": {"n": len(latencies), "p50": round(percentile(latencies, 50), 1),
                       "p99": round(percentile(latencies, 99), 1), "mean": round(statistics.mean(latencies), 1)},
        "throughput": {"deliveries": len(burst), "webhooks": args.owners, "seconds": round(elapsed, 2),
                       "deliveries_per_second": round(len(burst) / elapsed, 1) if elapsed else None},
    }, indent=2), flush=True)


if __name__ == "__main__":
    main()
    # The broker client's threads (kombu, Celery's producer pool) would keep the process alive.
    os._exit(0)
