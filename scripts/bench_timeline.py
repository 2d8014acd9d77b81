#!/usr/bin/env python
"""
Benchmark: the newest page and the cursor pages of a conversation's timeline cost
the same whatever its length; a deep page number (OFFSET) does not.

    DATABASE_URL=mysql://root@127.0.0.1:3306/bench_timeline \\
        .venv/bin/python scripts/bench_timeline.py [--messages 1000000] [--small 100] [--repeat 30]

It migrates the configured database (DATABASE_URL; the database itself is created
if missing), creates three users (bench-a/b/c@bench.invalid) and two direct
conversations, a big one (--messages) and a small one (--small), fills them with
bulk inserts (strictly increasing sent_at, as message_send stamps it), then times
GET /api/conversations/{id}/messages/ in-process with DRF's APIClient:

- newest          the default first page (what a client opens);
- before (middle) ?before=<a message from the middle of history>;
- before (oldest) ?before=<the 21st oldest message>: scrolled back to the start;
- after (middle)  ?after=<a message from the middle of history>;
- page 2          ?page=2 (OFFSET 20);
- last page       ?page=<last> (OFFSET ~ every message): the contrast.

It prints median and p90 wall time per request, the time spent in the database,
the SQL queries per request, the big/small ratios (flat: < 2) and EXPLAIN output.

Complete bench data from an earlier run is reused (--refill rebuilds it). When it
is done, unless --keep: a database this run created is dropped; in a database that
already existed only the bench rows are deleted (--drop-db drops it anyway, if its
name contains "bench"). SQLite is refused unless --allow-sqlite (a million rows
there is slow); a smoke test:

    .venv/bin/python scripts/bench_timeline.py --messages 5000 --small 100 --allow-sqlite
"""
import argparse
import logging
import math
import os
import re
import statistics
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
# Thousands of requests from one user in a few minutes: this measures queries, not throttling.
os.environ.setdefault("THROTTLE_USER", "1000000/min")

import django  # noqa: E402

django.setup()
logging.getLogger("messaging_app.requests").setLevel(logging.WARNING)  # no log line per in-process request

from django.core.management import call_command  # noqa: E402
from django.db import connection, reset_queries, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chats import selectors, services  # noqa: E402
from chats.models import Conversation, Message, User  # noqa: E402

EMAILS = {"a": "bench-a@bench.invalid", "b": "bench-b@bench.invalid", "c": "bench-c@bench.invalid"}
EXTRA_EMAIL = "bench-extra-{}@bench.invalid"  # --extra-users: people in no bench conversation
# sent_at of message i is BASE + i * STEP: strictly increasing, and any message can be
# found again by its position (the anchors of the cursor scenarios).
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)
STEP = timedelta(milliseconds=1)
BATCH = 10_000
PAGE_SIZE = 20  # the API's default page size
FLAT_RATIO = 2.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the big conversation")
    parser.add_argument("--small", type=int, default=100, help="messages in the small conversation")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per scenario")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per scenario first")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60,
        help="time budget per scenario: a slow one stops after it (3 requests on each conversation at least)",
    )
    parser.add_argument(
        "--extra-users",
        type=int,
        default=0,
        help="also create this many users outside the bench conversations (a populated user table)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench data (and database) for the next run")
    parser.add_argument("--refill", action="store_true", help="rebuild the bench data even if complete")
    parser.add_argument(
        "--drop-db",
        action="store_true",
        help="drop the database at the end even if it existed before (its name must contain 'bench')",
    )
    parser.add_argument("--allow-sqlite", action="store_true", help="run against SQLite too")
    args = parser.parse_args()
    if args.small < 2 * PAGE_SIZE + 1 or args.messages < args.small:
        parser.error(f"need --messages >= --small >= {2 * PAGE_SIZE + 1}")
    if args.keep and args.drop_db:
        parser.error("--keep and --drop-db exclude each other")
    return args


# --- Database ---------------------------------------------------------------------


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def ensure_database() -> bool:
    """Create the configured MySQL/MariaDB or PostgreSQL database if it does not exist; True if created."""
    name = database_name()
    if connection.vendor == "mysql":
        exists_sql = "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s"
        create_sql = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    elif connection.vendor == "postgresql":
        exists_sql = "SELECT 1 FROM pg_database WHERE datname = %s"
        create_sql = f'CREATE DATABASE "{name}"'
    else:
        return False
    # The same server connection Django's test runner uses to create test databases.
    with connection._nodb_cursor() as cursor:
        cursor.execute(exists_sql, [name])
        if cursor.fetchone() is not None:
            return False
        print(f"Creating database {name}")
        cursor.execute(create_sql)
        return True


def drop_database() -> None:
    name = database_name()
    connection.close()
    quoted = f"`{name}`" if connection.vendor == "mysql" else f'"{name}"'
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE {quoted}")
    print(f"Dropped database {name}")


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if connection.vendor == "sqlite" else "SELECT version()")
        return f"{connection.vendor} {cursor.fetchone()[0]}"


def analyze_tables() -> None:
    """Fresh optimizer statistics after the bulk load (what autovacuum / InnoDB would do soon)."""
    with connection.cursor() as cursor:
        for model in (User, Message):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"ANALYZE TABLE {table}" if connection.vendor == "mysql" else f"ANALYZE {table}")
            if connection.vendor == "mysql":
                cursor.fetchall()


@contextmanager
def db_timer(box: list):
    """Adds the time spent inside the database driver's execute() to box[0]."""

    def wrapper(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            box[0] += time.perf_counter() - start

    with connection.execute_wrapper(wrapper):
        yield


# --- Data -------------------------------------------------------------------------


def bench_user(key: str) -> User:
    user = User.objects.filter(email=EMAILS[key]).first()
    if user is None:
        user = User.objects.create_user(EMAILS[key], None, first_name="Bench", last_name=key.upper())
    return user


def extra_users(n: int) -> None:
    """Exactly n extra users (bench-extra-<i>@bench.invalid), in no bench conversation."""
    existing = User.objects.filter(email__startswith="bench-extra-", email__endswith="@bench.invalid")
    if existing.count() == n:
        return
    existing.delete()
    User.objects.bulk_create(
        User(email=EXTRA_EMAIL.format(i), first_name="Bench", last_name=f"Extra {i}", password="!")
        for i in range(n)
    )
    print(f"  {n:,} extra users" if n else "  removed the extra users")


def bench_conversation(creator: User, other: User) -> Conversation:
    # Two people: conversation_create returns their existing conversation if there is one.
    conversation, _ = services.conversation_create(creator=creator, participant_ids=[other.pk])
    return conversation


def fill(conversation: Conversation, senders: list[User], n: int, refill: bool) -> None:
    """Give the conversation exactly n bench messages, as message_send would have left them."""
    conversation.refresh_from_db()
    have = Message.objects.filter(conversation=conversation).count()
    if not refill and have == n and conversation.message_count == n and at(conversation, n - 1) is not None:
        print(f"  conversation {conversation.pk}: reusing its {n:,} messages")
        return
    if have:
        delete_messages(conversation)
    print(f"  conversation {conversation.pk}: inserting {n:,} messages in batches of {BATCH:,}")
    start = time.perf_counter()
    last = None
    for first in range(0, n, BATCH):
        batch = [
            Message(
                message_id=uuid.uuid4(),
                conversation=conversation,
                sender=senders[i % len(senders)],
                message_body=f"Benchmark message {i}: the quick brown fox jumps over the lazy dog.",
                sent_at=BASE + i * STEP,
            )
            for i in range(first, min(first + BATCH, n))
        ]
        Message.objects.bulk_create(batch)
        last = batch[-1]
        reset_queries()  # DEBUG keeps every SQL text otherwise (megabytes per batch)
        done = first + len(batch)
        if done % (10 * BATCH) == 0 or done == n:
            elapsed = time.perf_counter() - start
            print(f"    {done:>10,} rows  {elapsed:7.1f} s  ({done / elapsed:,.0f} rows/s)", flush=True)
    Conversation.objects.filter(pk=conversation.pk).update(
        message_count=n, last_message=last, last_activity_at=last.sent_at
    )
    print(f"  filled in {time.perf_counter() - start:.1f} s")


def delete_messages(conversation: Conversation) -> None:
    """Delete a conversation's messages in batches (one DELETE of a million rows is a huge transaction)."""
    Conversation.objects.filter(pk=conversation.pk).update(message_count=0, last_message=None)
    total = 0
    start = time.perf_counter()
    while True:
        ids = list(Message.objects.filter(conversation=conversation).values_list("pk", flat=True)[:BATCH])
        if not ids:
            break
        with transaction.atomic():
            Message.objects.filter(pk__in=ids).delete()
        reset_queries()
        total += len(ids)
    if total:
        print(f"  conversation {conversation.pk}: deleted {total:,} messages in {time.perf_counter() - start:.1f} s")


def at(conversation: Conversation, i: int) -> Message | None:
    """The conversation's i-th oldest bench message (an indexed lookup, not an OFFSET)."""
    return Message.objects.filter(conversation=conversation, sent_at=BASE + i * STEP).first()


# --- Measurement ------------------------------------------------------------------


def scenarios(conversation: Conversation, n: int) -> list[tuple[str, str, int]]:
    """(name, url, expected results) for one conversation of n messages."""
    url = f"/api/conversations/{conversation.pk}/messages/"
    middle, oldest_anchor = at(conversation, n // 2), at(conversation, PAGE_SIZE)
    last_page = math.ceil(n / PAGE_SIZE)
    return [
        ("newest", url, PAGE_SIZE),
        ("before (middle)", f"{url}?before={middle.pk}", PAGE_SIZE),
        ("before (oldest)", f"{url}?before={oldest_anchor.pk}", PAGE_SIZE),
        ("after (middle)", f"{url}?after={middle.pk}", PAGE_SIZE),
        ("page 2", f"{url}?page=2", PAGE_SIZE),
        ("last page", f"{url}?page={last_page}", n - (last_page - 1) * PAGE_SIZE),
    ]


def get(client: APIClient, url: str, expected: int):
    response = client.get(url)
    if response.status_code != 200 or len(response.data["results"]) != expected:
        sys.exit(f"Unexpected answer to {url}: {response.status_code} {str(response.data)[:300]}")
    return response


class Samples:
    """Timings of one scenario on one conversation."""

    def __init__(self, url: str, expected: int):
        self.url, self.expected = url, expected
        self.walls, self.dbs, self.queries, self.sql = [], [], set(), ""

    def take(self, client: APIClient) -> None:
        box = [0.0]
        with CaptureQueriesContext(connection) as captured, db_timer(box):
            start = time.perf_counter()
            get(client, self.url, self.expected)
            self.walls.append((time.perf_counter() - start) * 1000)
        self.dbs.append(box[0] * 1000)
        self.queries.add(len(captured.captured_queries))
        # The page query is the widest one (every message and sender column).
        self.sql = max((q["sql"] for q in captured.captured_queries), key=len)
        reset_queries()

    def summary(self) -> dict:
        return {
            "median": statistics.median(self.walls),
            "p90": percentile(self.walls, 90),
            "db": statistics.median(self.dbs),
            "n": len(self.walls),
            "queries": "/".join(map(str, sorted(self.queries))),
            "sql": self.sql,
        }


def measure(client: APIClient, small: Samples, big: Samples, args) -> tuple[dict, dict]:
    """
    Warm up, then time args.repeat requests on each conversation, alternating small and
    big so that both see the same load on the machine. A slow scenario stops once
    args.max_seconds have passed (after 3 requests each at least).
    """
    for samples in (small, big):
        start = time.perf_counter()
        for _ in range(args.warmup):
            get(client, samples.url, samples.expected)
            if time.perf_counter() - start > 1:  # a slow request: one warm-up is enough
                break
    start = time.perf_counter()
    while len(big.walls) < args.repeat and (len(big.walls) < 3 or time.perf_counter() - start < args.max_seconds):
        small.take(client)
        big.take(client)
    return small.summary(), big.summary()


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def print_table(rows: list[tuple[str, dict, dict]], small_n: int, big_n: int) -> None:
    def side(m: dict) -> str:
        return f"{m['median']:8.2f} {m['p90']:8.2f} {m['db']:8.2f} {m['queries']:>2} {m['n']:>3}"

    columns = f"{'median':>8} {'p90':>8} {'db':>8} {'q':>2} {'n':>3}"
    print()
    print(f"{'':<16} | {'small: ' + format(small_n, ','):<32} | {'big: ' + format(big_n, ','):<32} | big/small")
    print(f"{'scenario':<16} | {columns} | {columns} | {'median':>7} {'p90':>7} {'db':>7}")
    print(f"{'-' * 16}-+-{'-' * 32}-+-{'-' * 32}-+-{'-' * 25}")
    for name, small, big in rows:
        ratio, ratio90 = big["median"] / small["median"], big["p90"] / small["p90"]
        ratio_db = big["db"] / max(small["db"], 1e-9)
        verdict = "flat" if ratio < FLAT_RATIO else "NOT flat"
        print(f"{name:<16} | {side(small)} | {side(big)} | {ratio:7.2f} {ratio90:7.2f} {ratio_db:7.2f}  {verdict}")
    print(
        "median, p90: wall time per request in ms; db: median ms inside the database driver; "
        f"q: SQL queries per request; n: timed requests; flat: median ratio < {FLAT_RATIO:g}"
    )


def explain_sql(sql: str, analyze: bool) -> str:
    """EXPLAIN, or EXPLAIN ANALYZE (which runs the query again), of SQL captured from a request."""
    options = {"analyze": True} if analyze else {}
    prefix = connection.ops.explain_query_prefix(**options)
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix} {sql}")
        header = [column[0] for column in cursor.description]
        lines = [" | ".join(str(v) for v in row) for row in cursor.fetchall()]
    return "\n".join([" | ".join(header), *lines] if connection.vendor == "mysql" else lines)


def main() -> None:
    args = parse_args()
    if connection.vendor == "sqlite" and not args.allow_sqlite:
        sys.exit(
            "Refusing to run on SQLite (a million rows there is slow): set DATABASE_URL to MariaDB/MySQL "
            "or PostgreSQL, or pass --allow-sqlite (e.g. --messages 5000 --allow-sqlite)."
        )
    if args.drop_db and "bench" not in database_name().lower():
        sys.exit(f"--drop-db only drops a database whose name contains 'bench', not {database_name()!r}.")
    created = ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"Database: {server_version()}, {database_name()}")
    print(f"Big conversation: {args.messages:,} messages; small: {args.small:,}; {args.repeat} timed requests each")

    users = {key: bench_user(key) for key in EMAILS}
    big = bench_conversation(users["a"], users["b"])
    small = bench_conversation(users["a"], users["c"])
    print("Filling")
    extra_users(args.extra_users)
    fill(big, [users["a"], users["b"]], args.messages, args.refill)
    fill(small, [users["a"], users["c"]], args.small, args.refill)
    analyze_tables()
    big.refresh_from_db()
    small.refresh_from_db()
    print(f"Users in the database: {User.objects.count():,}; messages: {Message.objects.count():,}")

    client = APIClient(SERVER_NAME="localhost")  # a host ALLOWED_HOSTS accepts
    client.force_authenticate(user=users["a"])
    rows = []
    for (name, small_url, small_expected), (_, big_url, big_expected) in zip(
        scenarios(small, args.small), scenarios(big, args.messages)
    ):
        print(f"Measuring {name} ...", flush=True)
        rows.append((name, *measure(client, Samples(small_url, small_expected), Samples(big_url, big_expected), args)))
    print_table(rows, args.small, args.messages)

    newest = selectors.message_list_for_conversation(conversation=big).order_by("-sent_at", "-message_id")
    print(f"\nEXPLAIN of the newest page on the big conversation (queryset.explain()):\n{newest[:PAGE_SIZE].explain()}")
    for name, _, measured in rows:
        # ANALYZE runs the query once more: skipped for a query that takes seconds, and on SQLite.
        analyze = connection.vendor != "sqlite" and measured["median"] < 5000
        shown = re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", measured["sql"], count=1)
        label = "EXPLAIN ANALYZE" if analyze else "EXPLAIN"
        print(f"\n{label}, {name}, big conversation:\n{shown}\n{explain_sql(measured['sql'], analyze)}")

    if args.drop_db or (created and not args.keep):
        drop_database()
    elif not args.keep:
        print("\nDeleting the bench data (--keep keeps it)")
        for conversation in (big, small):
            delete_messages(conversation)
        Conversation.objects.filter(pk__in=[big.pk, small.pk]).delete()
        User.objects.filter(email__in=EMAILS.values()).delete()
        extra_users(0)


if __name__ == "__main__":
    main()
