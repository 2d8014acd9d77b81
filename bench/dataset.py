"""
The benchmark dataset, written in bulk straight into the configured, bench-only database.

- `users` people, bench-u000000@bench.invalid, ... (all with the password PASSWORD);
- each of them in `conversations_per_user` two-person conversations (user i talks with
  users i±1 ... i±k around a ring, k = conversations_per_user / 2), each holding
  `messages_per_conversation` messages from the last 30 days;
- the long conversation: user 0 with user N/2, `long_messages` messages (1,000,000 in full mode);
- the medium conversation: user 0 with user N/2 + 1, `medium_messages` messages (1,000).

Rows look as the services leave them: uuid4 keys, sent_at strictly increasing within a
conversation, message_count / last_message / last_activity_at / direct_key filled in, read
markers a few messages behind the newest, ~1% tombstones and ~2% edited messages.

The parameters and the ids the runner needs are kept in the table `bench_dataset` (the
bench's own, not a model), written last. Same parameters: the data is reused as it is.
Other parameters, or a fill that never finished: the database is dropped and filled again
(only a database whose name contains "bench").
"""
import json
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.db import connection, transaction

from chats.models import Conversation, ConversationMembership, EventStream, Message, User

PASSWORD = "bench-Passw0rd-7731"
EMAIL = "bench-u{:06d}@bench.invalid"
PAGE_SIZE = 20  # the API's default page size
DEEP = 1_000  # "the page 1,000 messages deep": the 981st..1,000th newest messages
BATCH = 5_000  # rows per INSERT
VERSION = 1  # bump when the generator changes what it writes: old data is then rebuilt
META_TABLE = "bench_dataset"


@dataclass(frozen=True)
class Spec:
    users: int
    conversations_per_user: int
    messages_per_conversation: int
    long_messages: int
    medium_messages: int = 1_000
    version: int = VERSION

    def check(self) -> None:
        k = self.conversations_per_user // 2
        if self.users < 2 * k + 4:
            raise ValueError(f"users must be at least conversations_per_user + 4 ({2 * k + 4})")
        if min(self.long_messages, self.medium_messages) < DEEP or self.messages_per_conversation < 1:
            raise ValueError(f"the long and medium conversations need at least {DEEP} messages")


def describe(spec: Spec) -> str:
    k = spec.conversations_per_user // 2
    return (
        f"{spec.users:,} users, {spec.users * k:,} conversations of {spec.messages_per_conversation:,} messages "
        f"({2 * k} per user), one of {spec.medium_messages:,} and one of {spec.long_messages:,} messages"
    )


# --- Database ---------------------------------------------------------------------


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def _server_sql(*statements: str) -> None:
    """Run statements on the database server outside the bench database (create/drop it)."""
    connection.close()
    with connection._nodb_cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _quoted_name() -> str:
    return connection.ops.quote_name(database_name())


def create_database_if_missing() -> None:
    if connection.vendor not in ("mysql", "postgresql"):
        raise SystemExit("The benchmark needs MariaDB/MySQL or PostgreSQL (DATABASE_URL), not " + connection.vendor)
    if "bench" not in database_name():
        raise SystemExit(f"The bench database's name must contain 'bench' (it may be dropped): {database_name()!r}")
    if connection.vendor == "mysql":
        _server_sql(f"CREATE DATABASE IF NOT EXISTS {_quoted_name()} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    else:
        with connection._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database_name()])
            missing = cursor.fetchone() is None
        if missing:
            _server_sql(f"CREATE DATABASE {_quoted_name()}")


def _recreate_database() -> None:
    extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" if connection.vendor == "mysql" else ""
    _server_sql(f"DROP DATABASE IF EXISTS {_quoted_name()}", f"CREATE DATABASE {_quoted_name()}{extra}")


def server_version() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        return f"{connection.vendor} {cursor.fetchone()[0]}"


def _stored(spec: Spec) -> dict | None:
    if META_TABLE not in connection.introspection.table_names():
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT spec, info FROM {META_TABLE} WHERE name = %s", ["dataset"])
        row = cursor.fetchone()
    if row is None or json.loads(row[0]) != asdict(spec):
        return None
    info = json.loads(row[1])
    # Cheap checks that the rows are still there.
    long_ok = Conversation.objects.filter(pk=info["long"]["id"], message_count=spec.long_messages).exists()
    users_ok = User.objects.filter(email__startswith="bench-u").count() == spec.users
    # Made before participant_count was filled in (the app reads it: inbox rows, event queueing).
    counted = not Conversation.objects.filter(pk=info["long"]["id"], participant_count=0).exists()
    return info if long_ok and users_ok and counted else None


def _store(spec: Spec, info: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name VARCHAR(40) PRIMARY KEY, spec TEXT NOT NULL, "
            "info TEXT NOT NULL, created_at VARCHAR(40) NOT NULL)"
        )
        cursor.execute(f"DELETE FROM {META_TABLE} WHERE name = %s", ["dataset"])
        cursor.execute(
            f"INSERT INTO {META_TABLE} (name, spec, info, created_at) VALUES (%s, %s, %s, %s)",
            ["dataset", json.dumps(asdict(spec)), json.dumps(info), datetime.now(timezone.utc).isoformat()],
        )


def _analyze() -> None:
    """Fresh optimizer statistics after the bulk load."""
    with connection.cursor() as cursor:
        for model in (User, Conversation, ConversationMembership, Message):
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"ANALYZE TABLE {table}" if connection.vendor == "mysql" else f"ANALYZE {table}")
            if connection.vendor == "mysql":
                cursor.fetchall()


def ensure(spec: Spec, log=print) -> dict:
    """The dataset's ids (see _generate), generating it first unless it is already there."""
    spec.check()
    create_database_if_missing()
    call_command("migrate", verbosity=0, interactive=False)
    info = _stored(spec)
    if info is not None:
        log(f"Dataset: reusing {describe(spec)} in {database_name()}")
        return info
    log(f"Dataset: generating {describe(spec)} in {database_name()} (the database is recreated)")
    _recreate_database()
    call_command("migrate", verbosity=0, interactive=False)
    start = time.perf_counter()
    info = _generate(spec, log)
    _analyze()
    _store(spec, info)
    log(f"Dataset: generated in {time.perf_counter() - start:.0f} s")
    return info


# --- Rows -------------------------------------------------------------------------


def _insert(model, names: list[str], rows) -> int:
    """
    Bulk INSERT of tuples (values in the order of `names`) in batches of BATCH rows. Every other
    column with a default gets it, so a field added later (with a Python default only, as Django
    makes them) does not break the generator.
    """
    fields = [model._meta.get_field(name) for name in names]
    defaults = [f for f in model._meta.concrete_fields
                if f not in fields and f.has_default() and not f.primary_key]
    fields += defaults
    default_values = tuple(f.get_default() for f in defaults)
    rows = (tuple(row) + default_values for row in rows)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    preps = [lambda v, f=f: None if v is None else f.get_db_prep_save(v, connection) for f in fields]
    batch, total = [], 0
    with connection.cursor() as cursor:
        for row in rows:
            batch.append([prep(v) for prep, v in zip(preps, row)])
            if len(batch) == BATCH:
                cursor.executemany(sql, batch)
                total, batch = total + len(batch), []
        if batch:
            cursor.executemany(sql, batch)
            total += len(batch)
    return total


USER_FIELDS = ["user_id", "email", "first_name", "last_name", "phone_number", "role", "password",
               "is_active", "is_staff", "is_superuser", "created_at"]
CONVERSATION_FIELDS = ["conversation_id", "created_by", "created_at", "message_count", "last_message",
                       "last_activity_at", "direct_key", "participant_count"]
MESSAGE_FIELDS = ["message_id", "conversation", "sender", "message_body", "sent_at", "edited_at", "is_deleted"]
MEMBERSHIP_FIELDS = ["conversation", "user", "joined_at", "last_read_at"]
# A denormalised per-member unread counter, when the model has one (filled in exactly).
HAS_UNREAD_COUNT = any(f.name == "unread_count" for f in ConversationMembership._meta.concrete_fields)
if HAS_UNREAD_COUNT:
    MEMBERSHIP_FIELDS.append("unread_count")


def _membership(conversation_id, user, joined_at, messages: list, behind: int) -> tuple:
    """A member who has read all but the last `behind` messages."""
    behind = min(behind, len(messages) - 1)
    marker = messages[len(messages) - 1 - behind][4]  # sent_at
    row = (conversation_id, user, joined_at, marker)
    if HAS_UNREAD_COUNT:  # messages from others after the marker, tombstones excluded
        row += (sum(1 for m in messages[len(messages) - behind:] if m[2] != user and not m[6]),)
    return row


WORDS = (
    "hey ok sure thanks see you tomorrow lunch meeting at noon the build is green again did you "
    "push the fix can we talk later sounds good I will call you back when I land running late "
    "sorry traffic is terrible what time works for you great idea let me check and get back"
).split()


class _Generator:
    def __init__(self, spec: Spec):
        self.spec = spec
        self.rng = random.Random(20240101)
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        # Message bodies of realistic lengths: mostly short, a few long.
        self.bodies = [
            " ".join(self.rng.choice(WORDS) for _ in range(max(1, int(self.rng.paretovariate(1.5) * 4))))[:4000]
            for _ in range(2000)
        ]

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def messages(self, conversation_id, senders, times, keep=()) -> tuple[list, dict]:
        """Message rows at the given times, and {index: message_id} for the indexes in keep."""
        rows, kept, rng = [], {}, self.rng
        last = len(times) - 1
        for i, sent_at in enumerate(times):
            message_id = self.uuid()
            roll = rng.random()
            deleted = roll < 0.01 and i != last
            rows.append((
                message_id,
                conversation_id,
                senders[0] if rng.random() < 0.5 else senders[1],
                "" if deleted else rng.choice(self.bodies),
                sent_at,
                sent_at + timedelta(minutes=1) if 0.01 <= roll < 0.03 else None,
                deleted,
            ))
            if i in keep or i == last:
                kept[i] = message_id
        return rows, kept


def _conversation(gen: _Generator, pair, times, keep=()):
    """Rows for one two-person conversation: (conversation row, memberships, messages, kept ids)."""
    a, b = pair
    conversation_id = gen.uuid()
    messages, kept = gen.messages(conversation_id, pair, times, keep)
    last = len(times) - 1
    created = times[0] - timedelta(minutes=1)
    conversation = (conversation_id, a, created, len(times), kept[last], times[last],
                    ":".join(sorted((a.hex, b.hex))), 2)
    behind = [gen.rng.choice([0, 0, 0, 1, 2, 3, 5]) for _ in pair]
    memberships = [_membership(conversation_id, user, created, messages, n) for user, n in zip(pair, behind)]
    return conversation, memberships, messages, kept


def _generate(spec: Spec, log) -> dict:
    gen, n = _Generator(spec), spec.users
    rng = gen.rng
    k = spec.conversations_per_user // 2
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:  # the rows are consistent by construction
            cursor.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
    start = time.perf_counter()
    password = make_password(PASSWORD)
    user_ids = [gen.uuid() for _ in range(n)]
    _insert(User, USER_FIELDS, (
        (uid, EMAIL.format(i), "Bench", f"User {i}", "", "guest", password, True, False, False,
         gen.now - timedelta(days=60))
        for i, uid in enumerate(user_ids)
    ))
    _insert(EventStream, ["user", "last_event_id"], ((uid, 0) for uid in user_ids))  # as the app makes one per user
    log(f"  {n:,} users")

    # Regular conversations, in groups of ~BATCH messages, one transaction each.
    pairs = [(user_ids[i], user_ids[(i + d) % n]) for i in range(n) for d in range(1, k + 1)]
    per_group = max(1, BATCH // spec.messages_per_conversation)
    for first in range(0, len(pairs), per_group):
        conversations, memberships, messages = [], [], []
        for pair in pairs[first:first + per_group]:
            t = gen.now - timedelta(days=30) + timedelta(seconds=rng.uniform(0, 25 * 86400))
            times = []
            for _ in range(spec.messages_per_conversation):
                t += timedelta(seconds=rng.uniform(1, 600), microseconds=rng.randrange(1, 10**6))
                times.append(t)
            c, m, msgs, _ = _conversation(gen, pair, times)
            conversations.append(c)
            memberships += m
            messages += msgs
        with transaction.atomic():
            _insert(Conversation, CONVERSATION_FIELDS, conversations)
            _insert(ConversationMembership, MEMBERSHIP_FIELDS, memberships)
            _insert(Message, MESSAGE_FIELDS, messages)
    log(f"  {len(pairs):,} conversations, {len(pairs) * spec.messages_per_conversation:,} messages "
        f"({time.perf_counter() - start:.0f} s)")

    owner = user_ids[0]
    info = {"owner": str(owner), "users": n}
    for name, partner, size, step in (
        ("medium", user_ids[n // 2 + 1], spec.medium_messages, timedelta(seconds=60)),
        ("long", user_ids[n // 2], spec.long_messages, timedelta(seconds=1)),
    ):
        info[name] = _big_conversation(gen, (owner, partner), size, step, log)
    return info


def _big_conversation(gen: _Generator, pair, size: int, step: timedelta, log) -> dict:
    """A conversation of `size` messages, inserted in batches (it may not fit in memory at once)."""
    start = time.perf_counter()
    base = gen.now - timedelta(hours=1) - size * step
    deep_index = size - (DEEP - PAGE_SIZE)  # ?before=<it> is the page 1,000 messages deep
    cursor_indexes = [int(size * (0.05 + 0.9 * j / 15)) for j in range(16)]
    keep = {deep_index, *cursor_indexes}
    conversation_id, created = gen.uuid(), base - timedelta(minutes=1)
    owner, partner = pair
    with transaction.atomic():
        _insert(Conversation, CONVERSATION_FIELDS,
                [(conversation_id, owner, created, 0, None, created, ":".join(sorted((owner.hex, partner.hex))), 2)])
    kept, tail = {}, []
    for first in range(0, size, BATCH * 4):
        times = [base + i * step for i in range(first, min(size, first + BATCH * 4))]
        rows, batch_kept = gen.messages(conversation_id, pair, times, {i - first for i in keep})
        with transaction.atomic():
            _insert(Message, MESSAGE_FIELDS, rows)
        kept.update({first + i: mid for i, mid in batch_kept.items()})
        tail = (tail + rows)[-6:]  # the newest messages, for the read markers
        done = first + len(times)
        if done % 200_000 == 0 or done == size:
            log(f"  {done:>10,} / {size:,} messages ({time.perf_counter() - start:.0f} s)")
    last_at = tail[-1][4]
    Conversation.objects.filter(pk=conversation_id).update(
        message_count=size, last_message_id=kept[size - 1], last_activity_at=last_at
    )
    with transaction.atomic():
        _insert(ConversationMembership, MEMBERSHIP_FIELDS, [
            _membership(conversation_id, owner, created, tail, 5),
            _membership(conversation_id, partner, created, tail, 0),
        ])
    return {
        "id": str(conversation_id),
        "partner": str(partner),
        "messages": size,
        "deep_anchor": str(kept[deep_index]),
        "cursors": [str(kept[i]) for i in cursor_indexes],
    }
