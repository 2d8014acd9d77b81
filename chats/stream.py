"""
Each user's event stream: the frames their sockets are sent, numbered and kept, so a client
that was away can ask for exactly what it missed (GET /api/events/?since=, the socket's
`resume` frame) and a socket can tell when it missed something.

A user's events are numbered 1, 2, 3... (`event_id`) with no gap, in the order the
transactions that number them commit: such a transaction locks its recipients' EventStream rows
(all at once, in user id order, so two transactions never wait for each other in a cycle),
takes the next numbers, and writes its Event rows, all before it commits. A transaction that
rolls back takes its numbers back with it; the next one gets them. So when event N of a user
exists, events 1..N-1 of theirs have committed too, and "the events after N" is an exact,
ordered answer: a missing N+1 below the stream's position means it was pruned
(`CursorExpired`).

Which transaction numbers a change's events: the change's own, when they go to at most
EVENTS_INLINE_RECIPIENTS people; otherwise a drain of the event outbox just after it commits
(chats/outbox.py), off the request. Hence the order a user sees:
- within one conversation, the order in which its changes committed (a change numbered inline
  first checks, in the query that locks the streams, that none of its conversation's events
  are still queued, and queues its own behind them if some are);
- across conversations, the order in which they were numbered: a queued event of one
  conversation may come after an inline one of another that committed later.

Writes: `record`, called inside the transaction by chats/events.py and chats/outbox.py.
Reads: `position`, `after`, `check_cursor`.
"""
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chats.models import Event, EventFrame, EventOutbox, EventStream, User


class CursorExpired(Exception):
    """The events after this cursor are no longer kept: reload the state over REST."""


class CursorAhead(Exception):
    """A cursor past the stream's position: no such event was ever sent to this user."""


def record(
    frames: Iterable[tuple[UUID, dict]], *, unless_queued: Sequence[UUID] = ()
) -> list[tuple[dict, dict[UUID, int]]] | None:
    """
    Number and store frames (recipient, frame) inside the current transaction; each recipient's
    frames in the order given. Returns them ready to deliver after commit, as runs of one frame
    (the same object given for several recipients in a row) with each recipient's `event_id`:
    [(frame, {user_id: event_id})]. A recipient deleted earlier in the transaction gets none.

    `unless_queued`: outbox keys (conversation ids) whose queued rows must be numbered first.
    If any of them has a row in the outbox, nothing is numbered and None is returned: the caller
    queues its frames behind them (chats/outbox.py). The check rides on the query that locks
    the streams, so it costs no round trip.
    """
    runs: list[tuple[dict, dict[UUID, None]]] = []  # (frame, its recipients, in order)
    for user_id, frame in frames:
        if runs and runs[-1][0] is frame and user_id not in runs[-1][1]:
            runs[-1][1][user_id] = None
        else:
            runs.append((frame, {user_id: None}))
    if not runs:
        return []
    counts: dict[UUID, int] = defaultdict(int)
    for _frame, user_ids in runs:
        for user_id in user_ids:
            counts[user_id] += 1
    next_id = _take_numbers(counts, unless_queued)
    if next_id is None:
        return None
    now = timezone.now()
    # One stored frame per run, whatever its number of recipients: 1,000 people are sent one
    # message as 1,000 small Event rows pointing to one EventFrame, not 1,000 copies of it.
    # Every supported database returns the ids of a bulk insert (SQLite 3.35+, MariaDB 10.5+, PostgreSQL).
    payloads = EventFrame.objects.bulk_create([EventFrame(frame=frame, created_at=now) for frame, _ in runs])
    numbered, rows = [], []
    for (frame, user_ids), payload in zip(runs, payloads):
        recipients = {}
        for user_id in user_ids:
            if user_id not in next_id:  # deleted in this same transaction: no stream to write to
                continue
            recipients[user_id] = event_id = next_id[user_id]
            next_id[user_id] = event_id + 1
            rows.append((user_id, event_id, payload.pk))
        if recipients:
            numbered.append((frame, recipients))
    _insert_events(rows, now)
    return numbered


def _insert_events(rows: list[tuple[UUID, int, int]], now) -> None:
    """
    INSERT the Event rows, a few hundred per statement. Written out rather than bulk_create():
    for a message to 1,000 people the ORM's per-field conversions took ~0.1 s of CPU, several
    times the database's own work.
    """
    connection = transaction.get_connection()
    created_at = connection.ops.adapt_datetimefield_value(now)
    table, quote = Event._meta.db_table, connection.ops.quote_name
    names = ("user", "event_id", "payload", "created_at")
    columns = ", ".join(quote(Event._meta.get_field(name).column) for name in names)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start:start + _INSERT_BATCH]
            params = []
            for user_id, (_, event_id, payload_id) in zip(_db_uuids([row[0] for row in batch]), batch):
                params += (user_id, event_id, payload_id, created_at)
            values = ", ".join(["(%s, %s, %s, %s)"] * len(batch))
            cursor.execute(f"INSERT INTO {quote(table)} ({columns}) VALUES {values}", params)


# Rows per INSERT: 800 parameters, under SQLite's oldest limit (999).
_INSERT_BATCH = 200


def user_saved(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    """post_save of User: a new user's stream row, made with them (so none is made under load)."""
    if created and not raw:
        EventStream.objects.bulk_create([EventStream(user_id=instance.pk)], ignore_conflicts=True)


def _take_numbers(counts: dict[UUID, int], unless_queued: Sequence[UUID] = ()) -> dict[UUID, int] | None:
    """
    Lock the recipients' streams (in user id order) and advance them; the first new number of
    each. None, with nothing advanced, if one of the `unless_queued` keys has rows in the outbox.
    """
    assert transaction.get_connection().in_atomic_block, "events are recorded inside the change's transaction"
    user_ids = sorted(counts)
    positions, queued = _lock_streams(user_ids, unless_queued)
    if queued:
        return None
    missing = [user_id for user_id in user_ids if user_id not in positions]
    # Every user gets a stream row when they are made (user_saved, migration 0005). One made by a
    # bulk insert that skipped it gets it here: locked after the others, out of order, so two
    # such first events at once may deadlock (the database refuses one: 503, retried by clients).
    if missing:
        existing = list(User.objects.filter(pk__in=missing).order_by("pk").values_list("pk", flat=True))
        EventStream.objects.bulk_create([EventStream(user_id=user_id) for user_id in existing], ignore_conflicts=True)
        positions.update(_lock_streams(existing)[0])
        user_ids = [user_id for user_id in user_ids if user_id in positions]
    by_count: dict[int, list[UUID]] = defaultdict(list)
    for user_id in user_ids:
        by_count[counts[user_id]].append(user_id)
    table, column = _stream_sql()
    with transaction.get_connection().cursor() as cursor:
        for count, same in by_count.items():  # usually one statement: every recipient gets as many events
            cursor.execute(
                f"UPDATE {table} SET last_event_id = last_event_id + %s WHERE {column} IN ({_marks(same)})",
                [count, *_db_uuids(same)],
            )
    return {user_id: positions[user_id] + 1 for user_id in user_ids}


def _lock_streams(user_ids: list[UUID], unless_queued: Sequence[UUID] = ()) -> tuple[dict[UUID, int], bool]:
    """
    SELECT ... FOR UPDATE of the streams, in user id order, and whether the outbox holds rows of
    `unless_queued` (the check chats/outbox.py explains). Like _insert_events, written out: the ORM's handling
    of a 1,000-id IN list cost more than the database's locking of those rows.
    """
    if not user_ids:
        return {}, False
    connection = transaction.get_connection()
    table, column = _stream_sql()
    lock = ""
    if connection.features.has_select_for_update:  # see selectors.for_update: no key lock where there is one
        lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else " FOR UPDATE"
    queued, params = "", _db_uuids(user_ids)
    if unless_queued:
        # A plain read in a subquery: a locking clause of the outer query locks no row of it
        # (PostgreSQL, MySQL and MariaDB alike), so this takes no outbox lock after stream locks.
        quote = connection.ops.quote_name
        outbox = quote(EventOutbox._meta.db_table)
        key = quote(EventOutbox._meta.get_field("key").column)
        queued = f", EXISTS (SELECT 1 FROM {outbox} WHERE {key} IN ({_marks(unless_queued)}))"
        params = _db_uuids(list(unless_queued)) + params
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column}, last_event_id{queued} FROM {table} WHERE {column} IN ({_marks(user_ids)})"
            f" ORDER BY {column}{lock}",
            params,
        )
        rows = cursor.fetchall()
    positions = {row[0] if isinstance(row[0], UUID) else UUID(row[0]): row[1] for row in rows}
    if unless_queued and not rows:  # no stream row to carry the answer (users made without one): ask
        return positions, EventOutbox.objects.filter(key__in=unless_queued).exists()
    return positions, any(row[2] for row in rows) if unless_queued else False


def _stream_sql() -> tuple[str, str]:
    quote = transaction.get_connection().ops.quote_name
    return quote(EventStream._meta.db_table), quote(EventStream._meta.get_field("user").column)


def _marks(values: list) -> str:
    return ", ".join(["%s"] * len(values))


def _db_uuids(user_ids: list[UUID]) -> list:
    """UUIDs as the database takes them: its own type where it has one, else 32 hex digits (Django's CHAR(32))."""
    return list(user_ids) if transaction.get_connection().features.has_native_uuid_field else [u.hex for u in user_ids]


def position(user_id: UUID) -> int:
    """The `event_id` of the user's latest event (0 before their first)."""
    return EventStream.objects.filter(user_id=user_id).values_list("last_event_id", flat=True).first() or 0


def check_cursor(user_id: UUID, since: int) -> int:
    """The stream's position, if the events after `since` can be given exactly; else CursorAhead/CursorExpired."""
    now_at = position(user_id)
    if since > now_at:
        raise CursorAhead(f"No event {since} was ever sent to you: your stream is at {now_at}.")
    if since < now_at and not Event.objects.filter(user_id=user_id, event_id=since + 1).exists():
        raise CursorExpired(f"The events after {since} are no longer kept ({retention_days()} days).")
    return now_at


def after(user_id: UUID, since: int, limit: int, *, until: int | None = None) -> list[dict]:
    """Up to `limit` of the user's frames after `since` (up to `until`), oldest first."""
    events = Event.objects.filter(user_id=user_id, event_id__gt=since)
    if until is not None:
        events = events.filter(event_id__lte=until)
    return [
        {**frame, "event_id": event_id}
        for event_id, frame in events.order_by("event_id").values_list("event_id", "payload__frame")[:limit]
    ]


def retention_days() -> int:
    return settings.EVENTS_RETENTION_DAYS


def prune(*, days: int | None = None, batch: int = 10_000) -> int:
    """Delete events older than `days` (EVENTS_RETENTION_DAYS), a batch per transaction; how many."""
    cutoff = timezone.now() - timedelta(days=retention_days() if days is None else days)
    deleted = 0
    while True:
        ids = list(Event.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            break
        deleted += Event.objects.filter(id__in=ids).delete()[0]
    # Then the frames they pointed to: each was written with its events, in the same instant.
    while True:
        ids = list(EventFrame.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        EventFrame.objects.filter(id__in=ids).delete()
