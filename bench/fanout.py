"""
Fan-out: one conversation of N people, every one of them connected (one socket each), one of them
sending through REST at a steady rate. For each N: how long the send takes (REST, p50/p99), how
long until each participant's socket has the `message.created` (p50/p99 over every recipient and
send), and how many deliveries were lost, duplicated or out of order (each socket checks that its
event ids go up by exactly one).

The conversations are written straight into the bench database (`setup`), past the API's
participant limit: what is measured is the delivery of messages, whose event is the same for every
recipient.

    .venv/bin/python -m bench.fanout  # run by bench.run, against its server
"""
import asyncio
import http.client
import json
import math
import statistics
import time
import uuid
from urllib.parse import urlparse

from websockets.asyncio.client import connect

EMAIL = "bench-fan-{:04d}@bench.invalid"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)] if ordered else float("nan")


def setup(sizes: list[int]) -> dict[int, tuple[str, list[str]]]:
    """{N: (conversation id, [access JWT of each participant, the sender first])}, made in the bench database."""
    from django.contrib.auth.hashers import make_password
    from rest_framework_simplejwt.tokens import AccessToken

    from chats.models import Conversation, ConversationMembership, EventStream, User

    largest = max(sizes)
    existing = set(User.objects.filter(email__startswith="bench-fan-").values_list("email", flat=True))
    password = make_password(None)
    missing = [User(email=EMAIL.format(i), first_name="Fan", last_name=str(i), password=password)
               for i in range(largest) if EMAIL.format(i) not in existing]
    User.objects.bulk_create(missing, batch_size=1000)
    people = list(User.objects.filter(email__in=[EMAIL.format(i) for i in range(largest)]).order_by("email"))
    EventStream.objects.bulk_create([EventStream(user_id=p.pk) for p in people], ignore_conflicts=True)
    made = {}
    for size in sizes:
        members = people[:size]
        # As the services keep it: large conversations' events are queued by it (chats/events.py).
        conversation = Conversation.objects.create(created_by=members[0], participant_count=len(members))
        ConversationMembership.objects.bulk_create(
            [ConversationMembership(conversation=conversation, user=p) for p in members], batch_size=1000
        )
        made[size] = (str(conversation.pk), [str(AccessToken.for_user(p)) for p in members])
    return made


class Deliveries:
    """What the sockets of a run received of the messages it sent (by client_id): delays, duplicates, gaps."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}  # client_id -> when its POST started
        self.delays: list[float] = []  # first receipt on each socket, from the start of the send
        self.received: dict[int, dict[str, int]] = {}  # socket -> client_id -> times received
        self.gaps = 0  # event ids that did not follow the previous one on their socket

    async def read(self, number: int, ws, position: int) -> None:
        counts = self.received[number] = {}
        async for raw in ws:
            frame = json.loads(raw)
            event_id = frame.get("event_id")
            if event_id is None:
                continue
            if event_id != position + 1:
                self.gaps += 1
            position = max(position, event_id)
            if frame.get("type") == "message.created":
                client_id = frame["message"].get("client_id")
                if client_id in self.sent_at:
                    counts[client_id] = counts.get(client_id, 0) + 1
                    if counts[client_id] == 1:
                        self.delays.append(time.perf_counter() - self.sent_at[client_id])

    def duplicated(self) -> int:
        return sum(count - 1 for counts in self.received.values() for count in counts.values() if count > 1)


async def open_socket(ws_url: str, token: str):
    """An authenticated socket with live events flowing (a ping, no resume), and its position."""
    ws = await connect(ws_url, open_timeout=60, max_queue=None, ping_interval=None)
    await ws.send(json.dumps({"type": "auth", "token": token}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
    if reply.get("type") != "auth.ok":
        raise RuntimeError(f"WebSocket authentication failed: {reply}")
    await ws.send(json.dumps({"type": "ping"}))
    return ws, reply["last_event_id"]


async def open_many(ws_url: str, tokens: list[str], burst: int = 50) -> list:
    """Sockets for these tokens, authenticating `burst` at a time."""
    sockets = []
    for start in range(0, len(tokens), burst):
        sockets += await asyncio.gather(*(open_socket(ws_url, t) for t in tokens[start:start + burst]))
    return sockets


async def measure_one(server: str, conversation: str, tokens: list[str], sends: int, rate: float,
                      timeout: float = 10.0) -> dict:
    url = urlparse(server)
    ws_url = f"ws://{url.netloc}/ws/"
    seen = Deliveries()
    sockets = await open_many(ws_url, tokens)
    readers = [asyncio.create_task(seen.read(i, ws, position)) for i, (ws, position) in enumerate(sockets)]

    http_conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    path = f"/api/conversations/{conversation}/messages/"
    headers = {"Authorization": f"Bearer {tokens[0]}", "Content-Type": "application/json"}

    def post(body: str) -> int:
        http_conn.request("POST", path, body=body, headers=headers)
        response = http_conn.getresponse()
        response.read()
        return response.status

    send_times, failed = [], 0
    started = time.perf_counter()
    for n in range(sends):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        client_id = str(uuid.uuid4())
        seen.sent_at[client_id] = t0 = time.perf_counter()
        status = await asyncio.to_thread(post, json.dumps({"message_body": f"fan-out {n}", "client_id": client_id}))
        send_times.append(time.perf_counter() - t0)
        if status != 201:
            failed += 1
    expected = len(sockets) * (sends - failed)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and len(seen.delays) < expected:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # late duplicates
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    http_conn.close()
    return {
        "participants": len(tokens),
        "sends": sends,
        "failed_sends": failed,
        "send_p50_ms": round(1000 * statistics.median(send_times), 1),
        "send_p99_ms": round(1000 * percentile(send_times, 99), 1),
        "send_ms": [round(1000 * t, 1) for t in send_times],  # each send, in order
        **summary(seen, expected),
    }


def summary(seen: Deliveries, expected: int) -> dict:
    delays = seen.delays
    return {
        "delivered": len(delays),
        "expected": expected,
        "lost": expected - len(delays),
        "duplicated": seen.duplicated(),
        "gaps": seen.gaps,
        "delivery_p50_ms": round(1000 * statistics.median(delays), 1) if delays else None,
        "delivery_p99_ms": round(1000 * percentile(delays, 99), 1) if delays else None,
    }


async def measure(server: str, made: dict[int, tuple[str, list[str]]], sends: int, rate: float) -> list[dict]:
    rows = []
    for size, (conversation, tokens) in sorted(made.items()):
        rows.append(await measure_one(server, conversation, tokens, sends, rate))
    return rows
