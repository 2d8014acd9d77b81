"""
The event outbox: fan-out off the request path. A change whose events go to more than
EVENTS_INLINE_RECIPIENTS people queues them, in its own transaction, as one EventOutbox row per
conversation (one INSERT whatever the number of recipients); after the commit a drain numbers
them into each recipient's stream (chats/stream.py), deletes the row in that same transaction,
and delivers them. Numbering costs a stream lock, an UPDATE and an Event row per recipient:
~0.1 ms each, most of a send to 1,000 people, which now ends after its one INSERT.

Smaller changes are numbered inline, as before (in the stream the moment they commit), unless
their conversation still has rows queued: stream.record checks that in the query that locks the
streams, and if so the change queues its own events behind them.

Ordering, the guarantee:
- Per conversation, events are numbered in the order their changes committed. Every change that
  records a conversation's events for its participants holds the conversation's row lock while
  it writes, so its outbox rows get ids in commit order; a drain numbers a conversation's rows in
  id order; and an inline change, under that same lock, sees every row committed before it (the
  check is a read of the latest committed rows: READ COMMITTED, Django's isolation level on
  MySQL/MariaDB and PostgreSQL's default) and queues behind them. The one change that does not
  take the lock, a member's own settings (membership.updated, to their own stream), commutes
  with the others: either order is one they could have committed in.
- Across conversations, a user's events may be numbered in another order than their changes
  committed (a queued message of a large group, then an inline one of a small conversation that
  committed after it, can come first).
- Each user's stream stays exact: 1, 2, 3... with no gap, in the order of the transactions that
  numbered them (drains included). So `GET /api/events/?since=`, `resume`, auth.ok's
  last_event_id and the sockets' gap checks need no change: an event exists once it is numbered.

Exactly once: a row is deleted in the transaction that numbers its events. Concurrent drains of
one conversation queue on its rows' locks (FOR UPDATE, in id order); the later one finds none.

Lock order: a drain locks one conversation's committed outbox rows (by id, in id order), then
streams (user id order). A change never takes an outbox lock: its check is a plain read in a
subquery of its stream-locking query, and queuing is an INSERT, which waits for no lock under READ
COMMITTED (no gap locks) or on PostgreSQL; and a drain never waits for a change's uncommitted row.
So drains and changes cannot wait for each other in a cycle, even in a transaction that records
more than once (the admin's forms run several services in one).

Crash safety: the row commits with the change. After the commit its process hands the key to its
drainer thread (each server worker runs one: gunicorn.conf.py; from a request, once its response
is complete), or, in a process without one (tests, management commands, Celery workers,
`make run`), drains it right away in the same thread. A process that stops between the two
leaves the row: every drainer thread sweeps rows older than EVENTS_OUTBOX_SWEEP_SECONDS (that
often), `manage.py drain_events` does it once, and the next change to that conversation queues
behind the row and drains it.
"""
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from chats import stream
from chats.models import Conversation, ConversationMembership, EventOutbox

logger = logging.getLogger(__name__)


def keys_of(frames: Iterable[tuple[UUID, dict]]) -> list[UUID]:
    """The distinct outbox keys of frames (recipient, frame), in order."""
    return list(dict.fromkeys(_keyed(frames)))


def _keyed(frames: Iterable[tuple[UUID, dict]]) -> Iterable[UUID]:
    """Each frame's key: its conversation, else its recipient (parsed once per shared frame)."""
    last_frame, last_key = None, None
    for user_id, frame in frames:
        if frame is not last_frame:
            value = frame.get("conversation_id")
            last_frame, last_key = frame, (value if isinstance(value, UUID) else UUID(str(value))) if value else None
        yield last_key or user_id


class Participants:
    """
    A recipient standing for every participant of a conversation (a frame to all of them, as a
    message is): `defer` queues it with one INSERT ... SELECT, so the database writes the
    participants into the outbox row itself, as they are at that point of the transaction (the
    caller holds the conversation's lock, as every change of its membership does). A send to
    1,000 people no longer reads 1,000 ids into Python to write them back (~2.5 ms in-process).
    Always queued: the caller uses it only for a conversation larger than EVENTS_INLINE_RECIPIENTS.
    """

    __slots__ = ("conversation_id",)

    def __init__(self, conversation_id: UUID):
        self.conversation_id = conversation_id


def defer(frames: Sequence[tuple[UUID | Participants, dict]]) -> list[UUID]:
    """
    Queue frames (recipient, frame) in the current transaction instead of numbering them: one
    row per conversation, one INSERT (and one INSERT ... SELECT per frame to a conversation's
    Participants, in its place among the rows). After the commit they are drained (`schedule`).
    Their keys.
    """
    now = timezone.now()
    runs_by_key: dict[UUID, list] = {}  # the rows not inserted yet, in order
    keys: dict[UUID, None] = {}
    previous, members = None, set()  # the last frame and the recipients of its run
    for key, (user_id, frame) in zip(_keyed(frames), frames):
        keys[key] = None
        if isinstance(user_id, Participants):
            # Rows of a key drain in id order: what came before it is inserted first.
            _insert(runs_by_key, now)
            _insert_for_participants(key, frame, user_id.conversation_id, now)
            previous = None
            continue
        runs = runs_by_key.setdefault(key, [])
        # As stream.record groups them: one run per frame given to several people in a row.
        if frame is previous and runs and runs[-1][0] is frame and user_id not in members:
            runs[-1][1].append(user_id.hex)
        else:
            runs.append([frame, [user_id.hex]])
            members = set()
        members.add(user_id)
        previous = frame
    _insert(runs_by_key, now)
    queued = list(keys)
    transaction.on_commit(lambda: schedule(queued), robust=True)
    return queued


def _insert(runs_by_key: dict[UUID, list], now) -> None:
    if runs_by_key:
        EventOutbox.objects.bulk_create(
            [EventOutbox(key=key, runs=runs, created_at=now) for key, runs in runs_by_key.items()]
        )
        runs_by_key.clear()


def _insert_for_participants(key: UUID, frame: dict, conversation_id: UUID, now) -> None:
    """One outbox row [[frame, [every participant's id as hex]]], its ids aggregated by the database."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    user = quote(ConversationMembership._meta.get_field("user").column)
    conversation = quote(ConversationMembership._meta.get_field("conversation").column)
    if connection.vendor == "postgresql":  # a uuid column: its text has dashes, the rows' hex has none
        runs = f"('[[' || %s || ',' || json_agg(replace({user}::text, '-', ''))::text || ']]')::jsonb"
    elif connection.vendor == "mysql":  # MariaDB's uuid type (10.7+) has dashes, MySQL's char(32) none
        # (MariaDB builds the array within group_concat_max_len: 1 MB, about 29,000 participants)
        runs = f"CONCAT('[[', %s, ',', JSON_ARRAYAGG(REPLACE({user}, '-', '')), ']]')"
    else:  # SQLite: char(32) as on MySQL
        runs = f"'[[' || %s || ',' || json_group_array({user}) || ']]'"
    fields = [EventOutbox._meta.get_field(name) for name in ("key", "runs", "created_at")]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(EventOutbox._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT %s, {runs}, %s FROM {quote(ConversationMembership._meta.db_table)} "
            f"WHERE {conversation} = %s GROUP BY {conversation}",
            [
                fields[0].get_db_prep_value(key, connection),
                json.dumps(frame),
                fields[2].get_db_prep_value(now, connection),
                Conversation._meta.pk.get_db_prep_value(conversation_id, connection),
            ],
        )


def drain(key: UUID) -> int:
    """
    Number a conversation's queued rows into their recipients' streams, in id order, and delete
    them, in one transaction; deliver them after its commit. How many events it numbered.
    """
    from chats import events  # it imports this module

    with transaction.atomic():
        # The committed rows, then those locked by id: a locking read of the key's range would
        # also wait for a row a change inserted and has not committed yet (InnoDB), while that
        # change may go on to lock streams this drain holds.
        ids = list(EventOutbox.objects.filter(key=key).order_by("id").values_list("id", flat=True))
        if not ids:
            return 0
        rows = list(EventOutbox.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", "runs"))
        if not rows:  # another drain took them
            return 0
        numbered = stream.record(
            (UUID(user_hex), frame) for _row_id, runs in rows for frame, user_hexes in runs for user_hex in user_hexes
        )
        EventOutbox.objects.filter(id__in=[row_id for row_id, _runs in rows]).delete()
        events.announce(numbered)
    return sum(len(recipients) for _frame, recipients in numbered)


def sweep(*, older_than: float | None = None, limit: int = 1000) -> int:
    """
    Drain every conversation with a row queued more than `older_than` seconds ago (default
    EVENTS_OUTBOX_SWEEP_SECONDS): rows a process left when it stopped between its commit and its
    drain. How many events it numbered.
    """
    age = settings.EVENTS_OUTBOX_SWEEP_SECONDS if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=age)
    # Oldest first along the primary key: ids grow with created_at.
    keys = EventOutbox.objects.filter(created_at__lte=cutoff).order_by("id").values_list("key", flat=True)[:limit]
    return sum(drain(key) for key in dict.fromkeys(keys))


def schedule(keys: Sequence[UUID]) -> None:
    """
    After the commit that queued rows of these keys: to this process's drainer, or drained now.
    In a request, the drainer gets them when its response is complete (request_finished): numbering
    a thousand events is Python work that would share the process's CPU with the rest of the
    request, and the sender waits for that, not for the delivery.
    """
    drainer = _drainer
    if drainer is None or not drainer.is_alive():
        for key in keys:
            drain(key)
        return
    held = getattr(_request, "keys", None)
    if held is not None:
        held.extend(keys)
    else:
        drainer.put(keys)


_request = threading.local()  # .keys: those queued by the current request of this thread, if any


def _hold(**_kwargs) -> None:
    _hand_over()  # a request of this thread that never finished (it cannot hold them for ever)
    _request.keys = []


def _hand_over(**_kwargs) -> None:
    keys, _request.keys = getattr(_request, "keys", None), None
    drainer = _drainer
    if keys and drainer is not None:
        drainer.put(keys)  # a drainer that died since: its process's next one, or a sweep, drains them


class Drainer(threading.Thread):
    """
    A server process's drainer: drains the keys its requests queued, one at a time (a key
    queued again while it waits is drained once), and sweeps every EVENTS_OUTBOX_SWEEP_SECONDS.
    A drain that fails (the database away) leaves its rows to the next sweep.
    """

    def __init__(self) -> None:
        super().__init__(name="events-outbox", daemon=True)
        self._keys: queue.SimpleQueue[UUID | None] = queue.SimpleQueue()
        self._waiting: set[UUID] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def put(self, keys: Sequence[UUID]) -> None:
        with self._lock:
            fresh = [key for key in keys if key not in self._waiting]
            self._waiting.update(fresh)
        for key in fresh:
            self._keys.put(key)

    def stop(self) -> None:
        """Ends the thread after the drain in progress (tests; a server's thread ends with its process)."""
        self._stopping = True
        self._keys.put(None)
        self.join()

    def run(self) -> None:
        try:
            self._serve()
        finally:
            connections.close_all()  # this thread's

    def _serve(self) -> None:
        period = settings.EVENTS_OUTBOX_SWEEP_SECONDS
        next_sweep = time.monotonic() + period
        while not self._stopping:
            try:
                key = self._keys.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                key = None
            if self._stopping:
                return
            if key is not None:
                with self._lock:
                    self._waiting.discard(key)  # rows queued from now on need another drain
                self._safely(drain, key)
            if time.monotonic() >= next_sweep:
                self._safely(self._sweep)
                next_sweep = time.monotonic() + period

    @staticmethod
    def _sweep() -> None:
        numbered = sweep()
        if numbered:  # late by EVENTS_OUTBOX_SWEEP_SECONDS or more: never silent
            logger.warning("The outbox sweep numbered %d events left queued (a worker stopped, or drains lag).",
                           numbered)

    def _safely(self, work, *args) -> None:
        close_old_connections()  # as a request would: a broken or too old connection is replaced
        try:
            work(*args)
        except Exception:
            logger.warning(
                "Draining the event outbox failed; its rows wait for the next sweep (within %ss).",
                settings.EVENTS_OUTBOX_SWEEP_SECONDS, exc_info=True,
            )


_drainer: Drainer | None = None
_drainer_lock = threading.Lock()


def start_drainer() -> Drainer:
    """This process's drainer thread, started once (gunicorn.conf.py: in each worker, after the fork)."""
    global _drainer
    with _drainer_lock:
        if _drainer is None or not _drainer.is_alive():
            _drainer = Drainer()
            _drainer.start()
            request_started.connect(_hold, dispatch_uid="chats.outbox.hold")
            request_finished.connect(_hand_over, dispatch_uid="chats.outbox.hand_over")
        return _drainer


def stop_drainer() -> None:
    """Stops this process's drainer: drains happen in the committing thread again (tests)."""
    global _drainer
    with _drainer_lock:
        drainer, _drainer = _drainer, None
        request_started.disconnect(dispatch_uid="chats.outbox.hold")
        request_finished.disconnect(dispatch_uid="chats.outbox.hand_over")
    _request.keys = None
    if drainer is not None:
        drainer.stop()
