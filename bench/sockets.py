"""
Many sockets at once (issue 14's targets), against bench.run's server:

- **load**: `groups` conversations of `members` people, every member connected by one socket,
  messages sent through REST at `rate` per second in all (spread over the conversations, by
  their first members): deliveries lost, duplicated or out of sequence, and delivery p50/p99 from
  the start of the send. Target: 20 sends/s over 20 conversations of 25: 0 lost, p99 under 1 s.
- **idle**: `sockets` authenticated sockets (several per person, up to the per-user cap) held
  `seconds`: how many the server closed, its memory per socket, one message still reaching a
  socket at the end; then all of them closed at once, and the errors the server logged meanwhile.
"""
import asyncio
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse


from bench.fanout import Deliveries, open_many, setup, summary


def _poster(server: str):
    import http.client

    url = urlparse(server)
    local = {}

    def post(path: str, token: str, body: dict) -> int:
        conn = local.get(token)
        if conn is None:
            conn = local[token] = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status

    return post


def prepare_load(groups: int = 20, members: int = 25) -> list[tuple[str, list[str]]]:
    """`groups` conversations of `members` bench people: [(conversation id, their tokens)]."""
    from chats.models import Conversation, ConversationMembership

    made = setup([groups * members])  # the people (in one conversation of all of them, unused)
    conversation_all, tokens = made[groups * members]
    people = list(
        ConversationMembership.objects.filter(conversation_id=conversation_all)
        .order_by("user__email").values_list("user_id", flat=True)
    )
    conversations = []
    for g in range(groups):
        ids = people[g * members:(g + 1) * members]
        conversation = Conversation.objects.create(created_by_id=ids[0], participant_count=len(ids))
        ConversationMembership.objects.bulk_create(
            [ConversationMembership(conversation=conversation, user_id=i) for i in ids]
        )
        conversations.append((str(conversation.pk), tokens[g * members:(g + 1) * members]))
    return conversations


async def load(server: str, conversations: list[tuple[str, list[str]]], rate: float = 20.0, seconds: float = 30.0,
               timeout: float = 10.0) -> dict:
    groups, members = len(conversations), len(conversations[0][1])
    ws_url = f"ws://{urlparse(server).netloc}/ws/"
    seen = Deliveries()
    sockets = await open_many(ws_url, [t for _, group in conversations for t in group], burst=100)
    readers = [asyncio.create_task(seen.read(i, ws, position)) for i, (ws, position) in enumerate(sockets)]
    post = _poster(server)
    sends = int(rate * seconds)
    failed = 0
    in_flight = set()
    started = time.perf_counter()

    async def one(n: int) -> None:
        nonlocal failed
        conversation, group = conversations[n % groups]
        client_id = str(uuid.uuid4())
        seen.sent_at[client_id] = time.perf_counter()
        status = await asyncio.to_thread(post, f"/api/conversations/{conversation}/messages/", group[0],
                                         {"message_body": f"load {n}", "client_id": client_id})
        if status != 201:
            failed += 1

    for n in range(sends):  # open loop: each send at its time, whatever the previous ones do
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        task = asyncio.create_task(one(n))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    achieved = sends / (time.perf_counter() - started)
    expected = members * (sends - failed)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and len(seen.delays) < expected:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    return {"groups": groups, "members": members, "rate": rate, "achieved_rate": round(achieved, 1),
            "sends": sends, "failed_sends": failed, **summary(seen, expected)}


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def prepare_idle(sockets: int = 5000, per_person: int = 5) -> tuple[str, list[str]]:
    """One conversation of sockets / per_person bench people: (its id, their tokens)."""
    people = -(-sockets // per_person)
    return setup([people])[people]


async def idle(server: str, worker_pids: list[int], log_path: Path, conversation: str, tokens: list[str],
               sockets: int = 5000, seconds: float = 600.0) -> dict:
    people = len(tokens)
    ws_url = f"ws://{urlparse(server).netloc}/ws/"
    log_before = log_path.stat().st_size if log_path.exists() else 0
    rss_before = _rss_kib(worker_pids)
    opened_at = time.perf_counter()
    held = await open_many(ws_url, [tokens[i % people] for i in range(sockets)], burst=100)
    open_seconds = time.perf_counter() - opened_at
    await asyncio.sleep(2)
    rss_open = _rss_kib(worker_pids)
    closed_early = reached = 0

    async def watch(ws) -> None:
        nonlocal closed_early, reached
        try:
            async for raw in ws:
                if json.loads(raw).get("type") == "message.created":
                    reached += 1
        except Exception:  # noqa: BLE001 - any way it ends counts
            pass
        closed_early += 1

    watchers = [asyncio.create_task(watch(ws)) for ws, _ in held]
    await asyncio.sleep(seconds)
    dropped = closed_early
    # Everyone is in one conversation: one message still reaches every socket.
    post = _poster(server)
    sent = time.perf_counter()
    status = await asyncio.to_thread(post, f"/api/conversations/{conversation}/messages/", tokens[1],
                                     {"message_body": "still there?"})
    while reached < sockets - dropped and time.perf_counter() - sent < 30:
        await asyncio.sleep(0.1)
    reach_seconds = time.perf_counter() - sent
    for task in watchers:
        task.cancel()
    closing_at = time.perf_counter()
    await asyncio.gather(*(ws.close() for ws, _ in held), return_exceptions=True)
    close_seconds = time.perf_counter() - closing_at
    await asyncio.sleep(5)  # the server's disconnect handling (slot releases, presence) settles
    log = log_path.read_bytes()[log_before:].decode(errors="replace") if log_path.exists() else ""
    errors = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
    return {
        "sockets": sockets, "people": people, "seconds": seconds, "open_seconds": round(open_seconds, 1),
        "dropped": dropped, "send_status": status, "reached": reached, "reach_seconds": round(reach_seconds, 1),
        "server_kib_per_socket": round((rss_open - rss_before) / sockets, 1),
        "close_seconds": round(close_seconds, 1), "server_errors": len(errors), "first_error": errors[:1],
    }
