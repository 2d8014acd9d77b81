"""
Search benchmark (issue 15): `GET /api/messages/?search=` in 10,000 and in 1,000,000 messages.

The same search, finding the same messages, must cost within 2x in the large dataset of what it
costs in the small one: the full-text index reads its matches, not every message the caller can see.
The old substring scan (`icontains`, what `?search=` did before) is timed on the same data for
comparison.

Dataset: 200 users in 200 two-person conversations; the caller (user 0) takes part in 20 of them
(a tenth of all messages). Messages are 8 words of a 40-word vocabulary, bulk-inserted by the
database itself (INSERT ... SELECT over generate_series / MariaDB's seq_1_to_N). The searched word
is in HITS messages of the caller's conversations and HITS of other people's, written with the
small dataset; growing it to the large one adds no match. So both measurements return the same page.

Usage (the database is emptied and filled: its name must contain "bench"):
  DATABASE_URL=postgres://root@127.0.0.1:5432/wt_search_bench .venv/bin/python bench/search.py [--quick]
  DATABASE_URL=mysql://root@127.0.0.1:3306/wt_search_bench .venv/bin/python bench/search.py [--quick]
--quick: 2,000 and 20,000 messages. Results: printed, and in bench/results/search.json (per engine).
"""
import argparse
import json
import logging
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from chats import selectors  # noqa: E402
from chats.models import Conversation, ConversationMembership, Message, User  # noqa: E402

WORD = "quokka"  # the searched word: in no message of the vocabulary
VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu harbour lunch meeting report "
    "coffee window garden river market ticket summer winter budget design"
).split()
CONVERSATIONS = 200
CALLERS_CONVERSATIONS = 20
CHUNK = 100_000  # messages per INSERT ... SELECT (one transaction each)
RUNS = 15  # timed requests per measurement (after 3 warm-ups); the median is reported


def log(text: str) -> None:
    print(f"[search-bench {datetime.now(timezone.utc):%H:%M:%S}] {text}", flush=True)


def reset() -> list:
    """An empty schema, then the users and conversations; returns the conversations' (id, sender) rows."""
    name = str(connection.settings_dict["NAME"])
    if "bench" not in name:
        raise SystemExit(f"Refusing to empty {name!r}: the bench database's name must contain 'bench'.")
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    password = make_password("bench-search-7731")
    users = User.objects.bulk_create(
        User(email=f"search-u{i:04d}@bench.invalid", first_name=f"U{i}", last_name="Bench", password=password)
        for i in range(CONVERSATIONS)
    )
    pairs = []
    for j in range(CONVERSATIONS):
        if j < CALLERS_CONVERSATIONS:
            a, b = users[0], users[j + 1]
        else:
            a, b = users[CALLERS_CONVERSATIONS + 1 + j % 170], users[CALLERS_CONVERSATIONS + 1 + (j + 1) % 170]
        pairs.append((a, b))
    conversations = Conversation.objects.bulk_create(Conversation(created_by=a, participant_count=2) for a, _ in pairs)
    ConversationMembership.objects.bulk_create(
        ConversationMembership(conversation=c, user=u) for c, pair in zip(conversations, pairs) for u in pair
    )
    return [(c.pk, pair[0].pk) for c, pair in zip(conversations, pairs)]


def fill(conversations: list, start: int, stop: int) -> float:
    """Messages start..stop-1 (message i in conversation i % 200, one second apart), in the database's own loop."""
    began = time.monotonic()
    vendor = connection.vendor
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_search_conv")
        cursor.execute("CREATE TABLE bench_search_conv (n integer PRIMARY KEY, conversation_id uuid, sender_id uuid)")
        for n, (conversation_id, sender_id) in enumerate(conversations):
            cursor.execute("INSERT INTO bench_search_conv VALUES (%s, %s, %s)",
                           [n, str(conversation_id), str(sender_id)])
    for low in range(start, stop, CHUNK):
        high = min(stop, low + CHUNK) - 1
        if vendor == "postgresql":
            words = "ARRAY[" + ",".join(f"'{w}'" for w in VOCABULARY) + "]"
            body = " || ' ' || ".join(
                f"({words})[1 + (i * {k}) % {len(VOCABULARY)}]" for k in (1, 3, 7, 11, 13, 17, 19, 23)
            )
            sql = (
                "INSERT INTO chats_message (message_id, conversation_id, sender_id, message_body, sent_at, "
                "is_deleted, has_attachments, reaction_summary, mentions) "
                f"SELECT gen_random_uuid(), c.conversation_id, c.sender_id, {body}, "
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' + make_interval(secs => i), false, false, '[]', '[]' "
                f"FROM generate_series({low}, {high}) AS i JOIN bench_search_conv c ON c.n = i % {CONVERSATIONS}"
            )
        else:
            words = ",".join(f"'{w}'" for w in VOCABULARY)
            body = "CONCAT_WS(' ', " + ", ".join(
                f"ELT(1 + (s.seq * {k}) % {len(VOCABULARY)}, {words})" for k in (1, 3, 7, 11, 13, 17, 19, 23)
            ) + ")"
            sql = (
                "INSERT INTO chats_message (message_id, conversation_id, sender_id, message_body, sent_at, "
                "is_deleted, has_attachments, reaction_summary, mentions) "
                f"SELECT UUID(), c.conversation_id, c.sender_id, {body}, "
                "TIMESTAMP '2026-01-01 00:00:00' + INTERVAL s.seq SECOND, 0, 0, '[]', '[]' "
                f"FROM seq_{low}_to_{high} s JOIN bench_search_conv c ON c.n = s.seq % {CONVERSATIONS}"
            )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        log(f"  messages {low:,}..{high:,} in")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_search_conv")
        # VACUUM also moves GIN's pending list (fastupdate) into the index, as autovacuum does after a bulk load.
        cursor.execute("VACUUM ANALYZE chats_message" if vendor == "postgresql" else "ANALYZE TABLE chats_message")
        if vendor == "mysql":
            cursor.fetchall()
    return time.monotonic() - began


def plant_hits(caller: User, hits: int) -> None:
    """The searched word, in `hits` messages of the caller's conversations and `hits` of others'."""
    mine = selectors.conversations_of(user=caller).values("pk")
    for scope in (Message.objects.filter(conversation_id__in=mine), Message.objects.exclude(conversation_id__in=mine)):
        step = max(1, scope.count() // hits)
        ids = list(scope.order_by("sent_at").values_list("pk", flat=True)[0:hits * step:step])
        for pk in ids:
            message = Message.objects.get(pk=pk)
            message.message_body = f"{message.message_body} {WORD} spotted"
            message.save(update_fields=["message_body"])


def timed(call) -> dict:
    for _ in range(3):
        call()
    samples = []
    for _ in range(RUNS):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "p90_ms": round(sorted(samples)[int(RUNS * 0.9)], 2)}


def old_substring_search(caller: User) -> list:
    """What `?search=` ran before (DRF's SearchFilter: icontains, then the page's count, ids and rows)."""
    found = selectors.message_list_for_user(user=caller).filter(message_body__icontains=WORD)
    found.count()
    ids = list(found.order_by("-sent_at", "-message_id").values_list("pk", flat=True)[:20])
    return selectors.message_rows(ids)


def measure(caller: User, client: APIClient, hits: int, size: int) -> dict:
    response = client.get("/api/messages/", {"search": WORD})
    assert response.status_code == 200, response.content
    assert response.json()["count"] == hits, response.json()["count"]
    assert len(old_substring_search(caller)) == min(hits, 20)
    first = selectors.conversations_of(user=caller).values_list("pk", flat=True).first()
    return {
        "messages": size,
        "caller_sees": selectors.message_list_for_user(user=caller).count(),
        "search": timed(lambda: client.get("/api/messages/", {"search": WORD})),
        "search_by_time": timed(lambda: client.get("/api/messages/", {"search": WORD, "ordering": "-sent_at"})),
        "search_one_conversation": timed(
            lambda: client.get(f"/api/conversations/{first}/messages/", {"search": WORD})
        ),
        "old_substring_scan": timed(lambda: old_substring_search(caller)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 messages (a smoke run)")
    args = parser.parse_args()
    small, large, hits = (2_000, 20_000, 10) if args.quick else (10_000, 1_000_000, 40)
    setup_test_environment()
    logging.disable(logging.INFO)  # no request log line per timed request
    vendor = connection.vendor
    if vendor not in ("postgresql", "mysql"):
        raise SystemExit("Run it on PostgreSQL or MariaDB (DATABASE_URL).")
    log(f"{vendor}: filling {small:,} messages")
    conversations = reset()
    caller = User.objects.get(email="search-u0000@bench.invalid")
    client = APIClient()
    client.force_authenticate(caller)
    fill_small = fill(conversations, 0, small)
    plant_hits(caller, hits)
    results = {"vendor": vendor, "quick": args.quick, "hits": hits, "runs": RUNS, "sizes": []}
    results["sizes"].append(dict(measure(caller, client, hits, small), fill_seconds=round(fill_small, 1)))
    log(f"{vendor}: growing to {large:,} messages")
    fill_large = fill(conversations, small, large)
    results["sizes"].append(dict(measure(caller, client, hits, large), fill_seconds=round(fill_large, 1)))
    a, b = results["sizes"]
    for key in ("search", "search_by_time", "search_one_conversation", "old_substring_scan"):
        results[f"{key}_ratio"] = round(b[key]["median_ms"] / a[key]["median_ms"], 2)
    print(f"\n{vendor}: the same search ('{WORD}', {hits} hits of the caller) in {small:,} and {large:,} messages "
          f"(median of {RUNS}, ms)\n")
    print(f"| measurement | {small:,} | {large:,} | ratio |\n|---|---|---|---|")
    for key in ("search", "search_by_time", "search_one_conversation", "old_substring_scan"):
        print(f"| {key} | {a[key]['median_ms']} | {b[key]['median_ms']} | {results[key + '_ratio']}x |")
    print(f"\nfill: {a['fill_seconds']} s and {b['fill_seconds']} s; the caller sees {a['caller_sees']:,} and "
          f"{b['caller_sees']:,} messages")
    path = ROOT / "bench" / "results" / "search.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored[f"{vendor}{'-quick' if args.quick else ''}"] = results
    path.write_text(json.dumps(stored, indent=2) + "\n")
    if results["search_ratio"] > 2:
        raise SystemExit(f"FAIL: the search costs {results['search_ratio']}x in {large:,} messages (limit 2x)")


if __name__ == "__main__":
    main()
