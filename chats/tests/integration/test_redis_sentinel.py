"""
Redis with failover (docs/redis.md): a primary, a replica and three sentinels (real redis-server
processes started here, on free ports, in a directory of their own), and two app servers that
find the primary through the sentinels (REDIS_SENTINELS), with sockets on both.

- Before: a message sent over REST on one server reaches sockets on both, each event exactly
  once, in stream order.
- The primary is killed while sends go on from both servers. The sentinels promote the replica;
  the app servers follow by themselves (no restart, no configuration change). The test measures
  how long until a message is delivered live again, and checks that nothing was lost or repeated
  on any socket: what the live path missed during the failover came from the stream. A send
  during the failover is answered 201 or 503 (nothing written), never 500.
- After: /readyz is 200 on both servers, a new socket takes its slot on the new primary, the
  metrics' queue depth reads the broker there, and the background worker (connected before the
  failover, through kombu's Sentinel transport) runs a task sent there.
- Then the new primary stops too, with no replica left to promote: sends are answered within
  seconds (503, or 201 with the live publish skipped), /readyz is 503; when it comes back (empty)
  everything resumes by itself and every socket has every message written, once.

Nothing here touches the shared Redis on 6379. The database is a SQLite file of the test's own.
"""
import contextlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery

from chats.tests.integration.servers import (
    PASSWORD,
    Server,
    api,
    app_env,
    call,
    free_port,
    migrate,
    register,
    start_uvicorn,
    wait_until_answering,
)
from chats.tests.integration.test_read_replicas import wait_for
from chats.tests.integration.test_two_servers import LiveSocket
from chats.tests.test_metrics import scrape, value
from messaging_app.metrics_server import TaskQueueCollector
from messaging_app.redis_clients import RedisConfig
from notifications.tests.test_worker import Worker

pytestmark = pytest.mark.integration

MASTER = "it-primary"
DOWN_AFTER_MS = 3000  # sentinel down-after-milliseconds: longer than the clients retry (FAILOVER_RETRY_SECONDS)
FAILOVER_TIMEOUT_MS = 2000
RESUMED_WITHIN = 20.0  # seconds from the kill until a message is delivered live again (asserted)
# A traceback frame of a live publish that failed (logged by the after-commit hook; the stream has it).
FAILED_PUBLISH = re.compile(r'chats/delivery\.py", line \d+, in publish\n')


class RedisProcess:
    """A redis-server (or sentinel) of the test's own on a free port; killed, never left behind."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.port = free_port()
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> "RedisProcess":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is part of the machine (machine.md); the test needs it"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([binary, *args], cwd=self.folder, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.answers(), 10, f"{self.name} answering")
        return self

    def start_server(self, *args: str) -> "RedisProcess":
        return self.start("--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", str(self.folder), *args)

    def start_sentinel(self, primary: "RedisProcess") -> "RedisProcess":
        config = self.folder / f"{self.name}.conf"  # a sentinel rewrites its file: one each
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
        )
        return self.start(str(config), "--sentinel")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"


class SentinelCluster:
    """The Redis side (primary, replica, three sentinels) and two app servers on it."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.primary = RedisProcess(tmp, "primary")
        self.replica = RedisProcess(tmp, "replica")
        self.sentinels = [RedisProcess(tmp, f"sentinel{n}") for n in (1, 2, 3)]
        self.servers: list[Server] = []
        self.worker: Worker | None = None

    def start_redis(self) -> None:
        self.primary.start_server()
        self.replica.start_server("--replicaof", "127.0.0.1", str(self.primary.port))

        def in_sync() -> bool:
            with self.replica.client() as client:
                return client.info("replication").get("master_link_status") == "up"

        wait_for(in_sync, 10, "the replica in sync")
        for sentinel in self.sentinels:
            sentinel.start_sentinel(self.primary)

        def ready(sentinel: RedisProcess) -> bool:
            # Each sentinel knows the two others (the votes of a failover) and the replica.
            with sentinel.client() as client:
                state = client.sentinel_master(MASTER)
                return state["num-other-sentinels"] == 2 and state["num-slaves"] == 1

        wait_for(lambda: all(ready(sentinel) for sentinel in self.sentinels), 30, "the sentinels to know each other")

    def primary_named(self) -> int:
        """The port of the primary the first sentinel names now."""
        with self.sentinels[0].client() as client:
            return int(client.sentinel_get_master_addr_by_name(MASTER)[1])

    def env(self) -> dict:
        return app_env(
            database_url=f"sqlite:///{self.tmp / 'db.sqlite3'}",
            secret_key=f"sentinel-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            REDIS_SENTINELS=",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels),
            REDIS_SENTINEL_MASTER=MASTER,
            THROTTLE_USER="100000/min", THROTTLE_SEND="100000/min",
        )

    def start_app(self) -> None:
        env = self.env()
        migrate(env)
        for number in (1, 2):
            server = Server(f"server{number}", free_port(), self.tmp / f"server{number}.log")
            self.servers.append(server)
            start_uvicorn(server, env)
        # A background worker on the default broker: the same primary, through kombu's Sentinel
        # transport; it serves its metrics (which count the tasks it ran).
        self.worker_metrics_port = free_port()
        self.worker = Worker(dict(env, METRICS_PORT=str(self.worker_metrics_port), METRICS_HOST="127.0.0.1"),
                             self.tmp / "worker.log").start()
        for server in self.servers:
            wait_until_answering(server, 60)

    def tasks_run(self) -> float:
        return value(scrape(self.worker_metrics_port), "messaging_tasks_total", task="notifications.ping",
                     outcome="succeeded")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.worker is not None:
            self.worker.stop()
        for node in (*self.sentinels, self.replica, self.primary):
            node.kill()

    def logs(self):
        for server in self.servers:
            yield server.name, server.log_text()
        if self.worker is not None:
            yield "worker", self.worker.log_text()
        for node in (self.primary, self.replica, *self.sentinels):
            yield f"{node.name} (port {node.port})", node.log_text()


@pytest.fixture
def cluster():
    cluster = SentinelCluster(Path(tempfile.mkdtemp(prefix="messaging_app-sentinel-")))
    try:
        cluster.start_redis()
        cluster.start_app()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.tmp, ignore_errors=True)


class EventLog:
    """The stream events one socket received, in order, from its auth.ok on (with their arrival times)."""

    def __init__(self, socket: LiveSocket, start: int):
        self.socket, self.position = socket, start
        self.events: list[tuple[float, dict]] = []

    def take(self, timeout: float) -> None:
        """Every event that arrives within `timeout` s."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(AssertionError):
            while (left := deadline - time.monotonic()) > 0:
                self.events.append(self.socket.wait_for(is_event, timeout=left, skip=lambda f: True))

    def wait_for_message(self, message_id: str, timeout: float) -> None:
        """Until the message.created of `message_id` has arrived (the events on the way are kept)."""
        if message_id in self.message_ids():
            return
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{self.socket.label}: message {message_id} not received within {timeout}s"
            self.events.append(self.socket.wait_for(is_event, timeout=left, skip=lambda f: True))
            if self.message_ids()[-1:] == [message_id]:
                return

    def message_ids(self) -> list[str]:
        return [f["message"]["message_id"] for _, f in self.events if f["type"] == "message.created"]

    def assert_exact(self, sent: dict[str, float]) -> None:
        """Event ids follow on with no gap and no repeat, and the messages are exactly those `sent`, once each."""
        ids = [frame["event_id"] for _, frame in self.events]
        assert ids == list(range(self.position + 1, self.position + 1 + len(ids))), f"{self.socket.label}: {ids}"
        received = self.message_ids()
        assert len(received) == len(set(received)) and set(received) == set(sent), (
            f"{self.socket.label}: {len(received)} received ({len(set(received))} distinct), {len(sent)} sent")


def is_event(frame: dict) -> bool:
    return "event_id" in frame


def authenticated(socket: LiveSocket, user: dict) -> EventLog:
    socket.send({"type": "auth", "token": user["token"]})
    _, frame = socket.wait_for(lambda f: f.get("type") == "auth.ok")
    return EventLog(socket, frame["last_event_id"])


class Sender:
    """Alice's sends over REST: every message answered 201, with when its answer came."""

    def __init__(self, user: dict, path: str):
        self.user, self.path = user, path
        self.sent: dict[str, float] = {}  # message id -> monotonic time of its 201
        self.answers: list[tuple[float, str, int, float]] = []  # (s after `since`, server, status, s to answer)
        self.lock = threading.Lock()
        self.since = time.monotonic()

    def send(self, server: Server, body: str):
        reply = call(server, "POST", self.path, {"message_body": body}, token=self.user["token"], timeout=30)
        # 201, or 503 while Redis cannot be reached (nothing written): never a 500.
        assert reply.status in (201, 503), f"POST on {server.name}: {reply.status} {reply.body}"
        with self.lock:
            if reply.status == 201:
                self.sent[reply.body["message_id"]] = time.monotonic()
            self.answers.append((round(time.monotonic() - self.since, 2), server.name, reply.status,
                                 round(reply.seconds, 2)))
        return reply

    def keep_sending(self, server: Server, stop: threading.Event) -> threading.Thread:
        def run():
            n = 0
            while not stop.is_set():
                n += 1
                if self.send(server, f"background {server.name} {n}").status != 201:
                    time.sleep(0.2)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def failed_publishes_of(*servers: Server) -> int:
    return sum(len(FAILED_PUBLISH.findall(server.log_text())) for server in servers)


def test_a_primary_failover_loses_and_repeats_nothing_and_delivery_resumes_by_itself(cluster):
    one, two = cluster.servers
    alice, bob = register(two, "Alice"), register(one, "Bob")
    _, conversation = api(two, "POST", "/api/conversations/", {"participants": [bob["user_id"]]},
                          token=alice["token"], expect=201)
    path = f"/api/conversations/{conversation['conversation_id']}/messages/"
    alice_sends = Sender(alice, path)

    with contextlib.ExitStack() as stack:
        # Bob on both servers, Alice (the sender) on server one.
        bob_one = authenticated(stack.enter_context(LiveSocket(one, "bob")), bob)
        bob_two = authenticated(stack.enter_context(LiveSocket(two, "bob")), bob)
        alice_one = authenticated(stack.enter_context(LiveSocket(one, "alice")), alice)
        sockets = (bob_one, bob_two, alice_one)
        for n in range(3):
            alice_sends.send(two, f"before {n}")
            for log in sockets:
                log.wait_for_message(list(alice_sends.sent)[-1], timeout=5)

        # -- 1. The primary is killed: the sentinels promote the replica --------------------------
        old_port = cluster.primary.port
        stop = threading.Event()
        alice_sends.since = killed = time.monotonic()
        cluster.primary.kill()
        # Sends go on from both servers all along, while the main thread probes for live delivery.
        background = [alice_sends.keep_sending(server, stop) for server in (one, two)]
        resumed = switched = None
        while resumed is None and time.monotonic() - killed < RESUMED_WITHIN:
            probe = alice_sends.send(two, f"probe {time.monotonic() - killed:.1f}")
            if switched is None and cluster.primary_named() != old_port:
                switched = time.monotonic() - killed
            if probe.status == 201:
                with contextlib.suppress(AssertionError):
                    bob_one.wait_for_message(probe.body["message_id"], timeout=1.0)
                    resumed = time.monotonic() - killed
            else:
                time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        for thread in background:
            thread.join(timeout=40)
        assert resumed is not None, f"no message delivered live within {RESUMED_WITHIN}s: {alice_sends.answers}"
        assert cluster.primary_named() == cluster.replica.port

        last = alice_sends.send(two, "after the failover").body["message_id"]
        for log in sockets:
            log.wait_for_message(last, timeout=10)  # what the live path missed came from the stream
            log.take(1.0)  # and nothing more: a repeat would show here
            log.assert_exact(alice_sends.sent)
        statuses = [status for _, _, status, _ in alice_sends.answers]
        failed_publishes = failed_publishes_of(one, two)
        print(f"\n[sentinel] primary killed: the sentinels named the new one by {switched:.1f}s; "
              f"a message was delivered live again {resumed:.1f}s after the kill")
        print(f"[sentinel] sends after the kill: {statuses.count(201)} answered 201, {statuses.count(503)} 503, "
              f"slowest answer {max(s for *_, s in alice_sends.answers):.2f}s; {failed_publishes} live publishes "
              f"failed (their events came from the stream); every socket has every message once, in order")

        # Both servers are ready again, and slots are taken on the new primary.
        for server in (one, two):
            wait_for(lambda: call(server, "GET", "/readyz").status == 200, 10, f"{server.name} ready")
        with LiveSocket(two, "bob-newcomer") as newcomer:
            assert authenticated(newcomer, bob).position == bob_one.position + len(bob_one.events)
            with cluster.replica.client() as client:
                assert client.zcard(f"ws:sockets:{uuid.UUID(bob['user_id']).hex}") == 3
                # The metrics' queue depth reads the Celery broker on the new primary too.
                client.rpush("it-queue", "a task", "another")
            broker, transport_options = RedisConfig.from_environ(cluster.env()).celery_broker()
            (depth,) = TaskQueueCollector(broker, "it-queue", MASTER).collect()
            assert [sample.value for sample in depth.samples] == [2]
        # The worker, connected before the failover, takes tasks from the new primary.
        client = Celery(broker=broker)
        client.conf.update(broker_transport_options=transport_options, task_default_queue="messaging")
        try:
            client.send_task("notifications.ping", args=["after the failover"])
        finally:
            client.close()
        wait_for(lambda: cluster.tasks_run() == 1, 30, "the worker to run a task after the failover")

        # -- 2. The new primary stops too, with no replica left: no failover is possible ---------
        # A send is answered within seconds: 503 when its rate limit had to count in Redis (nothing
        # written), 201 when this process still held numbers for it (chats/throttles.py; its live
        # publish then fails: the sockets get it from the stream once Redis is back). A
        # registration counts in Redis every time (its limits are small): 503.
        cluster.replica.kill()
        during = [alice_sends.send(two, f"while no Redis answers {n}") for n in range(3)]
        assert max(reply.seconds for reply in during) < 8
        assert {reply.headers.get("retry-after") for reply in during if reply.status == 503} <= {"5"}
        newcomer = {"email": "carol@example.com", "password": PASSWORD, "first_name": "Carol", "last_name": "Tester"}
        refused = call(two, "POST", "/api/users/", newcomer)
        assert (refused.status, refused.headers.get("retry-after")) == (503, "5") and refused.seconds < 8, refused
        assert [error["code"] for error in refused.body["errors"]] == ["service_unavailable"]
        unready = call(one, "GET", "/readyz")
        assert (unready.status, unready.body["checks"]["redis"]) == (503, False)
        # It comes back (empty: no persistence) on the same address: everything resumes by itself.
        cluster.replica.start_server()
        restarted = time.monotonic()
        wait_for(lambda: alice_sends.send(two, "Redis is back").status == 201, 20, "a send to succeed again")
        recovered = time.monotonic() - restarted
        api(two, "POST", "/api/users/", newcomer, expect=201)  # the refused registration wrote nothing
        last = list(alice_sends.sent)[-1]
        for log in sockets:
            log.wait_for_message(last, timeout=RESUMED_WITHIN)
            log.take(1.0)
            log.assert_exact(alice_sends.sent)
        written = [reply.body["message_id"] for reply in during if reply.status == 201]
        print(f"[sentinel] no primary at all: {len(during) - len(written)} of {len(during)} sends answered 503 and "
              f"{len(written)} 201 (slowest {max(reply.seconds for reply in during):.2f}s), a registration 503 in "
              f"{refused.seconds:.2f}s, /readyz 503; sends "
              f"succeed again {recovered:.1f}s after it restarted; the {len(written)} written reached every socket "
              f"from the stream")
        print(f"[sentinel] live publishes that failed meanwhile: {failed_publishes_of(one, two) - failed_publishes}")
    # REST agrees: exactly the messages answered 201 were written (a 503 wrote nothing).
    _, page = api(one, "GET", path + "?page_size=100", token=bob["token"], expect=200)
    assert page["count"] == len(alice_sends.sent)
    assert {m["message_id"] for m in page["results"]} <= set(alice_sends.sent)
