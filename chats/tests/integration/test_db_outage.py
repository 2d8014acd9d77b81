"""
A real database outage under traffic, on MariaDB and on PostgreSQL.

A private database server (databases.py: its own port and data directory; the shared servers
are never touched) is migrated and served by the production command (gunicorn managing uvicorn
workers, DEBUG off). While clients send messages, create conversations, read and mark read, the
database server goes away three times: a clean shutdown and a kill -9, each while sends wait
inside their transactions for a row lock (their connections open when the database goes away),
then a freeze (SIGSTOP: connections are accepted, nothing answers).

- Every request answers within a bound (clients give up after CLIENT_TIMEOUT: a hang fails):
  201/200, or 503 with the JSON error shape and Retry-After; never a 500 or an HTML page. A
  frozen database is given up on after the connect timeout of settings.py or the server's
  request deadline (HTTP_REQUEST_TIMEOUT), whichever comes first; a request already mid-query
  when it froze is answered 503 at that deadline or completes once the database is back.
- /readyz answers 503 while /healthz stays 200.
- Once the database server is back (same data directory, same port), the same app processes
  serve again by themselves within RECOVERY_BOUND.
- Nothing is half-written: the sends caught waiting were not stored; every send is stored
  exactly once after the failed ones are retried with their client_id; every conversation has
  all its members; message_count, last_message and each member's unread_count equal what
  COUNT queries find.

Run: pytest -m integration chats/tests/integration/test_db_outage.py
"""
import itertools
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

from chats.tests.integration.databases import KINDS, PrivateDatabase, app_on_private_database
from chats.tests.integration.servers import (
    Reply,
    Server,
    call,
    child_pids,
    register,
)

pytestmark = pytest.mark.integration

DATABASE = "messaging_outage"
CLIENT_TIMEOUT = 10.0  # a request without an answer after this long counts as a hang
ANSWER_BOUND = 5.0  # requests caught by the outage, or made during it, answer within this
RECOVERY_BOUND = 10.0  # the API serves again at most this long after the database is back
OUTAGE_SECONDS = 1.5  # how long the database stays down
CONNECT_TIMEOUT = 5.0  # settings.py: a new connection to a database that does not answer fails after this
REQUEST_TIMEOUT = 4.0  # HTTP_REQUEST_TIMEOUT of the server: no answer by then is a 503
FROZEN_SECONDS = CONNECT_TIMEOUT + 2.5  # how long the database stays frozen
FROZEN = "frozen (SIGSTOP)"
PACE = 0.02  # seconds between one client's requests
UUID_TEXT = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.IGNORECASE)
UNAVAILABLE = {"type": "server_error", "code": "service_unavailable"}


# --- the stack -----------------------------------------------------------------------------
@dataclass
class Stack:
    """A private database server and the app served by gunicorn on it."""

    db: PrivateDatabase
    server: Server

    def logs(self):
        yield f"app server (port {self.server.port})", self.server.log_text()
        yield f"{self.db.kind} (port {self.db.port})", self.db.log_text()

    def query(self, sql: str, params=()) -> list[tuple]:
        connection = self.db.connect(DATABASE)
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return [tuple(_canonical(v) for v in row) for row in cursor.fetchall()]
        finally:
            connection.close()


def _canonical(value):
    """UUIDs as the API writes them, whether the driver returns UUID objects or strings."""
    if isinstance(value, uuid.UUID) or (isinstance(value, str) and UUID_TEXT.fullmatch(value)):
        return str(uuid.UUID(str(value)))
    return value


@pytest.fixture(params=sorted(KINDS))
def stack(request):
    settings = {
        # The traffic below is far above the per-user rate limits, which are not under test.
        "THROTTLE_USER": "100000/min",
        "THROTTLE_SEND": "100000/min",
        # Requests run on a pool of threads with persistent connections (wsgi_pool.py): one
        # whose database froze is answered 503 at this deadline (default 10 s), inside the
        # bound below.
        "HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    }
    with app_on_private_database(request.param, DATABASE, "outage", **settings) as (db, server):
        yield Stack(db, server)


# --- traffic -------------------------------------------------------------------------------
@dataclass
class Attempt:
    kind: str  # send, create, inbox, mark_read
    started: float
    ended: float
    reply: Reply | None
    error: str = ""
    client_id: str = ""


@dataclass
class Send:
    """Everything that happened to one client_id."""

    user: dict
    body: str
    statuses: list[int] = field(default_factory=list)
    message_id: str | None = None  # from a 201 or 200

    @property
    def answered(self) -> bool:
        return self.message_id is not None


class Traffic:
    """Clients in threads, each making one request after another until stopped."""

    def __init__(self, server: Server, conversation_id: str, people: dict, sends: dict, label: str):
        self.server, self.conversation_id, self.people = server, conversation_id, people
        self.sends, self.label = sends, label
        self.attempts: list[Attempt] = []
        self.created: list[Reply] = []
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._sender, args=(people["alice"],), daemon=True),
            threading.Thread(target=self._sender, args=(people["bob"],), daemon=True),
            threading.Thread(target=self._reader, args=(people["bob"],), daemon=True),
            threading.Thread(target=self._creator, args=(people["carol"],), daemon=True),
        ]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
        assert not any(thread.is_alive() for thread in self.threads), "a client thread is stuck"

    def _request(self, kind: str, method: str, path: str, body=None, user=None, client_id="") -> Reply | None:
        started = time.monotonic()
        try:
            reply, error = call(self.server, method, path, body, user["token"], timeout=CLIENT_TIMEOUT), ""
        except Exception as exc:  # a timeout or a dropped connection: recorded, then asserted on
            reply, error = None, repr(exc)
        with self.lock:
            self.attempts.append(Attempt(kind, started, time.monotonic(), reply, error, client_id))
        return reply

    def _sender(self, user: dict):
        for number in itertools.count():
            if self.halt.wait(PACE):
                return
            self._send(user, f"{self.label}-{user['name']}-{number}")

    def _send(self, user: dict, client_id: str):
        self.sends[client_id] = send = Send(user, f"{client_id}: hello")
        send_message(self.server, self.conversation_id, send, client_id, self._request)

    def send_in_background(self, user: dict, client_id: str):
        thread = threading.Thread(target=self._send, args=(user, client_id), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _reader(self, user: dict):
        while not self.halt.wait(PACE):
            self._request("inbox", "GET", "/api/conversations/", user=user)
            self._request("mark_read", "POST", f"/api/conversations/{self.conversation_id}/read/", {}, user=user)

    def _creator(self, user: dict):
        others = [self.people["alice"]["user_id"], self.people["bob"]["user_id"]]
        while not self.halt.wait(PACE * 5):
            reply = self._request(
                "create", "POST", "/api/conversations/",
                {"participants": others, "messages": [{"message_body": "a new group"}]}, user=user,
            )
            if reply is not None and reply.status == 201:
                with self.lock:
                    self.created.append(reply)

    def of(self, *kinds: str) -> list[Attempt]:
        return [a for a in self.attempts if a.kind in kinds]


def send_message(server: Server, conversation_id: str, send: Send, client_id: str, request=None) -> Reply | None:
    """One send of `send` with its client_id; records the outcome on it."""
    path = f"/api/conversations/{conversation_id}/messages/"
    body = {"message_body": send.body, "client_id": client_id}
    if request is None:
        reply = call(server, "POST", path, body, send.user["token"], timeout=CLIENT_TIMEOUT)
    else:
        reply = request("send", "POST", path, body, user=send.user, client_id=client_id)
    if reply is not None:
        send.statuses.append(reply.status)
        if reply.status in (200, 201):
            assert send.message_id in (None, reply.body["message_id"])
            send.message_id = reply.body["message_id"]
    return reply


# --- one outage ----------------------------------------------------------------------------
@dataclass
class Outage:
    how: str
    locked: float = 0.0  # the conversation row was locked from outside
    waiting: int = 0  # app transactions waiting for that lock when the database went away
    down: float = 0.0  # the stop, kill or freeze was sent
    restarted: float = 0.0  # the database server was started again (or thawed)
    up: float = 0.0  # ... and takes queries
    ready: float = 0.0  # /readyz said 200 again
    probes: list[tuple[str, Reply]] = field(default_factory=list)


def lock_waits(stack: Stack) -> int:
    # MariaDB refreshes its innodb_trx snapshot only once it has gone unread for 0.1 s: poll slower.
    if stack.db.kind == "mariadb":
        sql = "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
    else:
        sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    return stack.query(sql)[0][0]


def take_down(stack: Stack, traffic: Traffic, how: str) -> Outage:
    """
    Lock the conversation row from outside, start two more sends (they must wait inside their
    transactions, connections open), then stop or kill the database server. Or freeze it.
    """
    outage = Outage(how)
    if how == FROZEN:
        outage.down = time.monotonic()
        stack.db.freeze()
        # A send made now, on a new connection, must give up after the connect timeout. The
        # regular senders may all be stuck in queries the freeze caught (no read timeout), so
        # one is started here rather than left to their timing.
        time.sleep(0.1)
        traffic.send_in_background(traffic.people["alice"], f"{traffic.label}-frozen-alice")
        return outage
    blocker = stack.db.connect(DATABASE)
    cursor = blocker.cursor()
    cursor.execute("BEGIN")
    cursor.execute("SELECT conversation_id FROM chats_conversation WHERE conversation_id = %s FOR UPDATE",
                   [traffic.conversation_id])
    outage.locked = time.monotonic()
    for name in ("alice", "bob"):
        traffic.send_in_background(traffic.people[name], f"{traffic.label}-caught-{name}")
    deadline = outage.locked + 5
    while (waiting := lock_waits(stack)) < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(0.2)
    outage.waiting = waiting
    outage.down = time.monotonic()
    if how == "clean shutdown":
        stack.db.stop()
    else:
        stack.db.kill()
    try:
        blocker.close()
    except Exception:
        pass  # its server is gone
    return outage


def probe_while_down(stack: Stack, outage: Outage) -> None:
    until = outage.down + (FROZEN_SECONDS if outage.how == FROZEN else OUTAGE_SECONDS)
    while time.monotonic() < until - (CONNECT_TIMEOUT + 0.5 if outage.how == FROZEN else 0):
        for path in ("/healthz", "/readyz", "/healthz"):
            outage.probes.append((path, call(stack.server, "GET", path, timeout=CLIENT_TIMEOUT)))
        time.sleep(0.1)
    time.sleep(max(0.0, until - time.monotonic()))


def bring_back(stack: Stack, outage: Outage, traffic: Traffic) -> None:
    outage.restarted = time.monotonic()
    if outage.how == FROZEN:
        stack.db.thaw()
    else:
        stack.db.start()
    outage.up = time.monotonic()
    while True:
        if call(stack.server, "GET", "/readyz", timeout=CLIENT_TIMEOUT).status == 200:
            outage.ready = time.monotonic()
            break
        assert time.monotonic() - outage.up < RECOVERY_BOUND, "/readyz did not recover"
        time.sleep(0.05)
    # Some traffic after the recovery too.
    deadline = time.monotonic() + RECOVERY_BOUND
    while not [a for a in traffic.of("send") if a.started > outage.ready and a.reply and a.reply.status == 201]:
        assert time.monotonic() < deadline, "no send succeeded after the recovery"
        time.sleep(0.05)
    time.sleep(0.3)


def check_outage(outage: Outage, traffic: Traffic) -> dict:
    """What every request saw around one outage; returns a few numbers for the report."""
    attempts = traffic.attempts
    hangs = [a for a in attempts if a.reply is None]
    assert not hangs, f"{outage.how}: requests without an answer: {[(a.kind, a.error) for a in hangs][:5]}"

    allowed = {"send": {201, 503}, "create": {201, 503}, "inbox": {200, 503}, "mark_read": {200, 503}}
    wrong = [(a.kind, a.reply.status, a.reply.body) for a in attempts if a.reply.status not in allowed[a.kind]]
    assert not wrong, f"{outage.how}: unexpected answers: {wrong[:5]}"

    for attempt in attempts:
        if attempt.reply.status == 503:
            assert_unavailable(attempt.reply)

    # Everything made during the outage answered within the bound; a frozen database is given up
    # on after the connect timeout. Requests caught by a stop or a kill answered within the bound;
    # those caught mid-query by a freeze wait for the database (there is no read timeout).
    made = [a for a in attempts if outage.down <= a.started <= outage.up]
    caught = [a for a in attempts if a.started < outage.down < a.ended]
    bound = CONNECT_TIMEOUT + 2 if outage.how == FROZEN else ANSWER_BOUND
    slowest = max(a.ended - a.started for a in made)
    assert slowest <= bound, f"{outage.how}: an answer took {slowest:.2f}s"
    caught_until = max((a.ended for a in caught), default=outage.down)
    assert caught_until - (outage.up if outage.how == FROZEN else outage.down) <= ANSWER_BOUND

    # The outage was seen by every kind of request (by the sends, at least, in a freeze).
    for kind in ["send"] if outage.how == FROZEN else allowed:
        assert any(a.reply.status == 503 for a in made if a.kind == kind), (
            kind, [(a.reply.status, round(a.started - outage.down, 2), round(a.ended - a.started, 2))
                   for a in attempts if a.kind == kind and a.ended > outage.down - 0.1][:30])
    # The sends that were waiting for the row lock inside their transactions failed.
    caught_sends = [a for a in caught if a.kind == "send" and a.started > outage.locked] if outage.locked else []
    if outage.how != FROZEN:
        assert outage.waiting >= 2 and len(caught_sends) >= 2, f"{outage.how}: no send was waiting in its transaction"
        assert all(a.reply.status == 503 for a in caught_sends)

    # /readyz failed and /healthz did not while the database was down.
    readyz = [reply for path, reply in outage.probes if path == "/readyz"]
    healthz = [reply for path, reply in outage.probes if path == "/healthz"]
    assert readyz and all(r.status == 503 and r.body["checks"]["database"] is False for r in readyz)
    assert healthz and all(r.status == 200 and r.body == {"status": "ok"} for r in healthz)

    # Service resumed by itself, and stayed up.
    assert outage.ready - outage.up <= RECOVERY_BOUND
    after = [a for a in attempts if a.started > outage.ready]
    assert after and all(a.reply.status in (200, 201) for a in after), [a.reply.status for a in after]
    first_send = min(a.ended for a in traffic.of("send") if a.started > outage.up and a.reply.status == 201)
    return {
        "requests": len(attempts),
        "503s": sum(a.reply.status == 503 for a in attempts),
        "sends cut off in their transactions": len(caught_sends),
        "slowest answer made during the outage (s)": round(slowest, 3),
        "database back (s)": round(outage.up - outage.restarted, 2),
        "readyz 200 after database back (s)": round(outage.ready - outage.up, 3),
        "first 201 after database back (s)": round(first_send - outage.up, 3),
        "caught client_ids": [a.client_id for a in caught_sends],
    }


def assert_unavailable(reply: Reply) -> None:
    assert reply.is_json, (reply.status, reply.headers.get("content-type"), reply.body)
    assert reply.body["type"] == UNAVAILABLE["type"], reply.body
    assert [e["code"] for e in reply.body["errors"]] == [UNAVAILABLE["code"]], reply.body
    assert reply.headers.get("retry-after") == "5", reply.headers
    assert reply.headers.get("x-content-type-options") == "nosniff" and reply.headers.get("x-request-id")


# --- the database afterwards ---------------------------------------------------------------
def check_database(stack: Stack, conversation_id: str, sends: dict, created: list[Reply], people: dict) -> None:
    # Every send of the main conversation is stored once, with its body, under the id it was answered with.
    rows = stack.query(
        "SELECT client_id, message_id, message_body, sender_id FROM chats_message WHERE conversation_id = %s",
        [conversation_id],
    )
    assert len(rows) == len({row[0] for row in rows}) == len(sends)
    stored = {client_id: (message_id, body, sender) for client_id, message_id, body, sender in rows}
    for client_id, send in sends.items():
        assert stored[client_id] == (send.message_id, send.body, send.user["user_id"]), client_id

    # Every conversation is whole: all its members, exact counters, the newest message as last_message.
    conversations = stack.query(
        "SELECT c.conversation_id, c.message_count, c.last_message_id,"
        " (SELECT COUNT(*) FROM chats_message m WHERE m.conversation_id = c.conversation_id),"
        " (SELECT m.message_id FROM chats_message m WHERE m.conversation_id = c.conversation_id"
        "  ORDER BY m.sent_at DESC LIMIT 1),"
        " (SELECT COUNT(*) FROM chats_conversationmembership p WHERE p.conversation_id = c.conversation_id)"
        " FROM chats_conversation c"
    )
    by_id = {row[0]: row[1:] for row in conversations}
    for cid, (message_count, last_message, counted, newest, members) in by_id.items():
        assert message_count == counted and last_message == newest, (cid, message_count, counted)
        assert members == (2 if cid == conversation_id else 3), (cid, members)
        if cid != conversation_id:
            assert counted == 1, cid  # a group opened with one message
    assert {reply.body["conversation_id"] for reply in created} <= set(by_id)
    assert len(by_id) - 1 >= len(created)

    unread = stack.query(
        "SELECT p.conversation_id, p.user_id, p.unread_count,"
        " (SELECT COUNT(*) FROM chats_message m WHERE m.conversation_id = p.conversation_id"
        "  AND m.sender_id <> p.user_id AND m.is_deleted = FALSE"
        "  AND (p.last_read_at IS NULL OR m.sent_at > p.last_read_at))"
        " FROM chats_conversationmembership p"
    )
    wrong = [row for row in unread if row[2] != row[3]]
    assert not wrong, f"unread_count differs from the rows: {wrong[:5]}"

    # And the API says what the rows say.
    main = by_id[conversation_id]
    for person in (people["alice"], people["bob"]):
        reply = call(stack.server, "GET", f"/api/conversations/{conversation_id}/", token=person["token"])
        assert reply.status == 200, reply.body
        assert reply.body["message_count"] == main[0]
        assert reply.body["last_message"]["message_id"] == main[1]
        expected = next((row[3] for row in unread if row[0] == conversation_id and row[1] == person["user_id"]), None)
        if expected is not None:
            assert reply.body["unread_count"] == expected, person["name"]


# --- the test ------------------------------------------------------------------------------
def test_database_outage_is_503_then_recovers_with_nothing_half_written(stack):
    server = stack.server
    people = {name.lower(): register(server, name) for name in ("Alice", "Bob", "Carol")}
    reply = call(server, "POST", "/api/conversations/", {"participants": [people["bob"]["user_id"]]},
                 token=people["alice"]["token"])
    assert reply.status == 201, reply.body
    conversation_id = reply.body["conversation_id"]
    workers = child_pids(server.process.pid)
    assert len(workers) == 2

    sends: dict[str, Send] = {}
    created: list[Reply] = []
    report = {}
    for number, how in enumerate(("clean shutdown", "kill -9", FROZEN)):
        with Traffic(server, conversation_id, people, sends, label=f"r{number}") as traffic:
            time.sleep(0.5)  # traffic flows before anything goes wrong
            outage = take_down(stack, traffic, how)
            probe_while_down(stack, outage)
            bring_back(stack, outage, traffic)
        report[how] = check_outage(outage, traffic)
        created += traffic.created

    # The same app processes served throughout: recovery needed no restart.
    assert server.process.poll() is None and child_pids(server.process.pid) == workers

    # Sends that got no 201 are retried with their client_id: each is then stored exactly once.
    caught = {cid for numbers in report.values() for cid in numbers.pop("caught client_ids")}
    retried = Counter()
    for client_id, send in sends.items():
        if not send.answered:
            reply = send_message(server, conversation_id, send, client_id)
            assert reply.status in (200, 201), (client_id, reply.status, reply.body)
            retried[reply.status] += 1
            if client_id in caught:  # it was waiting for the lock when the database went away
                assert reply.status == 201, f"{client_id} was stored although its transaction was cut off"
    assert retried[201] >= len(caught) >= 4
    # A retry of a stored send returns the original.
    client_id, send = next((c, s) for c, s in sends.items() if 201 in s.statuses)
    assert send_message(server, conversation_id, send, client_id).status == 200

    check_database(stack, conversation_id, sends, created, people)
    print(f"\n[outage {stack.db.kind}] {len(sends)} sends, retries {dict(retried)}, "
          f"{len(created)} groups created; {report}")
