"""
The numbers behind docs/capacity.md that are not throughput: what one message writes and what
it occupies on disk, on the configured MariaDB/MySQL or PostgreSQL database.

    DATABASE_URL=mysql://root@127.0.0.1:3306/messaging_bench_capacity .venv/bin/python -m bench.capacity
    DATABASE_URL=postgres://root@127.0.0.1:5432/messaging_bench_capacity .venv/bin/python -m bench.capacity

1. Storage: the benchmark's dataset (bench/dataset.py, quick size unless --full: 200 users,
   2,000 two-person conversations, 140,000 messages), then each table's bytes (data + indexes,
   as the engine reports them after ANALYZE) per row, and per message.
2. Writes: sends through the real service (chats.services.message_send) to conversations of
   2, 10, 100 and 1,000 people, counting the statements each send runs and the rows it adds to
   each table; then the event tables' bytes per row.

Prints a JSON summary and writes it to bench/results/capacity-<vendor>.json.
"""
import argparse
import json
import os
import random
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--full", action="store_true", help="the full dataset (1,000,000-message conversation)")
    parser.add_argument("--sends", type=int, default=200, help="sends per conversation size (default 200)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_DEBUG", "1")  # a script on the operator's machine: no production secrets needed
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")
    import django

    django.setup()
    from bench import dataset
    from bench.run import MODES

    mode = MODES["full" if args.full else "quick"]
    spec = dataset.Spec(mode["users"], mode["conversations_per_user"], mode["messages_per_conversation"],
                        mode["long_messages"])
    dataset.ensure(spec, log=lambda line: print(line, file=sys.stderr))
    result = {"database": dataset.server_version(), "dataset": dataset.describe(spec)}
    result["storage"] = storage()
    result["sends"] = sends(args.sends)
    result["event_storage"] = storage(("chats_event", "chats_eventframe", "chats_eventstream"))
    RESULTS.mkdir(exist_ok=True)
    from django.db import connection

    (RESULTS / f"capacity-{connection.vendor}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


TABLES = ("chats_message", "chats_conversationmembership", "chats_conversation", "chats_user")


def storage(tables=TABLES) -> dict:
    """Rows, bytes (data + indexes) and bytes per row of each table, after ANALYZE."""
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in tables:
            quoted = connection.ops.quote_name(table)
            if connection.vendor == "mysql":
                cursor.execute(f"ANALYZE TABLE {quoted}")
                cursor.fetchall()
                cursor.execute(
                    "SELECT data_length, index_length FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = %s", [table])
                data, index = cursor.fetchone()
            else:
                cursor.execute(f"ANALYZE {quoted}")
                cursor.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", [table, table])
                data, index = cursor.fetchone()
            cursor.execute(f"SELECT COUNT(*) FROM {quoted}")
            rows = cursor.fetchone()[0]
            out[table] = {
                "rows": rows, "data_bytes": int(data), "index_bytes": int(index),
                "bytes_per_row": round((int(data) + int(index)) / rows) if rows else None,
            }
    return out


def sends(count: int) -> dict:
    """Statements per send and rows added per send, by conversation size, through message_send."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chats import services
    from chats.models import (
        Conversation, ConversationMembership, Event, EventFrame, EventStream, Message, User,
    )

    users = list(User.objects.filter(email__startswith="bench-u").order_by("email")[:1000])
    extra = 1000 - len(users)
    if extra > 0:  # the quick dataset has 200 people: the 1,000-member conversation needs more
        from django.contrib.auth.hashers import make_password

        password = make_password(dataset_password())
        User.objects.bulk_create(
            [User(email=f"capacity-{i:04d}@bench.invalid", first_name="Cap", last_name=str(i), password=password)
             for i in range(extra)], ignore_conflicts=True)
        users += list(User.objects.filter(email__startswith="capacity-").order_by("email")[:extra])
        EventStream.objects.bulk_create([EventStream(user_id=u.pk) for u in users], ignore_conflicts=True)
    models = {"message": Message, "conversation": Conversation, "membership": ConversationMembership,
              "event": Event, "event_frame": EventFrame}
    out = {}
    rng = random.Random(7)
    for size in (2, 10, 100, 1000):
        members = users[:size]
        conversation = Conversation.objects.create(created_by=members[0], participant_count=len(members))
        ConversationMembership.objects.bulk_create(
            [ConversationMembership(conversation=conversation, user=u) for u in members])
        before = {name: model.objects.count() for name, model in models.items()}
        with CaptureQueriesContext(connection) as queries:
            for i in range(count):
                services.message_send(conversation=conversation, sender=rng.choice(members),
                                      message_body=f"capacity message {i} " + "x" * rng.randint(10, 110))
        kinds: dict[str, int] = {}
        for query in queries.captured_queries:
            word = query["sql"].split(None, 1)[0].upper()
            kinds[word] = kinds.get(word, 0) + 1
        out[str(size)] = {
            "statements_per_send": {k: round(v / count, 2) for k, v in sorted(kinds.items())},
            "rows_added_per_send": {name: round((model.objects.count() - before[name]) / count, 2)
                                    for name, model in models.items()},
            # memberships' unread counts and the streams' positions are UPDATEd, not added
            "rows_updated_per_send": {"conversation": 1, "membership": size - 1, "event_stream": size},
        }
    return out


def dataset_password() -> str:
    from bench.dataset import PASSWORD

    return PASSWORD


if __name__ == "__main__":
    sys.exit(main())
