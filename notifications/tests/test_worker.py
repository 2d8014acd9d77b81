"""
The background worker for real (integration: `make test-integration`): a Celery worker process
started here, on Redis (the default broker) and on RabbitMQ, next to a real app server; webhooks
delivered by it to a real HTTP receiver, including after the worker is killed mid-delivery.

The app server and the workers share a SQLite file made for each test (no test database of
pytest-django is involved); each broker gets a queue of its own, so nothing else is consumed.
"""
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery

from chats.tests.integration.servers import (
    ROOT,
    Server,
    api,
    app_env,
    free_port,
    migrate,
    register,
    start_uvicorn,
    wait_until_answering,
)
from notifications import webhook_http
from notifications.tests.receiver import Receiver

pytestmark = pytest.mark.integration

REDIS_BROKER = "redis://127.0.0.1:6379/11"
REDIS_RESULTS = "redis://127.0.0.1:6379/12"
RABBITMQ_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


class Worker:
    """`celery worker` (what `make worker` runs), one process (solo pool) unless told, logging to a file."""

    def __init__(self, env: dict, log_path: Path, pool: tuple[str, ...] = ("--pool=solo",)):
        self.env, self.log_path, self.process, self.pool = env, log_path, None, pool

    def start(self) -> "Worker":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "messaging_app", "worker", *self.pool, "--loglevel=INFO",
                 "--without-heartbeat", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while "ready." not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{self.log_text()}")
            time.sleep(0.2)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # warm shutdown: finishes the task under way
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Stack:
    """A database file, an app server and workers, all on one broker; logs() for failed tests."""

    def __init__(self, tmp_path: Path, broker: str, **extra: str):
        self.tmp_path = tmp_path
        self.queue = f"test-{uuid.uuid4().hex[:12]}"
        self.env = app_env(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", secret_key="worker-test-" + uuid.uuid4().hex * 2,
            CELERY_BROKER_URL=broker, CELERY_QUEUE=self.queue, **extra,
        )
        self.env["DJANGO_CONN_MAX_AGE"] = "0"
        self.server = Server("app", free_port(), tmp_path / "app.log")
        self.workers: list[Worker] = []

    def start_server(self) -> None:
        migrate(self.env)
        start_uvicorn(self.server, self.env)
        wait_until_answering(self.server, timeout=60)

    def start_worker(self) -> Worker:
        worker = Worker(self.env, self.tmp_path / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.server.stop()

    def logs(self):
        return [("app", self.server.log_text())] + [(f"worker {n}", w.log_text()) for n, w in enumerate(self.workers)]


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_BROKER)
    client.flushdb()
    redis.Redis.from_url(REDIS_RESULTS).flushdb()
    yield client
    client.flushdb()
    redis.Redis.from_url(REDIS_RESULTS).flushdb()


@pytest.mark.parametrize("broker,results", [(REDIS_BROKER, REDIS_RESULTS), (RABBITMQ_BROKER, "rpc://")],
                         ids=["redis", "rabbitmq"])
def test_a_task_round_trip_through_the_broker_and_a_worker(tmp_path, redis_db, broker, results):
    stack = Stack(tmp_path, broker, CELERY_RESULT_BACKEND=results)
    try:
        migrate(stack.env)
        stack.start_worker()
        client = Celery(broker=broker, backend=results)
        client.conf.update(task_default_queue=stack.queue, broker_connection_retry_on_startup=True)
        try:
            value = f"ping-{uuid.uuid4().hex}"
            assert client.send_task("notifications.ping", args=[value]).get(timeout=30) == value
        finally:
            client.close()
    finally:
        stack.stop()


@pytest.fixture
def stack(tmp_path, redis_db):
    stack = Stack(
        tmp_path, REDIS_BROKER,
        WEBHOOKS_ALLOW_PRIVATE="1", WEBHOOKS_ALLOW_HTTP="1", WEBHOOKS_TIMEOUT="10",
        WEBHOOKS_RETRY_BASE_SECONDS="0.5", WEBHOOKS_LEASE_SECONDS="3", CELERY_VISIBILITY_TIMEOUT="10",
    )
    yield stack
    stack.stop()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def conversation_with_webhook(stack: Stack, receiver: Receiver):
    alice, bob = register(stack.server, "Alice"), register(stack.server, "Bob")
    _, webhook = api(stack.server, "POST", "/api/webhooks/", {"url": receiver.url}, alice["token"], expect=201)
    _, conversation = api(stack.server, "POST", "/api/conversations/", {"participants": [alice["user_id"]]},
                          bob["token"], expect=201)
    path = f"/api/conversations/{conversation['conversation_id']}/messages/"

    def send(body):
        api(stack.server, "POST", path, {"message_body": body}, bob["token"], expect=201)

    return alice, webhook, send


def collapse(ids: list[int]) -> list[int]:
    """Event ids as received, with repeats in a row (at-least-once redeliveries) counted once."""
    return [event_id for n, event_id in enumerate(ids) if n == 0 or ids[n - 1] != event_id]


def test_the_worker_delivers_in_order_signed_and_retries_5xx(stack):
    stack.start_server()
    stack.start_worker()
    with Receiver() as receiver:
        receiver.script = [200, 500, 502]  # the second event fails twice, then passes
        alice, webhook, send = conversation_with_webhook(stack, receiver)
        for n in range(5):
            send(f"m{n}")
        wait_for(lambda: len({f["event_id"] for f in receiver.frames()}) == 6, 60, "six events")
        ids = [f["event_id"] for f in receiver.frames()]
        assert ids == [1, 2, 2, 2, 3, 4, 5, 6]
        for request in receiver.requests:
            assert webhook_http.verify(webhook["secret"], request["body"], request["headers"]["X-Messaging-Signature"])
        _, log = api(stack.server, "GET", f"/api/webhooks/{webhook['webhook_id']}/deliveries/", token=alice["token"],
                     expect=200)
        by_event = {entry["event_id"]: entry for entry in log["results"]}
        assert (by_event[2]["attempts"], by_event[2]["status"], by_event[2]["response_code"]) == (3, "succeeded", 200)
        assert all(by_event[n]["attempts"] == 1 for n in (1, 3, 4, 5, 6))


def test_nothing_is_lost_when_the_worker_is_killed_mid_delivery(stack):
    stack.start_server()
    first = stack.start_worker()
    with Receiver() as receiver:
        receiver.script = [("sleep", 3)]  # the worker is killed while the receiver takes its time
        alice, webhook, send = conversation_with_webhook(stack, receiver)
        wait_for(lambda: len(receiver.requests) >= 1, 30, "the first request")
        first.kill()
        for body in ("m1", "m2", "m3"):
            send(body)  # nobody is running: these wait in the broker and the stream
        time.sleep(1)
        assert len(receiver.requests) == 1
        stack.start_worker()  # resumes every webhook behind its owner's stream
        wait_for(lambda: len({f["event_id"] for f in receiver.frames()}) == 4, 60, "every event after the restart")
        ids = [f["event_id"] for f in receiver.frames()]
        assert collapse(ids) == [1, 2, 3, 4], ids  # in order; the event under way when killed, at least once
        assert ids.count(1) <= 2 and all(ids.count(n) == 1 for n in (2, 3, 4))
        wait_for(lambda: api(stack.server, "GET", f"/api/webhooks/{webhook['webhook_id']}/",
                             token=alice["token"])[1]["last_event_id"] == 4, 20, "the cursor at 4")
