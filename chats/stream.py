"""
Each user's event stream: the frames their sockets are sent, numbered and kept, so a client
that was away can ask for exactly what it missed (GET /api/events/?since=, the socket's
`resume` frame) and a socket can tell when it missed something.

A user's events are numbered 1, 2, 3... (`event_id`) with no gap, in the order their
transactions commit: a transaction that records events locks its recipients' EventStream rows
(all at once, in user id order, so two transactions never wait for each other in a cycle),
takes the next numbers, and writes its Event rows, all before it commits. A transaction that
rolls back takes its numbers back with it; the next one gets them. So when event N of a user
exists, events 1..N-1 of theirs have committed too, and "the events after N" is an exact,
ordered answer: a missing N+1 below the stream's position means it was pruned
(`CursorExpired`).

Writes: `record`, called by chats/events.py inside the transaction. Reads: `position`,
`after`, `check_cursor`.
"""
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chats.models import Event, EventStream, User
from chats.selectors import for_update


class CursorExpired(Exception):
    """The events after this cursor are no longer kept: reload the state over REST."""


class CursorAhead(Exception):
    """A cursor past the stream's position: no such event was ever sent to this user."""


def record(frames: Iterable[tuple[UUID, dict]]) -> list[tuple[dict, dict[UUID, int]]]:
    """
    Number and store frames (recipient, frame) inside the current transaction; each recipient's
    frames in the order given. Returns them ready to deliver after commit, as runs of one frame
    (the same object given for several recipients in a row) with each recipient's `event_id`:
    [(frame, {user_id: event_id})]. A recipient deleted earlier in the transaction gets none.
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
    next_id = _take_numbers(counts)
    numbered, rows = [], []
    now = timezone.now()
    for frame, user_ids in runs:
        recipients = {}
        for user_id in user_ids:
            if user_id not in next_id:  # deleted in this same transaction: no stream to write to
                continue
            recipients[user_id] = event_id = next_id[user_id]
            next_id[user_id] = event_id + 1
            frame_of_theirs = {**frame, "event_id": event_id}
            rows.append(Event(user_id=user_id, event_id=event_id, frame=frame_of_theirs, created_at=now))
        if recipients:
            numbered.append((frame, recipients))
    Event.objects.bulk_create(rows)
    return numbered


def user_saved(sender, instance: User, created: bool, raw: bool = False, **kwargs) -> None:
    """post_save of User: a new user's stream row, made with them (so none is made under load)."""
    if created and not raw:
        EventStream.objects.bulk_create([EventStream(user_id=instance.pk)], ignore_conflicts=True)


def _take_numbers(counts: dict[UUID, int]) -> dict[UUID, int]:
    """Lock the recipients' streams (in user id order) and advance them; the first new number of each."""
    assert transaction.get_connection().in_atomic_block, "events are recorded inside the change's transaction"
    user_ids = sorted(counts)
    positions = _lock_streams(user_ids)
    missing = [user_id for user_id in user_ids if user_id not in positions]
    # Every user gets a stream row when they are made (user_saved, migration 0005). One made by a
    # bulk insert that skipped it gets it here: locked after the others, out of order, so two
    # such first events at once may deadlock (the database refuses one: 503, retried by clients).
    if missing:
        existing = list(User.objects.filter(pk__in=missing).order_by("pk").values_list("pk", flat=True))
        EventStream.objects.bulk_create([EventStream(user_id=user_id) for user_id in existing], ignore_conflicts=True)
        positions.update(_lock_streams(existing))
        user_ids = [user_id for user_id in user_ids if user_id in positions]
    by_count: dict[int, list[UUID]] = defaultdict(list)
    for user_id in user_ids:
        by_count[counts[user_id]].append(user_id)
    for count, same in by_count.items():  # usually one statement: every recipient gets as many events
        EventStream.objects.filter(user_id__in=same).update(last_event_id=F("last_event_id") + count)
    return {user_id: positions[user_id] + 1 for user_id in user_ids}


def _lock_streams(user_ids: list[UUID]) -> dict[UUID, int]:
    return dict(
        for_update(EventStream.objects.filter(user_id__in=user_ids))
        .order_by("user_id")
        .values_list("user_id", "last_event_id")
    )


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
    return list(
        events.order_by("event_id")
        .values_list("frame", flat=True)[:limit]
    )


def retention_days() -> int:
    return settings.EVENTS_RETENTION_DAYS


def prune(*, days: int | None = None, batch: int = 10_000) -> int:
    """Delete events older than `days` (EVENTS_RETENTION_DAYS), a batch per transaction; how many."""
    cutoff = timezone.now() - timedelta(days=retention_days() if days is None else days)
    deleted = 0
    while True:
        ids = list(Event.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += Event.objects.filter(id__in=ids).delete()[0]
