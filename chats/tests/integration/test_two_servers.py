"""
Two real server processes sharing MariaDB and Redis: an event caused over REST on one
server reaches a WebSocket held by the other, and stops once its user is removed; the
cap on sockets per user counts the sockets on both; a logout on one server closes that
login's sockets on the other.

Needs MariaDB (or MySQL) and Redis running; nothing here uses the in-process Django or the
pytest-django test database. Environment (all optional):

    INTEGRATION_DATABASE_URL   whole database URL (mysql://user:pass@host:port/name);
                               the database is DROPPED, created afresh and dropped again.
    INTEGRATION_MYSQL_DB       database name when the URL is not given (default messaging_it;
                               root without password on 127.0.0.1:3306).
    INTEGRATION_REDIS_URL      Redis database for the channel layer, FLUSHED before and after
                               (default redis://127.0.0.1:6379/5).
    INTEGRATION_SERVER_TIMEOUT seconds each server has to answer GET /api/ (default 30).

Run: pytest -m integration chats/tests/integration
"""
import contextlib
import json
import os
import queue
import re
import shutil
import socket as sockets_module
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri
from websockets.sync.client import connect

from chats.tests.integration.servers import (
    PASSWORD,
    Server,
    api,
    app_env,
    free_port,
    migrate,
    register,
    start_gunicorn,
    start_uvicorn,
    wait_until_answering,
)

pytestmark = pytest.mark.integration

AUTH_TIMEOUT = 1.0  # WS_AUTH_TIMEOUT given to the servers
MAX_SOCKETS = 3  # WS_MAX_SOCKETS_PER_USER given to the servers
SEND_TIMEOUT = 5.0  # WS_SEND_TIMEOUT given to the servers (production: 30)
EVENT_TIMEOUT = 5.0  # an event must arrive within this many seconds
SILENCE = 2.0  # how long a removed participant is watched for stray events
MYSQL_SCHEMES = {"mysql", "mysql2", "mysqlgis"}


# --- the servers ---------------------------------------------------------------------------
@dataclass
class Cluster:
    """A fresh database and Redis db, migrated, and two servers on them."""

    database_url: str
    redis_url: str
    tmp: Path
    servers: list[Server] = field(default_factory=list)
    database_created: bool = False
    # One key for both servers: a JWT issued by one must be valid on the other.
    secret_key: str = field(default_factory=lambda: f"integration-{uuid.uuid4().hex}{uuid.uuid4().hex}")

    # -- setup --
    def env(self) -> dict:
        return app_env(
            database_url=self.database_url,
            redis_url=self.redis_url,
            secret_key=self.secret_key,
            WS_AUTH_TIMEOUT=str(AUTH_TIMEOUT),
            WS_MAX_SOCKETS_PER_USER=str(MAX_SOCKETS),
            WS_SEND_TIMEOUT=str(SEND_TIMEOUT),
            THROTTLE_SEND="100000/min", THROTTLE_USER="100000/min",  # the stalled-reader test floods
        )

    def start(self) -> None:
        self.reset_database()
        self.database_created = True
        flush_redis(self.redis_url)
        migrate(self.env())
        for number in (1, 2):
            server = Server(f"server{number}", free_port(), self.tmp / f"server{number}.log")
            self.servers.append(server)
            start_uvicorn(server, self.env())
        timeout = float(os.environ.get("INTEGRATION_SERVER_TIMEOUT", "30"))
        for server in self.servers:
            wait_until_answering(server, timeout)

    # -- database and Redis --
    def mysql(self, database: str | None = None):
        import MySQLdb

        parts = urlsplit(self.database_url)
        options = dict(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            passwd=unquote(parts.password or ""),
            charset="utf8mb4",
            connect_timeout=10,
        )
        if database:
            options["db"] = database
        return MySQLdb.connect(**options)

    @property
    def database_name(self) -> str:
        return database_name(self.database_url)

    def reset_database(self) -> None:
        connection = self.mysql()
        try:
            cursor = connection.cursor()
            cursor.execute(f"DROP DATABASE IF EXISTS `{self.database_name}`")
            cursor.execute(
                f"CREATE DATABASE `{self.database_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        finally:
            connection.close()

    def drop_database(self) -> None:
        connection = self.mysql()
        try:
            connection.cursor().execute(f"DROP DATABASE IF EXISTS `{self.database_name}`")
        finally:
            connection.close()

    # -- teardown and logs --
    def stop(self) -> None:
        errors = []
        for server in self.servers:
            server.stop()
        if self.database_created:
            try:
                self.drop_database()
            except Exception as exc:  # keep tearing down
                errors.append(f"dropping {self.database_name}: {exc!r}")
        try:
            flush_redis(self.redis_url)
        except Exception as exc:
            errors.append(f"flushing {self.redis_url}: {exc!r}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            print("integration teardown:", *errors, sep="\n  ", file=sys.stderr)

    def logs(self):
        for server in self.servers:
            yield f"{server.name} (port {server.port})", server.log_text()


def database_name(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in MYSQL_SCHEMES:
        raise RuntimeError(f"INTEGRATION_DATABASE_URL must be a MySQL/MariaDB URL, not {parts.scheme}://")
    name = unquote(parts.path.lstrip("/"))
    if not re.fullmatch(r"\w{1,64}", name):
        raise RuntimeError(f"refusing database name {name!r}: letters, digits and _ only")
    return name


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="module")
def cluster():
    database_url = os.environ.get("INTEGRATION_DATABASE_URL") or (
        f"mysql://root@127.0.0.1:3306/{os.environ.get('INTEGRATION_MYSQL_DB') or 'messaging_it'}"
    )
    database_name(database_url)  # validate before touching anything
    cluster = Cluster(
        database_url=database_url,
        redis_url=os.environ.get("INTEGRATION_REDIS_URL") or "redis://127.0.0.1:6379/5",
        tmp=Path(tempfile.mkdtemp(prefix="messaging_app-it-")),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- clients -------------------------------------------------------------------------------
CLOSED = {"type": "(socket closed)"}


class LiveSocket:
    """A real WebSocket client (a context manager); a thread timestamps each frame as it arrives."""

    def __init__(self, server: Server, label: str):
        self.server = server
        self.label = f"{label}@{server.name}"
        self.frames: queue.Queue = queue.Queue()
        self.stack = contextlib.ExitStack()

    def __enter__(self):
        self.ws = self.stack.enter_context(connect(self.server.ws_url, proxy=None, open_timeout=10, close_timeout=2))
        self.reader = threading.Thread(target=self._read, name=f"ws-{self.label}", daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc_info):
        self.stack.close()
        self.reader.join(timeout=5)

    def _read(self):
        try:
            for raw in self.ws:
                self.frames.put((time.monotonic(), json.loads(raw)))
        except ConnectionClosed:
            pass
        finally:
            self.frames.put((time.monotonic(), CLOSED))

    def send(self, payload: dict) -> None:
        self.ws.send(json.dumps(payload))

    def wait_for(self, wanted, timeout: float = EVENT_TIMEOUT, skip=lambda frame: False):
        """(arrival time, frame) of the first frame matching `wanted`; others must match `skip`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                arrived, frame = self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.label}: no matching frame within {timeout}s") from None
            if frame is CLOSED:
                raise AssertionError(f"{self.label}: socket closed ({self.ws.close_code}) while waiting")
            if wanted(frame):
                return arrived, frame
            assert skip(frame), f"{self.label}: unexpected frame {frame}"

    def collect(self, duration: float) -> list[dict]:
        """Every frame that arrives within `duration` seconds."""
        deadline = time.monotonic() + duration
        frames = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(self.frames.get(timeout=left)[1])
            except queue.Empty:
                break
        return frames

    def authenticate(self, user: dict) -> None:
        self.send({"type": "auth", "token": user["token"]})
        _, frame = self.wait_for(lambda f: True)
        assert set(frame) == {"type", "user_id", "last_event_id"}, frame
        assert (frame["type"], frame["user_id"]) == ("auth.ok", user["user_id"]), frame
        assert isinstance(frame["last_event_id"], int), frame

    def close_code(self, timeout: float = EVENT_TIMEOUT) -> int:
        """The code the server closes this socket with, within `timeout`; no frame may come first."""
        try:
            _, frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.label}: still open after {timeout}s") from None
        assert frame is CLOSED, f"{self.label}: unexpected frame {frame}"
        return self.ws.close_code


def is_type(kind: str, **fields):
    return lambda frame: frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items())


def message_created(message_id: str):
    return lambda frame: frame.get("type") == "message.created" and frame["message"]["message_id"] == message_id


def about_conversation(frame: dict) -> bool:
    return frame.get("type", "").startswith("conversation.")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- tests ---------------------------------------------------------------------------------
def test_events_cross_servers_and_stop_after_removal(cluster):
    one, two = cluster.servers  # sockets on one, REST on two
    alice, bob, carol = (register(two, name) for name in ("Alice", "Bob", "Carol"))
    _, conversation = api(
        two, "POST", "/api/conversations/", {"participants": [bob["user_id"], carol["user_id"]]},
        token=alice["token"], expect=201,
    )
    conversation_id = conversation["conversation_id"]
    messages_path = f"/api/conversations/{conversation_id}/messages/"

    with LiveSocket(one, "bob") as bob_socket, LiveSocket(one, "carol") as carol_socket:
        bob_socket.authenticate(bob)
        carol_socket.authenticate(carol)

        # A message sent over REST on server 2 reaches bob's socket on server 1.
        started = time.monotonic()
        _, first = api(two, "POST", messages_path, {"message_body": "hello from server 2"},
                       token=alice["token"], expect=201)
        answered = time.monotonic()
        arrived, frame = bob_socket.wait_for(message_created(first["message_id"]), skip=about_conversation)
        assert frame["conversation_id"] == conversation_id
        assert frame["message"]["message_body"] == "hello from server 2"
        assert frame["message"]["sender"]["user_id"] == alice["user_id"]
        carol_socket.wait_for(message_created(first["message_id"]), skip=about_conversation)
        print(
            f"\n[integration] message.created server2 REST -> server1 socket: {ms(arrived - started)} "
            f"after the POST started (POST round trip {ms(answered - started)})"
        )

        # The creator removes bob (REST on server 2): bob's socket is told so.
        started = time.monotonic()
        api(two, "DELETE", f"/api/conversations/{conversation_id}/participants/{bob['user_id']}/",
            token=alice["token"], expect=204)
        arrived, _ = bob_socket.wait_for(
            is_type("conversation.removed", conversation_id=conversation_id), skip=about_conversation
        )
        print(f"[integration] conversation.removed to bob: {ms(arrived - started)}")
        # Carol, still in, hears that the participants changed.
        _, updated = carol_socket.wait_for(is_type("conversation.updated", conversation_id=conversation_id))
        assert bob["user_id"] not in {p["user_id"] for p in updated["conversation"]["participants"]}

        # The next message reaches carol (delivery still works) but not bob.
        started = time.monotonic()
        _, second = api(two, "POST", messages_path, {"message_body": "bob is gone"},
                        token=alice["token"], expect=201)
        arrived, _ = carol_socket.wait_for(message_created(second["message_id"]), skip=about_conversation)
        print(f"[integration] message.created to carol after bob's removal: {ms(arrived - started)}")

        # Bob is in no other conversation: nothing at all may reach him now.
        assert bob_socket.collect(SILENCE) == []
        bob_socket.send({"type": "ping"})  # and his socket is alive, so his silence means something
        bob_socket.wait_for(is_type("pong"), timeout=EVENT_TIMEOUT)

    # And REST agrees, on the other server: bob has lost access.
    api(one, "GET", messages_path, token=bob["token"], expect=404)


def test_unauthenticated_socket_is_closed_with_4401(cluster):
    one = cluster.servers[0]
    with connect(one.ws_url, proxy=None, open_timeout=10, close_timeout=2) as ws:
        opened = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=AUTH_TIMEOUT + 5)
        elapsed = time.monotonic() - opened
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, closed.value
    print(f"\n[integration] unauthenticated socket closed with 4401 after {ms(elapsed)} (timeout {AUTH_TIMEOUT}s)")
    assert AUTH_TIMEOUT * 0.5 <= elapsed <= AUTH_TIMEOUT + 2


def test_the_socket_cap_counts_both_servers_and_a_logout_closes_that_login_on_the_other(cluster):
    one, two = cluster.servers
    dave = register(one, "Dave")
    logins = [
        api(server, "POST", "/api/token/", {"email": "dave@example.com", "password": PASSWORD}, expect=200)[1]
        for server in (one, two, one, two)
    ]
    as_login = [{"user_id": dave["user_id"], "token": tokens["access"]} for tokens in logins]
    with contextlib.ExitStack() as stack:
        # MAX_SOCKETS sockets, spread over both servers: the next one, on either, is refused.
        held = [stack.enter_context(LiveSocket(server, f"dave-{n}")) for n, server in enumerate((one, two, one))]
        for socket, login in zip(held, as_login):
            socket.authenticate(login)
        with LiveSocket(two, "dave-extra") as extra:
            extra.send({"type": "auth", "token": as_login[3]["token"]})
            assert extra.close_code() == 4409

        # Logging out login 0 through server 2 closes its socket on server 1, and only that one.
        started = time.monotonic()
        api(two, "POST", "/api/token/blacklist/", {"refresh": logins[0]["refresh"]}, expect=200)
        assert held[0].close_code() == 4401
        print(f"\n[integration] logout on server2 -> socket on server1 closed after {ms(time.monotonic() - started)}")
        for socket in held[1:]:
            socket.send({"type": "ping"})
            socket.wait_for(is_type("pong"))

        # Its slot is free again, whichever server the next socket goes to.
        replacement = stack.enter_context(LiveSocket(two, "dave-replacement"))
        replacement.authenticate(as_login[3])


IDLE_SECONDS = 12.0  # longer than redis-py 8's default read timeout (5 s), twice over


def test_idle_sockets_stay_open_and_keep_receiving(cluster):
    """
    Sockets that hear nothing for a while stay open and still get the next event. The channel
    layer waits on Redis in blocking reads; redis-py 8's default 5 s socket timeout cut those
    reads and closed idle sockets (the layer's hosts now set the timeouts it needs).
    """
    one, two = cluster.servers
    sender, reader = (register(two, name) for name in ("Idlesender", "Idlereader"))
    _, conversation = api(two, "POST", "/api/conversations/", {"participants": [reader["user_id"]]},
                          token=sender["token"], expect=201)
    with contextlib.ExitStack() as sockets:
        idle = [sockets.enter_context(LiveSocket(server, f"reader{n}")) for n, server in enumerate((one, two, one))]
        for socket in idle:
            socket.authenticate(reader)
        heard = [frame for socket in idle for frame in socket.collect(IDLE_SECONDS / len(idle))]
        assert CLOSED not in heard, "an idle socket was closed"
        _, sent = api(two, "POST", f"/api/conversations/{conversation['conversation_id']}/messages/",
                      {"message_body": "still there?"}, token=sender["token"], expect=201)
        for socket in idle:
            socket.wait_for(message_created(sent["message_id"]), skip=about_conversation)


def test_a_socket_that_stops_reading_is_closed_and_its_slot_freed(cluster):
    """
    A client that stops reading while events keep coming (its receive buffer made small, as a
    stalled phone's fills) is closed by the server within a minute, its slot freed, instead of
    holding megabytes of buffers until TCP gives up; and it is logged.
    """
    import redis

    one, two = cluster.servers
    production = Server("gunicorn", free_port(), cluster.tmp / "gunicorn.log")  # its WebSocket protocol
    cluster.servers.append(production)
    start_gunicorn(production, cluster.env(), workers=1)
    wait_until_answering(production, float(os.environ.get("INTEGRATION_SERVER_TIMEOUT", "30")))
    one = production
    sender, reader = (register(two, name) for name in ("Floodsender", "Stalledreader"))
    _, conversation = api(two, "POST", "/api/conversations/", {"participants": [reader["user_id"]]},
                          token=sender["token"], expect=201)
    slots = redis.Redis.from_url(cluster.redis_url)
    slot_key = f"ws:sockets:{uuid.UUID(reader['user_id']).hex}"
    # A client that reads nothing after auth.ok: websockets' sans-I/O protocol over a plain socket,
    # so no library thread goes on reading (and answering pings) behind the test's back.
    protocol = ClientProtocol(parse_uri(one.ws_url))
    raw = sockets_module.create_connection(("127.0.0.1", one.port), timeout=10)
    raw.setsockopt(sockets_module.SOL_SOCKET, sockets_module.SO_RCVBUF, 4096)
    protocol.send_request(protocol.connect())
    raw.sendall(b"".join(protocol.data_to_send()))
    while protocol.state is not State.OPEN:
        protocol.receive_data(raw.recv(65536))
    protocol.send_text(json.dumps({"type": "auth", "token": reader["token"]}).encode())
    raw.sendall(b"".join(protocol.data_to_send()))
    while not any(isinstance(e, Frame) and b"auth.ok" in e.data for e in protocol.events_received()):
        protocol.receive_data(raw.recv(65536))
    protocol.send_text(b'{"type": "ping"}')  # live events from now; it reads nothing more
    raw.sendall(b"".join(protocol.data_to_send()))
    try:
        assert slots.zcard(slot_key) == 1
        stalled_at = time.monotonic()
        body = "\u00e9" * 4000  # 24 KB per event on the wire (JSON escapes it)
        sent = 0
        while slots.zcard(slot_key) and time.monotonic() - stalled_at < 60:
            api(two, "POST", f"/api/conversations/{conversation['conversation_id']}/messages/",
                {"message_body": body}, token=sender["token"], expect=201)
            sent += 1
        closed_after = time.monotonic() - stalled_at
        print(f"closed {closed_after:.1f}s after it stopped reading, {sent} events sent to it")
        assert slots.zcard(slot_key) == 0, f"still open {closed_after:.0f}s after it stopped reading ({sent} sends)"
    finally:
        raw.close()
    assert "stopped reading" in one.log_text()
