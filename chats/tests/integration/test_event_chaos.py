"""
Chaos on the event stream: clients drop their sockets at random and resume, while others send,
edit, delete, read, add and remove members, all on the production server (gunicorn, two worker
processes) with Redis between them, on MariaDB and on PostgreSQL (private servers,
databases.py). At the end:

- every client received each of its events exactly once, in order: the `event_id`s it saw,
  across all its reconnects, are 1, 2, 3... up to where its stream stands (0 lost, 0
  duplicated, 0 out of order);
- the state each client rebuilt only from those events (its conversations, their participants,
  message counts and last messages, and every message it was told about) is what REST returns
  to that user.

CHAOS_SECONDS (default 20) sets how long the writes go on.
"""
import json
import os
import random
import threading
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from chats.tests.integration.databases import KINDS, app_on_private_database
from chats.tests.integration.servers import Server, api, call, register

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("CHAOS_SECONDS", "20"))
NAMES = ["Ann", "Ben", "Cat", "Dan", "Eve"]
REDIS_URL = os.environ.get("INTEGRATION_CHAOS_REDIS_URL", "redis://127.0.0.1:6379/6")


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(params=sorted(KINDS))
def server(request):
    flush(REDIS_URL)
    settings = {
        "REDIS_URL": REDIS_URL,
        # The writes below are far above the per-user rate limits, which are not under test.
        "THROTTLE_USER": "100000/min",
        "THROTTLE_SEND": "100000/min",
    }
    try:
        with app_on_private_database(request.param, "chaos", "chaos", **settings) as (_db, app):
            yield app
    finally:
        flush(REDIS_URL)


# --- a client that drops and resumes -----------------------------------------------------
class Client(threading.Thread):
    """One user's socket, closed at random and reopened with `resume` from its last event."""

    def __init__(self, server: Server, user: dict, seed: int):
        super().__init__(daemon=True, name=f"client-{user['name']}")
        self.server, self.user = server, user
        self.random = random.Random(seed)
        self.position = 0  # the last event_id received
        self.frames: list[dict] = []  # every event frame, in the order received
        self.problems: list[str] = []
        self.reconnects = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                self._session(lifetime=self.random.uniform(0.2, 2.0))
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
                pass  # a drop the client did not choose: reconnect all the same
            self.reconnects += 1
            time.sleep(self.random.uniform(0, 0.3))

    def _session(self, lifetime: float, until_position: int | None = None):
        deadline = time.monotonic() + lifetime
        with connect(self.server.ws_url, open_timeout=10) as socket:
            socket.send(json.dumps({"type": "auth", "token": self.user["token"]}))
            self._expect(socket, "auth.ok")
            socket.send(json.dumps({"type": "resume", "since": self.position}))
            while time.monotonic() < deadline:
                if until_position is not None and self.position >= until_position:
                    return
                try:
                    frame = json.loads(socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
                except TimeoutError:
                    return
                self._take(frame)

    def _expect(self, socket, kind: str):
        frame = json.loads(socket.recv(timeout=10))
        if frame.get("type") != kind:
            raise AssertionError(f"{self.user['name']}: expected {kind}, got {frame}")

    def _take(self, frame: dict):
        if "event_id" not in frame:
            if frame.get("type") == "error":
                self.problems.append(f"error frame {frame}")
            return  # resumed, typing
        if frame["event_id"] != self.position + 1:
            self.problems.append(f"event {frame['event_id']} after {self.position}")
        self.position = max(self.position, frame["event_id"])
        self.frames.append(frame)

    def finish(self, stream_position: int):
        """A last session until every event up to `stream_position` has come."""
        self.stopping.set()
        self.join(30)
        assert not self.is_alive()
        self._session(lifetime=30, until_position=stream_position)


# --- the state a client rebuilds from its events -------------------------------------------
def rebuild(frames: list[dict]) -> tuple[dict, dict]:
    """({conversation_id: {"participants", "message_count", "last_message"}}, {message_id: message})."""
    conversations, messages = {}, {}
    for frame in frames:
        kind, conversation_id = frame["type"], frame["conversation_id"]
        if kind in ("conversation.created", "conversation.updated"):
            body = frame["conversation"]
            conversations[conversation_id] = {
                "participants": sorted(p["user_id"] for p in body["participants"]),
                "message_count": body["message_count"],
                "last_message": body["last_message"],
            }
        elif kind == "conversation.removed":
            # Gone, with what the client knew of its messages: changes made while they are out
            # reach nobody outside, so a client that comes back relearns only from new events.
            conversations.pop(conversation_id, None)
            messages = {k: m for k, m in messages.items() if m["conversation"] != conversation_id}
        elif kind.startswith("message."):
            message = frame["message"]
            messages[message["message_id"]] = message
            state = conversations.get(conversation_id)
            if state is None:
                continue
            if kind == "message.created":
                state["message_count"] += 1
                state["last_message"] = message
            elif state["last_message"] and state["last_message"]["message_id"] == message["message_id"]:
                state["last_message"] = message
    return conversations, messages


def rest_state(server: Server, token: str) -> dict:
    conversations, path = {}, "/api/conversations/?page_size=100"
    while path:
        _, page = api(server, "GET", path, token=token, expect=200)
        for body in page["results"]:
            conversations[body["conversation_id"]] = {
                "participants": sorted(p["user_id"] for p in body["participants"]),
                "message_count": body["message_count"],
                "last_message": body["last_message"],
            }
        path = page["next"] and page["next"].split(server.base_url, 1)[1]
    return conversations


# --- the writes ----------------------------------------------------------------------------
class Writer:
    """Random writes by random users; 4xx answers are part of the game (not yours, gone, ...)."""

    def __init__(self, server: Server, users: list[dict], groups: list[str], seed: int):
        self.server, self.users, self.groups = server, users, groups
        self.random = random.Random(seed)
        self.sent: dict[str, list[str]] = {u["user_id"]: [] for u in users}  # user -> their message ids
        self.conversations = list(groups)
        self.errors: list[str] = []
        self.writes = 0

    def call(self, user, method, path, body=None):
        reply = call(self.server, method, path, body, user["token"])
        self.writes += 1
        if reply.status >= 500:
            self.errors.append(f"{method} {path}: {reply.status} {reply.body}")
        return reply

    def step(self):
        user = self.random.choice(self.users)
        action = self.random.choices(
            ["send", "edit", "delete", "read", "add", "remove"], weights=[10, 3, 2, 3, 3, 2]
        )[0]
        conversation = self.random.choice(self.conversations)
        base = f"/api/conversations/{conversation}"
        if action == "send":
            reply = self.call(user, "POST", f"{base}/messages/", {"message_body": f"m-{uuid.uuid4().hex[:8]}"})
            if reply.status == 201:
                self.sent[user["user_id"]].append(reply.body["message_id"])
        elif action in ("edit", "delete") and self.sent[user["user_id"]]:
            message_id = self.random.choice(self.sent[user["user_id"]])
            if action == "edit":
                self.call(user, "PATCH", f"/api/messages/{message_id}/", {"message_body": f"e-{uuid.uuid4().hex[:8]}"})
            else:
                self.call(user, "DELETE", f"/api/messages/{message_id}/")
        elif action == "read":
            self.call(user, "POST", f"{base}/read/", {})
        elif action == "add" and conversation in self.groups:
            other = self.random.choice(self.users)
            for adder in self.random.sample(self.users, len(self.users)):  # the first who is a member
                if self.call(adder, "POST", f"{base}/participants/", {"user_id": other["user_id"]}).status != 404:
                    break
        elif action == "remove" and conversation in self.groups:
            self.call(user, "DELETE", f"{base}/participants/{user['user_id']}/")  # leaving


def test_every_client_sees_every_event_once_in_order_and_rebuilds_what_rest_shows(server):
    users = [register(server, name) for name in NAMES]
    clients = [Client(server, user, seed) for seed, user in enumerate(users)]
    for client in clients:
        client.start()
    ids = [u["user_id"] for u in users]
    ann, ben, cat = users[0], users[1], users[2]
    _, g1 = api(server, "POST", "/api/conversations/", {"participants": ids[1:]}, token=ann["token"], expect=201)
    _, g2 = api(server, "POST", "/api/conversations/", {"participants": ids[2:]}, token=ben["token"], expect=201)
    _, d1 = api(server, "POST", "/api/conversations/", {"participants": [ids[3]]}, token=cat["token"], expect=201)
    writer = Writer(server, users, [g1["conversation_id"], g2["conversation_id"]], seed=42)
    writer.conversations.append(d1["conversation_id"])

    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        writer.step()
    assert writer.errors == []

    for client in clients:
        _, stream = api(server, "GET", "/api/events/", token=client.user["token"], expect=200)
        client.finish(stream["last_event_id"])
        received = [frame["event_id"] for frame in client.frames]
        name = client.user["name"]
        assert client.problems == [], f"{name}: {client.problems[:5]}"
        assert received == list(range(1, stream["last_event_id"] + 1)), f"{name}: lost, duplicated or reordered"
        assert client.reconnects >= 3, f"{name} reconnected only {client.reconnects} times"

        conversations, messages = rebuild(client.frames)
        assert conversations == rest_state(server, client.user["token"]), name
        for message_id, message in messages.items():
            if message["conversation"] not in conversations:
                continue  # no longer theirs: REST answers 404, and no event told them more
            _, current = api(server, "GET", f"/api/messages/{message_id}/", token=client.user["token"], expect=200)
            assert current == message, f"{name}: {message_id}"
    print(f"chaos: {writer.writes} writes in {SECONDS:.0f} s; events per client "
          f"{[len(c.frames) for c in clients]}; reconnects {[c.reconnects for c in clients]}")
