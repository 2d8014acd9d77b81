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
        conversation = Conversation.objects.create(created_by=members[0])
        ConversationMembership.objects.bulk_create(
            [ConversationMembership(conversation=conversation, user=p) for p in members], batch_size=1000
        )
        made[size] = (str(conversation.pk), [str(AccessToken.for_user(p)) for p in members])
    return made


async def measure_one(server: str, conversation: str, tokens: list[str], sends: int, rate: float,
                      timeout: float = 10.0) -> dict:
    url = urlparse(server)
    ws_url = f"ws://{url.netloc}/ws/"
    sent_at: dict[str, float] = {}  # client_id -> when its POST started
    delays: list[float] = []
    received: dict[int, dict[str, int]] = {}  # socket -> client_id -> times received
    gaps = 0

    async def open_socket(token: str):
        ws = await connect(ws_url, open_timeout=30, max_queue=None)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if reply.get("type") != "auth.ok":
            raise RuntimeError(f"WebSocket authentication failed: {reply}")
        await ws.send(json.dumps({"type": "ping"}))  # live events from now (no resume)
        return ws, reply["last_event_id"]

    async def reader(number: int, ws, position: int) -> None:
        nonlocal gaps
        counts = received[number] = {}
        async for raw in ws:
            frame = json.loads(raw)
            event_id = frame.get("event_id")
            if event_id is None:
                continue
            if event_id != position + 1:
                gaps += 1
            position = max(position, event_id)
            if frame.get("type") == "message.created":
                client_id = frame["message"].get("client_id")
                if client_id in sent_at:
                    counts[client_id] = counts.get(client_id, 0) + 1
                    if counts[client_id] == 1:
                        delays.append(time.perf_counter() - sent_at[client_id])

    sockets = []
    for start in range(0, len(tokens), 50):  # authenticate in bursts of 50
        sockets += await asyncio.gather(*(open_socket(t) for t in tokens[start:start + 50]))
    readers = [asyncio.create_task(reader(i, ws, position)) for i, (ws, position) in enumerate(sockets)]

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
        sent_at[client_id] = t0 = time.perf_counter()
        status = await asyncio.to_thread(post, json.dumps({"message_body": f"fan-out {n}", "client_id": client_id}))
        send_times.append(time.perf_counter() - t0)
        if status != 201:
            failed += 1
    expected = len(sockets) * (sends - failed)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and len(delays) < expected:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # late duplicates
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    http_conn.close()
    duplicated = sum(count - 1 for counts in received.values() for count in counts.values() if count > 1)
    return {
        "participants": len(tokens),
        "sends": sends,
        "failed_sends": failed,
        "send_p50_ms": round(1000 * statistics.median(send_times), 1),
        "send_p99_ms": round(1000 * percentile(send_times, 99), 1),
        "delivered": len(delays),
        "expected": expected,
        "lost": expected - len(delays),
        "duplicated": duplicated,
        "gaps": gaps,
        "delivery_p50_ms": round(1000 * statistics.median(delays), 1) if delays else None,
        "delivery_p99_ms": round(1000 * percentile(delays, 99), 1) if delays else None,
    }


async def measure(server: str, made: dict[int, tuple[str, list[str]]], sends: int, rate: float) -> list[dict]:
    rows = []
    for size, (conversation, tokens) in sorted(made.items()):
        rows.append(await measure_one(server, conversation, tokens, sends, rate))
    return rows
