"""
The benchmark: generate (or reuse) the dataset, serve the app as in production
(gunicorn + uvicorn workers, DEBUG off, MariaDB, Redis), drive every scenario with wrk
at a fixed concurrency for a fixed time, and write bench/results/latest.{json,md}.

    .venv/bin/python -m bench.run [--quick] [--workers 2] [--concurrency 16] [--duration 30] [--strict]

Every option can also come from the environment as BENCH_<OPTION> (BENCH_QUICK=1,
BENCH_WORKERS=4, BENCH_DATABASE_URL=...). The throughput of each scenario is compared
with two floors measured in the same run on the same pinned CPU:
- our own floor (GET /api/ping/: authentication and nothing else) on the same server, just
  before and just after the scenario;
- the bare Django view (bench/floor/: a fresh startproject's middleware, no database) under
  gunicorn sync workers, measured before and after the app, beside the raw ASGI app and the
  bare view under uvicorn (bench.floor: what the server stack and ASGI cost).
Each load run also counts the new MariaDB and Redis connections it caused per request (their
global counters before and after, read over connections this process keeps open).
A scenario whose single request takes longer than half the run time is reported from that
one request, not loaded. Exit status 0 whatever the targets say, unless --strict (the
scenario targets) or --strict-serving (also the serving-cost targets of issue 13).
"""
import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "lua" / "requests.lua"
DB_URL = "mysql://root@127.0.0.1:3306/messaging_bench"

MODES = {
    "full": dict(users=1000, conversations_per_user=20, messages_per_conversation=50, long_messages=1_000_000,
                 duration=30, warmup=3, ws_sends=300, fanout_sends=60, load_seconds=30, idle_sockets=5000,
                 idle_seconds=600, database_url=DB_URL),
    "quick": dict(users=200, conversations_per_user=20, messages_per_conversation=20, long_messages=100_000,
                  duration=5, warmup=0, ws_sends=50, fanout_sends=6, load_seconds=10, idle_sockets=1000,
                  idle_seconds=20, database_url=DB_URL + "_quick"),
}
# The reference floors: (name, what it is, gunicorn application, gunicorn options beyond gunicorn.conf.py).
FLOORS = [
    ("asgi_raw", "raw ASGI app answering JSON, gunicorn + uvicorn workers", "bench.floor.hello:app", []),
    ("django_wsgi", "bare Django JSON view, gunicorn sync workers (WSGI)", "bench.floor.wsgi:application",
     ["--worker-class", "sync"]),
    ("django_asgi", "bare Django JSON view, gunicorn + uvicorn workers (Django's ASGI handler)",
     "bench.floor.asgi:application", []),
    ("django_pool", "bare Django JSON view, gunicorn + uvicorn workers, WSGI handler on wsgi_pool.py's threads "
     "(production's HTTP serving)", "bench.floor.pool:application", []),
]
REFERENCE = "django_wsgi"  # the floor every scenario is also a share of (issue 13's targets)
ROTATE_USERS = 100  # the users whose tokens the generic scenarios rotate through
SLOW_SECONDS = 0.25
STARTED = time.monotonic()


def log(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {text}", flush=True)


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=env("BENCH_QUICK", "") not in ("", "0"),
                        help="small dataset (100k-message long conversation), 5 s per scenario")
    for name, kind in [("users", int), ("conversations-per-user", int), ("messages-per-conversation", int),
                       ("long-messages", int), ("duration", int), ("warmup", int), ("ws-sends", int),
                       ("fanout-sends", int), ("database-url", str)]:
        key = name.replace("-", "_")
        parser.add_argument(f"--{name}", type=kind, default=env("BENCH_" + key.upper()),
                            help=f"default {MODES['full'][key]} (quick: {MODES['quick'][key]})")
    parser.add_argument("--redis-url", default=env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"))
    parser.add_argument("--workers", type=int, default=int(env("BENCH_WORKERS", "2")), help="gunicorn workers")
    parser.add_argument("--concurrency", type=int, default=int(env("BENCH_CONCURRENCY", "16")),
                        help="wrk connections")
    parser.add_argument("--conn-max-age", type=int, default=env("BENCH_CONN_MAX_AGE"),
                        help="DJANGO_CONN_MAX_AGE of the server (default: production's, settings.py)")
    parser.add_argument("--settings", default=env("BENCH_SETTINGS", "messaging_app.settings"),
                        help="Django settings module of the server and of this process (to try a change)")
    parser.add_argument("--port", type=int, default=int(env("BENCH_PORT", "8765")))
    parser.add_argument("--only", default=env("BENCH_ONLY", ""), help="comma-separated scenarios (floor always runs)")
    parser.add_argument("--fanout-sizes", default=env("BENCH_FANOUT_SIZES", "2,100,1000"),
                        help="participants (all connected) of the fan-out conversations; empty: no fan-out run")
    parser.add_argument("--fanout-rate", type=float, default=float(env("BENCH_FANOUT_RATE", "2")),
                        help="sends per second into each fan-out conversation")
    parser.add_argument("--load-seconds", type=float, default=env("BENCH_LOAD_SECONDS"),
                        help="seconds of the socket load run (20 sends/s over 20 conversations of 25; 0: none)")
    parser.add_argument("--idle-sockets", type=int, default=env("BENCH_IDLE_SOCKETS"),
                        help="idle authenticated sockets held, then closed at once (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=env("BENCH_IDLE_SECONDS"),
                        help="how long the idle sockets are held")
    parser.add_argument("--fill-only", action="store_true", help="generate (or check) the dataset, then stop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin wrk and the server to separate CPUs")
    parser.add_argument("--no-floors", action="store_true", default=env("BENCH_NO_FLOORS", "") not in ("", "0"),
                        help="skip the reference floors (raw ASGI, bare Django): no share of the bare Django view")
    parser.add_argument("--strict", action="store_true", default=env("BENCH_STRICT", "") not in ("", "0"),
                        help="exit 1 if a scenario target fails")
    parser.add_argument("--strict-serving", action="store_true",
                        default=env("BENCH_STRICT_SERVING", "") not in ("", "0"),
                        help="exit 1 if a scenario target or a serving-cost target (issue 13) fails")
    args = parser.parse_args()
    args.mode = "quick" if args.quick else "full"
    for key, value in MODES[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def server_env(args, secret: str) -> dict:
    """Production settings (DEBUG off), plain HTTP on localhost, throttling out of the way."""
    extra = {} if args.conn_max_age is None else {"DJANGO_CONN_MAX_AGE": str(args.conn_max_age)}
    return {
        **extra,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secret,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "THROTTLE_USER": "1000000/min",
        "THROTTLE_ANON": "1000000/min",
        "THROTTLE_SEND": "1000000/min",
        "THROTTLE_LOGIN": "1000000/min",
        "THROTTLE_REGISTER": "1000000/hour",
        "JWT_ACCESS_MINUTES": "240",
        "GUNICORN_WORKERS": str(args.workers),
        "GUNICORN_BIND": f"127.0.0.1:{args.port}",
        "GUNICORN_LOG_LEVEL": "warning",
        "DJANGO_SETTINGS_MODULE": args.settings,
    }


# --- Scenarios --------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    title: str
    kind: str  # "read" or "write"
    requests: list = field(default_factory=list)  # (method, path, token or "-", body or "-")
    # Requests that take a good fraction of a second (password hashing, or any scenario whose
    # single request took over SLOW_SECONDS): at full concurrency hardly any would finish
    # within the run, so these use 2 connections per worker, without warm-up.
    slow: bool = False

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.name}.tsv"
        path.write_text("".join("\t".join(r) + "\n" for r in self.requests))
        return path


def build_scenarios(info: dict) -> list[Scenario]:
    from rest_framework_simplejwt.tokens import AccessToken

    from bench.dataset import PASSWORD
    from chats.models import ConversationMembership, User

    rng = random.Random(7)
    users = list(User.objects.filter(email__startswith="bench-u").order_by("email")[:ROTATE_USERS])
    token = {str(u.pk): str(AccessToken.for_user(u)) for u in users}
    owner, long, medium = info["owner"], info["long"], info["medium"]
    for user_id in (owner, long["partner"], medium["partner"]):
        token[user_id] = str(AccessToken.for_user(User.objects.get(pk=user_id)))
    pairs = [
        (str(u), str(c))
        for u, c in ConversationMembership.objects.filter(user__in=users)
        .exclude(conversation_id__in=[long["id"], medium["id"]])
        .values_list("user_id", "conversation_id")
    ]
    rng.shuffle(pairs)
    pairs = pairs[:1000]
    tokens = [token[str(u.pk)] for u in users]
    # The inbox of people in neither big conversation (the page of a user of the 1M one is its own scenario).
    special = {owner, long["partner"], medium["partner"]}
    inbox_tokens = [token[str(u.pk)] for u in users if str(u.pk) not in special]

    def timeline(conversation: dict, query: str = "") -> list:
        path = f"/api/conversations/{conversation['id']}/messages/{query}"
        return [("GET", path, token[u], "-") for u in (owner, conversation["partner"])]

    send_body = json.dumps({"message_body": "Benchmark send: on my way, see you in ten minutes."})
    send_id_body = json.dumps({"message_body": "Benchmark send with a client_id.", "client_id": "bench-{uniq}"})
    register_body = json.dumps({"email": "bench-reg-{uniq}@bench.invalid", "password": PASSWORD,
                                "first_name": "Registered", "last_name": "Bench"})
    size_l, size_m = f"{long['messages']:,}", f"{medium['messages']:,}"
    return [
        Scenario("floor", "GET /api/ping/ (JWT only)", "read", [("GET", "/api/ping/", t, "-") for t in tokens]),
        Scenario("inbox", "GET /api/conversations/", "read",
                 [("GET", "/api/conversations/", t, "-") for t in inbox_tokens]),
        Scenario("inbox_1m", f"GET /api/conversations/ by the two people in the {size_l}-message conversation",
                 "read", [("GET", "/api/conversations/", token[u], "-") for u in (owner, long["partner"])]),
        Scenario("flat", "GET /api/messages/ (all of a user's conversations, newest first)", "read",
                 [("GET", "/api/messages/", t, "-") for t in inbox_tokens]),
        Scenario("flat_1m", f"GET /api/messages/ by the two people in the {size_l}-message conversation", "read",
                 [("GET", "/api/messages/", token[u], "-") for u in (owner, long["partner"])]),
        Scenario("newest", "GET /api/conversations/{id}/messages/ (newest page, many conversations)", "read",
                 [("GET", f"/api/conversations/{c}/messages/", token[u], "-") for u, c in pairs]),
        Scenario("history", f"?before=<cursor> 5%..95% deep in the {size_l}-message conversation (16 cursors)",
                 "read", [r for cursor in long["cursors"] for r in timeline(long, f"?before={cursor}")]),
        Scenario("newest_1k", f"newest page, {size_m}-message conversation", "read", timeline(medium)),
        Scenario("newest_1m", f"newest page, {size_l}-message conversation", "read", timeline(long)),
        Scenario("deep_1k", f"?before=<980th newest>: the page 1,000 deep, {size_m} messages", "read",
                 timeline(medium, f"?before={medium['deep_anchor']}")),
        Scenario("deep_1m", f"?before=<980th newest>: the page 1,000 deep, {size_l} messages", "read",
                 timeline(long, f"?before={long['deep_anchor']}")),
        Scenario("send", "POST /api/conversations/{id}/messages/", "write",
                 [("POST", f"/api/conversations/{c}/messages/", token[u], send_body) for u, c in pairs]),
        Scenario("send_client_id", "POST /api/conversations/{id}/messages/ with a fresh client_id", "write",
                 [("POST", f"/api/conversations/{c}/messages/", token[u], send_id_body) for u, c in pairs]),
        Scenario("register", "POST /api/users/ (password hashing)", "write",
                 [("POST", "/api/users/", "-", register_body)], slow=True),
        Scenario("token", "POST /api/token/ (password check)", "write",
                 [("POST", "/api/token/", "-", json.dumps({"email": u.email, "password": PASSWORD})) for u in users],
                 slow=True),
    ]


def count_queries(scenario: Scenario) -> tuple[int, float]:
    """
    SQL queries and seconds of one request of the scenario, in-process (the second of two, caches
    warm; the only one for slow scenarios).
    """
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    method, path, token, body = scenario.requests[0]
    headers = {} if token == "-" else {"Authorization": f"Bearer {token}"}
    for attempt in range(1 if scenario.slow else 2):
        data = "" if body == "-" else body.replace("{uniq}", f"inproc-{secrets.token_hex(4)}")
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            response = client.generic(method, path, data, content_type="application/json", headers=headers)
        seconds = time.perf_counter() - start
        if response.status_code not in (200, 201):
            raise SystemExit(f"{scenario.name}: {method} {path} answered {response.status_code}: "
                             f"{response.content[:300]!r}")
    return len(captured.captured_queries), seconds


# --- Server and load --------------------------------------------------------------


def pinning(args) -> tuple[list, list, str, str]:
    """taskset prefixes for wrk and the server: wrk on CPU 0, the server on the others."""
    cpus = os.cpu_count() or 1
    if args.no_pin or cpus < 2 or not shutil.which("taskset"):
        return [], [], "any", "any"
    server = "1" if cpus == 2 else f"1-{cpus - 1}"
    return ["taskset", "-c", "0"], ["taskset", "-c", server], "0", server


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("Installing wrk (apt-get)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def start_server(args, env: dict, prefix: list, log_path: Path, app: str = "messaging_app.asgi:application",
                 options: list = ()) -> subprocess.Popen:
    """gunicorn with gunicorn.conf.py (production's), `options` overriding it; waits for /readyz."""
    global IDLE_HEALTHZ
    IDLE_HEALTHZ = None  # each server has its own idle /healthz time
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            raise SystemExit(f"Port {args.port} is in use: pass --port or BENCH_PORT")
    log = open(log_path, "w")
    server = subprocess.Popen(
        prefix + [sys.executable, "-m", "gunicorn", *options, app],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server exited: see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"The server did not become ready: see {log_path}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()  # gunicorn's master: graceful shutdown of its workers
    try:
        server.wait(40)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def healthz_seconds(port: int, timeout: float = 60) -> float:
    start = time.monotonic()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout).read()
    except OSError:
        return timeout
    return time.monotonic() - start


def wait_idle(port: int, timeout: float = 60) -> None:
    """Wait until the server answers /healthz as fast as when idle: wrk's leftover requests are done."""
    global IDLE_HEALTHZ
    if IDLE_HEALTHZ is None:
        IDLE_HEALTHZ = sorted(healthz_seconds(port) for _ in range(7))[3]
    fast, deadline = 0, time.monotonic() + timeout
    while fast < 3 and time.monotonic() < deadline:
        fast = fast + 1 if healthz_seconds(port) < max(0.02, 3 * IDLE_HEALTHZ) else 0
        time.sleep(0.02)


IDLE_HEALTHZ = None


SERVER = None  # the gunicorn master (a Popen), checked after every wrk run
COUNTERS = None  # ConnectionCounters, read around every measured wrk run


class ConnectionCounters:
    """
    New connections the server made: MariaDB's `Connections` status counter and Redis's
    `total_connections_received`, read before and after a load run. Both are server-wide, so
    they are read over one connection each that this process keeps open (a reading opens
    nothing; a reconnect of our own is subtracted), and other work on the same MariaDB or
    Redis counts too: the reference floors, which touch neither, show that background.
    """

    def __init__(self, database_url: str, redis_url: str) -> None:
        import redis

        url = urlparse(database_url)
        self.db_params = None
        if url.scheme in ("mysql", "mariadb"):
            self.db_params = dict(host=url.hostname or "127.0.0.1", port=url.port or 3306,
                                  user=unquote(url.username or "root"), password=unquote(url.password or ""))
        self.db = None
        self.redis = redis.Redis.from_url(redis_url, single_connection_client=True)

    def _db_reading(self) -> tuple[int, int] | tuple[None, None]:
        import MySQLdb

        if self.db_params is None:
            return None, None
        for attempt in (1, 2):
            try:
                if self.db is None:
                    self.db = MySQLdb.connect(**self.db_params)
                cursor = self.db.cursor()
                cursor.execute("SELECT CONNECTION_ID()")
                own = cursor.fetchone()[0]
                cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
                return int(cursor.fetchone()[1]), own
            except MySQLdb.OperationalError:
                self.db = None
                if attempt == 2:
                    raise

    def read(self) -> dict:
        db, db_own = self._db_reading()
        redis_own = self.redis.client_id()
        return {"db": db, "db_own": db_own,
                "redis": self.redis.info("stats")["total_connections_received"], "redis_own": redis_own}

    @staticmethod
    def new(before: dict, after: dict) -> dict:
        """New connections between two readings, without the ones this process opened to read them."""
        new = {}
        for kind in ("db", "redis"):
            if before[kind] is None or after[kind] is None:
                new[kind] = None
            else:
                new[kind] = after[kind] - before[kind] - (before[kind + "_own"] != after[kind + "_own"])
        return new


def connections_row(new: dict, requests: int) -> dict:
    """The new database and Redis connections of a run ({"db": n, "redis": n}), in all and per request."""
    return {
        "new_db_connections": new["db"], "new_redis_connections": new["redis"],
        "db_connections_per_request": None if new["db"] is None else new["db"] / max(1, requests),
        "redis_connections_per_request": None if new["redis"] is None else new["redis"] / max(1, requests),
    }


def wrk(args, prefix: list, request_file: Path, seconds: int, run_id: str, connections: int) -> dict:
    command = prefix + [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
        "-s", str(LUA), f"http://127.0.0.1:{args.port}", "--", str(request_file), run_id,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if SERVER is not None and SERVER.poll() is not None:
        raise SystemExit(f"The server stopped during the run (exit status {SERVER.returncode}): killed from outside?")
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(line[len("BENCH_JSON "):])


def probe_seconds(args) -> int:
    return max(2, args.duration // 3)


def measure(args, scenario: Scenario, request_file: Path, prefix: list, run_id: str, seconds: int,
            queries: dict, warmup: int | None = None) -> dict:
    """Warm up, then one wrk run; waits until the server is idle after each."""
    connections = min(args.concurrency, 2 * args.workers) if scenario.slow else args.concurrency
    warmup = args.warmup if warmup is None else warmup
    if warmup and not scenario.slow:  # a second of password hashing warms nothing
        wrk(args, prefix, request_file, warmup, run_id + "w", connections)
        wait_idle(args.port)
    load = load1()
    before = COUNTERS.read()
    raw = wrk(args, prefix, request_file, seconds, run_id, connections)
    wait_idle(args.port)  # requests still in flight when wrk stopped are done: their connections count
    after = COUNTERS.read()
    row = {
        "name": scenario.name, "title": scenario.title, "kind": scenario.kind,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000, "requests": raw["requests"],
        "errors": sum(raw["errors"].values()), "error_detail": raw["errors"],
        "queries": queries[scenario.name], "load1": load, "connections": connections,
        **connections_row(ConnectionCounters.new(before, after), raw["requests"]),
    }
    label = "  floor probe" if scenario.name == "floor" and seconds < args.duration else scenario.name
    log(f"  {label:<15} {row['rps']:9.1f} req/s  p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
        f"{row['queries']:>2} queries  errors {row['errors']}  {per_request(row)}  load {load}")
    return row


def per_request(row: dict) -> str:
    def show(value):
        return "n/a" if value is None else f"{value:.3f}"

    return (f"new conn/req DB {show(row['db_connections_per_request'])} "
            f"Redis {show(row['redis_connections_per_request'])}")


def floor_seconds(args) -> tuple[int, int]:
    """Seconds of each reference floor's run and of its warm-up: the floors are steady after a second."""
    return (10, 2) if args.mode == "full" else (3, 1)


def measure_floors(args, wrk_prefix: list, server_prefix: list, workdir: Path, run_id: str) -> dict:
    """
    One round of the reference floors, each served alone on the server's CPU with the app's worker
    count, wrk connections and gunicorn.conf.py: name -> wrk row.
    """
    global SERVER
    request_file = workdir / "floor_ping.tsv"
    request_file.write_text("GET\t/ping/\t-\t-\n")
    seconds, warmup = floor_seconds(args)
    env = {"GUNICORN_WORKERS": str(args.workers), "GUNICORN_BIND": f"127.0.0.1:{args.port}",
           "GUNICORN_LOG_LEVEL": "warning", "DJANGO_SETTINGS_MODULE": "bench.floor.settings"}
    rows = {}
    for name, title, app, options in FLOORS:
        server = SERVER = start_server(args, env, server_prefix, workdir / f"{name}.log", app, options)
        try:
            wait_idle(args.port)
            wrk(args, wrk_prefix, request_file, warmup, run_id + "w", args.concurrency)
            wait_idle(args.port)
            before = COUNTERS.read()
            raw = wrk(args, wrk_prefix, request_file, seconds, run_id, args.concurrency)
            wait_idle(args.port)
            after = COUNTERS.read()
        finally:
            stop_server(server)
            SERVER = None
        rows[name] = {
            "rps": raw["requests"] / (raw["duration_us"] / 1e6), "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000, "requests": raw["requests"], "errors": sum(raw["errors"].values()),
            **connections_row(ConnectionCounters.new(before, after), raw["requests"]),
        }
        log(f"  {name:<15} {rows[name]['rps']:9.1f} req/s  p50 {rows[name]['p50_ms']:8.2f} ms  "
            f"errors {rows[name]['errors']}  {per_request(rows[name])}")
    return rows


def combine_floors(rounds: list[dict], seconds: int) -> dict:
    """The rounds of each floor: mean throughput (the reference), each round's, and the rest summed or meaned."""
    combined = {}
    for name, title, app, options in FLOORS:
        runs = [r[name] for r in rounds]
        requests = sum(r["requests"] for r in runs)
        new = {kind: None if None in [r[f"new_{kind}_connections"] for r in runs]
               else sum(r[f"new_{kind}_connections"] for r in runs) for kind in ("db", "redis")}
        combined[name] = {
            "title": title, "app": app, "options": " ".join(options) or "-", "seconds": seconds,
            "rps": sum(r["rps"] for r in runs) / len(runs), "rounds": [r["rps"] for r in runs],
            "p50_ms": sum(r["p50_ms"] for r in runs) / len(runs), "p99_ms": max(r["p99_ms"] for r in runs),
            "requests": requests, "errors": sum(r["errors"] for r in runs), **connections_row(new, requests),
        }
    return combined


def not_load_tested(scenario: Scenario, seconds: float, queries: dict) -> dict:
    """A row for a scenario too slow to load: one request at a time, as measured in-process."""
    return {
        "name": scenario.name, "title": scenario.title + f" (NOT load-tested: one request took {seconds:.1f} s)",
        "kind": scenario.kind, "rps": 1 / seconds, "p50_ms": seconds * 1000, "p90_ms": seconds * 1000,
        "p99_ms": seconds * 1000, "max_ms": seconds * 1000, "requests": 1, "errors": 0, "error_detail": {},
        "queries": queries[scenario.name], "load1": load1(), "connections": 1,
        "new_db_connections": None, "new_redis_connections": None,
        "db_connections_per_request": None, "redis_connections_per_request": None,
    }


def load1() -> float:
    return round(os.getloadavg()[0], 2)


# --- Results ----------------------------------------------------------------------


def machine_info(db_version: str, redis_url: str) -> dict:
    import django
    import redis

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    # Others may be editing the app: name the exact state of the code measured.
    dirty = git("status", "--porcelain", "--", "chats", "messaging_app")
    if dirty:
        import hashlib

        digest = hashlib.sha1((git("diff", "HEAD", "--", "chats", "messaging_app") + dirty).encode()).hexdigest()[:8]
        dirty = f" + uncommitted changes in the app (diff {digest}: {len(dirty.splitlines())} files)"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "db": db_version,
        "redis": redis.Redis.from_url(redis_url).info("server")["redis_version"],
        "python": platform.python_version(),
        "django": django.get_version(),
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown") + dirty,
    }


def save(results: dict) -> None:
    from bench import report

    RESULTS.mkdir(parents=True, exist_ok=True)
    text, md = json.dumps(results, indent=2) + "\n", report.markdown(results)
    for stem in ("latest", results["mode"]):
        (RESULTS / f"{stem}.json").write_text(text)
        (RESULTS / f"{stem}.md").write_text(md)


def main() -> int:
    args = parse_args()
    secret = "bench-only-" + secrets.token_hex(24)  # a throwaway secret, for this run only
    env = server_env(args, secret)
    os.environ.update(env)  # this process mints the tokens and counts queries with the same settings
    import django

    django.setup()
    import logging

    from django.conf import settings
    from django.db import connection

    from messaging_app.wsgi_pool import HTTP_THREADS

    logging.getLogger("messaging_app.requests").setLevel(logging.WARNING)  # in-process requests: no log lines

    from bench import dataset, fanout, report, sockets, ws_latency
    from chats.models import User

    ensure_wrk()
    spec = dataset.Spec(args.users, args.conversations_per_user, args.messages_per_conversation, args.long_messages)
    info = dataset.ensure(spec, log)
    if args.fill_only:
        return 0
    machine = machine_info(dataset.server_version(), args.redis_url)  # before the run: the code measured
    scenarios = build_scenarios(info)
    if args.only:
        wanted = {"floor", *args.only.split(",")}
        scenarios = [s for s in scenarios if s.name in wanted]
    log("Counting SQL queries per request (in-process)")
    single = {}  # scenario -> (queries, seconds) of one request
    for s in scenarios:
        single[s.name] = count_queries(s)
        if single[s.name][1] > SLOW_SECONDS and not s.slow:
            s.slow = True
            log(f"  one {s.name} request took {single[s.name][1]:.1f} s: fewer connections for it")
    queries = {name: q for name, (q, _) in single.items()}
    connection.close()

    wrk_prefix, server_prefix, wrk_cpus, server_cpus = pinning(args)
    run_id = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    log_path = workdir / "server.log"
    global SERVER, COUNTERS
    COUNTERS = ConnectionCounters(args.database_url, args.redis_url)
    floor_rounds = []
    if not args.no_floors:  # before and after the app: the machine's load drifts
        log(f"Reference floors, round 1 (each alone on CPU {server_cpus}, {args.workers} workers)")
        floor_rounds.append(measure_floors(args, wrk_prefix, server_prefix, workdir, run_id))
    log(f"Starting gunicorn ({args.workers} workers, CPU {server_cpus}) on port {args.port}; log: {log_path}")
    server = SERVER = start_server(args, env, server_prefix, log_path)
    wait_idle(args.port)
    start_load = load1()
    try:
        # The floor first, then every scenario followed by a short floor probe: each scenario is
        # compared with the mean of the probes just before and after it (the machine's load drifts).
        floor_file = scenarios[0].write(workdir)
        measured = [measure(args, scenarios[0], floor_file, wrk_prefix, run_id, args.duration, queries,
                            max(1, args.warmup))]  # the server's first requests are slow
        probes = [measured[0]["rps"]]
        measured[0]["floor_rps"] = measured[0]["rps"]
        for scenario in scenarios[1:]:
            seconds = single[scenario.name][1]
            if seconds > args.duration / 2:  # would tie up the server (and MariaDB) for minutes
                measured.append({**not_load_tested(scenario, seconds, queries), "floor_rps": probes[-1]})
                log(f"  {scenario.name:<15} not load-tested: one request took {seconds:.1f} s in-process")
                continue
            row = measure(args, scenario, scenario.write(workdir), wrk_prefix, run_id, args.duration, queries)
            probe = measure(args, scenarios[0], floor_file, wrk_prefix, run_id, probe_seconds(args), queries, 0)
            row["floor_rps"] = (probes[-1] + probe["rps"]) / 2
            probes.append(probe["rps"])
            measured.append(row)
        log("WebSocket delivery latency")
        sender, recipient, conversation = _ws_pair(info)
        from rest_framework_simplejwt.tokens import AccessToken

        ws = asyncio.run(ws_latency.measure(
            f"http://127.0.0.1:{args.port}", conversation,
            str(AccessToken.for_user(User.objects.get(pk=sender))),
            str(AccessToken.for_user(User.objects.get(pk=recipient))),
            sends=args.ws_sends, sockets=max(2, 2 * args.workers),
        ))
        log(f"  p50 {ws['p50_ms']} ms  p99 {ws['p99_ms']} ms  missing {ws['missing']}")
        fanned = []
        if args.fanout_sizes:
            sizes = [int(n) for n in args.fanout_sizes.split(",")]
            log(f"Fan-out: {sizes} connected participants, {args.fanout_sends} sends at {args.fanout_rate}/s each")
            made = fanout.setup(sizes)
            connection.close()
            fanned = asyncio.run(fanout.measure(f"http://127.0.0.1:{args.port}", made, args.fanout_sends,
                                                args.fanout_rate))
            for row in fanned:
                log(f"  {row['participants']:>5}: send p50 {row['send_p50_ms']} ms, delivery p50 "
                    f"{row['delivery_p50_ms']} / p99 {row['delivery_p99_ms']} ms, lost {row['lost']}, "
                    f"duplicated {row['duplicated']}, gaps {row['gaps']}")
        loaded = idled = None
        if args.load_seconds:
            log(f"Socket load: 20 sends/s over 20 conversations of 25 connected people, {args.load_seconds:g} s")
            groups = sockets.prepare_load()
            connection.close()
            loaded = asyncio.run(sockets.load(f"http://127.0.0.1:{args.port}", groups, seconds=args.load_seconds))
            connection.close()
            log(f"  achieved {loaded['achieved_rate']}/s, lost {loaded['lost']}, duplicated {loaded['duplicated']}, "
                f"gaps {loaded['gaps']}, delivery p50 {loaded['delivery_p50_ms']} / p99 {loaded['delivery_p99_ms']} ms")
        if args.idle_sockets:
            log(f"Idle sockets: {args.idle_sockets} held {args.idle_seconds:g} s, then closed at once")
            conversation, tokens = sockets.prepare_idle(args.idle_sockets)
            connection.close()
            idled = asyncio.run(sockets.idle(f"http://127.0.0.1:{args.port}", worker_pids(server), log_path,
                                             conversation, tokens, sockets=args.idle_sockets,
                                             seconds=args.idle_seconds))
            connection.close()
            log(f"  dropped {idled['dropped']}, reached {idled['reached']} in {idled['reach_seconds']} s, "
                f"{idled['server_kib_per_socket']} KiB per socket, closed in {idled['close_seconds']} s, "
                f"server errors {idled['server_errors']}")
    finally:
        stop_server(server)
        SERVER = None
    if floor_rounds:
        log("Reference floors, round 2")
        floor_rounds.append(measure_floors(args, wrk_prefix, server_prefix, workdir, run_id))
    _cleanup()

    floors = combine_floors(floor_rounds, floor_seconds(args)[0]) if floor_rounds else {}
    for row in measured:
        row["pct_of_floor"] = 100 * row["rps"] / row["floor_rps"]
        row["pct_of_django"] = 100 * row["rps"] / floors[REFERENCE]["rps"] if floors else None
    results = {
        "mode": args.mode,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load": {"start": start_load, "min": min(r["load1"] for r in measured),
                 "max": max(r["load1"] for r in measured), "end": load1()},
        "config": {"workers": args.workers, "concurrency": args.concurrency, "duration": args.duration,
                   "warmup": args.warmup,
                   "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
                   "http_threads": HTTP_THREADS, "wrk_cpus": wrk_cpus,
                   "server_cpus": server_cpus, "database_url": args.database_url, "redis_url": args.redis_url,
                   "settings": args.settings},
        "dataset": {**vars(spec), "description": dataset.describe(spec), "database": dataset.database_name()},
        "floor": {"rps": measured[0]["rps"], "probes": probes, "probe_seconds": probe_seconds(args)},
        "reference_floors": floors,
        "reference": REFERENCE if floors else None,
        "scenarios": measured,
        "websocket": ws,
        "fanout": fanned,
        "socket_load": loaded,
        "idle_sockets": idled,
    }
    results["targets"] = report.targets(results)
    save(results)
    print()
    print(report.markdown(results))
    print(f"Written to {RESULTS / 'latest.md'} and {RESULTS / 'latest.json'}")
    strict = {"scenario", "serving"} if args.strict_serving else {"scenario"} if args.strict else set()
    failed = [t for t in results["targets"] if t["result"] == "FAIL" and t["set"] in strict]
    for t in results["targets"]:
        print(f"{t['result']}  [{t['set']}] {t['target']}: {t['measured']} (limit {t['limit']})")
    return 1 if failed else 0


def worker_pids(server) -> list[int]:
    """The gunicorn master's worker processes (its children, from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.pid:  # the parent pid
            children.append(int(stat.parent.name))
    return children


def _ws_pair(info: dict) -> tuple[str, str, str]:
    """A regular two-person conversation of user 0's: (sender, recipient, conversation)."""
    from chats.models import ConversationMembership

    owner = info["owner"]
    conversation = (
        ConversationMembership.objects.filter(user_id=owner)
        .exclude(conversation_id__in=[info["long"]["id"], info["medium"]["id"]])
        .values_list("conversation_id", flat=True).first()
    )
    recipient = ConversationMembership.objects.filter(conversation_id=conversation).exclude(user_id=owner)
    return owner, str(recipient.values_list("user_id", flat=True).get()), str(conversation)


def _cleanup() -> None:
    """Remove what register and token left behind (sent messages stay: conversations grow)."""
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    from chats.models import User

    OutstandingToken.objects.all().delete()  # the bench database only
    User.objects.filter(email__startswith="bench-reg-").delete()


if __name__ == "__main__":
    sys.exit(main())
