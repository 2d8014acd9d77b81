"""
WebSocket delivery latency: from the start of a REST send (POST
/api/conversations/{id}/messages/) to the receipt of its `message.created` event by
the other participant, connected with several sockets (so that with several server
workers the event also crosses workers through Redis). Sends go one at a time.

    .venv/bin/python -m bench.ws_latency --server http://127.0.0.1:8765 --conversation ID \\
        --sender-token JWT --recipient-token JWT [--sends 200] [--sockets 4]
"""
import argparse
import asyncio
import http.client
import json
import math
import statistics
import time
import uuid
from urllib.parse import urlparse

from websockets.asyncio.client import connect


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


async def measure(server: str, conversation: str, sender_token: str, recipient_token: str,
                  sends: int = 200, sockets: int = 4, timeout: float = 5.0) -> dict:
    url = urlparse(server)
    ws_url = f"ws://{url.netloc}/ws/"
    pending: dict[str, dict] = {}  # client_id -> {"t0", "got": {socket: seconds}, "done": Event}

    async def reader(number: int, ws) -> None:
        async for frame in ws:
            event = json.loads(frame)
            if event.get("type") != "message.created":
                continue
            probe = pending.get(event["message"].get("client_id"))
            if probe is not None:
                probe["got"][number] = time.perf_counter() - probe["t0"]
                if len(probe["got"]) == sockets:
                    probe["done"].set()

    connections = []
    for _ in range(sockets):
        ws = await connect(ws_url, open_timeout=10)
        await ws.send(json.dumps({"type": "auth", "token": recipient_token}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if reply.get("type") != "auth.ok":
            raise RuntimeError(f"WebSocket authentication failed: {reply}")
        # A client's first frame starts live events at once (else they wait up to a second for a resume).
        await ws.send(json.dumps({"type": "ping"}))
        connections.append(ws)
    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(connections)]

    http_conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    path = f"/api/conversations/{conversation}/messages/"
    headers = {"Authorization": f"Bearer {sender_token}", "Content-Type": "application/json"}

    def post(body: str) -> int:
        http_conn.request("POST", path, body=body, headers=headers)
        response = http_conn.getresponse()
        response.read()
        return response.status

    run = uuid.uuid4().hex[:8]
    latencies, rest, missing = [], [], 0
    try:
        for i in range(sends):
            client_id = f"ws-{run}-{i}"
            probe = pending[client_id] = {"t0": time.perf_counter(), "got": {}, "done": asyncio.Event()}
            status = await asyncio.to_thread(post, json.dumps({"message_body": f"latency probe {i}",
                                                               "client_id": client_id}))
            rest.append(time.perf_counter() - probe["t0"])
            if status != 201:
                raise RuntimeError(f"send answered {status}")
            try:
                await asyncio.wait_for(probe["done"].wait(), timeout)
            except asyncio.TimeoutError:
                pass
            missing += sockets - len(probe["got"])
            latencies += probe["got"].values()
            del pending[client_id]
            await asyncio.sleep(0.01)
    finally:
        for task in readers:
            task.cancel()
        for ws in connections:
            await ws.close()
        http_conn.close()
    ms = [v * 1000 for v in latencies]
    return {
        "sends": sends,
        "sockets": sockets,
        "deliveries": len(ms),
        "missing": missing,
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(percentile(ms, 99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
        "rest_p50_ms": round(statistics.median(rest) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--conversation", required=True)
    parser.add_argument("--sender-token", required=True)
    parser.add_argument("--recipient-token", required=True)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(measure(args.server, args.conversation, args.sender_token, args.recipient_token,
                                 args.sends, args.sockets))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
