"""
Every non-trivial read, as querysets already scoped to the requesting user and
shaped for the API (fixed number of queries per page, whatever its length).
"""
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone

from django.db import connection, connections, router
from django.db.transaction import TransactionManagementError
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, Window
from django.db.models.functions import Coalesce, RowNumber

from chats.models import (
    MAX_INLINE_PARTICIPANTS,
    Conversation,
    ConversationMembership,
    Message,
    MessageEdit,
    MessagePin,
    User,
)
from chats.prepared import PreparedPages, PreparedRead, attnames


def _conversation_ids_of(user: User) -> QuerySet:
    # Served by the unique (user, conversation) membership index.
    return ConversationMembership.objects.filter(user=user).values("conversation_id")


def conversations_of(*, user: User) -> QuerySet[Conversation]:
    """The conversations the user takes part in, bare (for access checks)."""
    return Conversation.objects.filter(pk__in=_conversation_ids_of(user))


_CONVERSATION_OF_PARTICIPANT = PreparedRead(
    lambda user, conversation: conversations_of(user=user).filter(pk=conversation).values_list(*attnames(Conversation)),
    model=Conversation,
    values={"user": User._meta.pk, "conversation": Conversation._meta.pk},
)


def for_update(queryset: QuerySet) -> QuerySet:
    """
    `select_for_update()` for a row about to be changed (not its key): FOR NO KEY UPDATE where
    the database has it (PostgreSQL), the lock PostgreSQL's own UPDATE takes. A plain FOR UPDATE
    also blocks other transactions' foreign-key checks (FOR KEY SHARE, made at their COMMIT:
    Django's constraints are deferred), which deadlocked a send that held a conversation's lock
    and a stream's against a create holding a user's row (integration/test_db_outage.py).
    """
    alias = queryset.db
    return queryset.select_for_update(no_key=connections[alias].features.has_select_for_no_key_update)


_CONVERSATION_FOR_UPDATE = PreparedRead(
    lambda conversation: for_update(Conversation.objects.all())
    .order_by()
    .filter(pk=conversation)
    .values_list(*attnames(Conversation)),
    model=Conversation,
    values={"conversation": Conversation._meta.pk},
)


def conversation_for_update(*, conversation_id) -> Conversation:
    """
    The conversation, its row locked until the transaction ends (`for_update`):
    `select_for_update().get(pk=...)`, compiled once. Needs a transaction.
    """
    if connections[router.db_for_write(Conversation)].get_autocommit():
        raise TransactionManagementError("conversation_for_update needs a transaction.")
    conversation = _CONVERSATION_FOR_UPDATE.instance(values={"conversation": conversation_id}, for_write=True)
    if conversation is None:
        raise Conversation.DoesNotExist
    return conversation


_MEMBER_IDS = PreparedRead(
    lambda conversation: ConversationMembership.objects.filter(conversation_id=conversation)
    .order_by()
    .values_list("user_id", flat=True),
    model=ConversationMembership,
    values={"conversation": Conversation._meta.pk},
)


def member_ids(*, conversation_id) -> list:
    """The ids of a conversation's participants (unordered), by a statement compiled once."""
    return _MEMBER_IDS.read(values={"conversation": conversation_id})


def conversation_of_participant(*, user: User, conversation_id) -> Conversation | None:
    """The conversation with this id if the user takes part in it, else None (a malformed id too)."""
    try:
        conversation_id = uuid.UUID(str(conversation_id))
    except ValueError:
        return None
    return _CONVERSATION_OF_PARTICIPANT.instance(values={"user": user.pk, "conversation": conversation_id})


def conversation_list_for_user(*, user: User, archived: bool | None = None) -> QuerySet[Conversation]:
    """
    The user's conversations with everything the API shows loaded up front,
    including the user's read marker and `unread_count`, read from their membership
    row (kept exact by the services), so a long history costs nothing here.
    `archived`: only those the user archived (True), only those they did not (False: the
    inbox), or all (None); filtered in the membership subquery, no extra query or join.
    """
    mine = ConversationMembership.objects.filter(conversation=OuterRef("pk"), user=user)
    ids = _conversation_ids_of(user)
    if archived is not None:
        ids = ids.filter(archived_at__isnull=not archived)
    return (
        Conversation.objects.filter(pk__in=ids)
        .annotate(
            my_last_read_at=Subquery(mine.values("last_read_at")),
            unread_count=Coalesce(Subquery(mine.values("unread_count")), 0),
            my_role=Subquery(mine.values("role")),
            unread_mentions=Coalesce(Subquery(mine.values("unread_mentions")), 0),
        )
        .select_related("created_by", "last_message__sender")
    )


# The inbox page as plain rows: the list endpoint is the hottest read, and building
# model instances (conversation, creator, last message and its sender) costs more than
# the queries. Shaped into the API by serializers.conversation_rows_representation.
CONVERSATION_ROW_FIELDS = (
    "conversation_id", "created_at", "last_activity_at", "message_count", "my_last_read_at", "unread_count",
    "my_role", "title", "description", "avatar_id", "participant_count",
    "unread_mentions",
    "created_by__user_id", "created_by__first_name", "created_by__last_name",
    "last_message__message_id", "last_message__conversation_id", "last_message__message_body",
    "last_message__sent_at", "last_message__edited_at", "last_message__is_deleted",
    "last_message__parent_message_id", "last_message__client_id", "last_message__has_attachments",
    "last_message__reaction_summary", "last_message__mentions",
    "last_message__sender__user_id", "last_message__sender__first_name", "last_message__sender__last_name",
)


def conversation_rows(queryset: QuerySet[Conversation]) -> QuerySet:
    """`conversation_list_for_user` (filtered, ordered) as dicts of CONVERSATION_ROW_FIELDS."""
    return queryset.prefetch_related(None).values(*CONVERSATION_ROW_FIELDS)


def _from_memberships(user) -> QuerySet:
    """
    `conversation_rows(conversation_list_for_user(user=user))` driven by the user's memberships:
    the read marker and unread count are the membership's own columns, not two subqueries per
    conversation (a quarter less database time for a page of twenty), in Conversation.Meta.ordering.
    """
    own = {"conversation_id", "my_last_read_at", "unread_count", "my_role", "unread_mentions"}
    ordering = [
        f"-conversation__{field[1:]}" if field.startswith("-") else f"conversation__{field}"
        for field in Conversation._meta.ordering
    ]
    return (
        ConversationMembership.objects.filter(user=user, archived_at__isnull=True)
        .order_by(*ordering)
        .values(
            "conversation_id",
            "unread_count",
            "unread_mentions",
            my_last_read_at=F("last_read_at"),
            my_role=F("role"),
            **{name: F(f"conversation__{name}") for name in CONVERSATION_ROW_FIELDS if name not in own},
        )
    )


_INBOX = PreparedRead(
    lambda user, offset, limit: _from_memberships(user)[offset:limit],
    model=Conversation,
    values={"user": User._meta.pk},
    uuids_as_text=True,  # only rendered
)


def inbox_rows(*, user: User) -> PreparedPages:
    """
    The user's inbox (archived conversations left out) in its default order (Conversation.Meta.ordering)
    as CONVERSATION_ROW_FIELDS dicts, for a paginator: the rows of
    `conversation_rows(conversation_list_for_user(user=user, archived=False))`
    (test_prepared pins them equal), compiled once per page shape.
    """
    return PreparedPages(_INBOX, user=user.pk)


_PEOPLE_ORDER = tuple(f"user__{field}" for field in User._meta.ordering)
PARTICIPANT_ROW_FIELDS = ("user__user_id", "user__first_name", "user__last_name", "role")

_PARTICIPANTS = PreparedRead(
    # The first MAX_INLINE_PARTICIPANTS of each conversation only (a window over its memberships):
    # a page of large groups reads at most that many people per conversation.
    lambda ids: ConversationMembership.objects.filter(conversation_id__in=ids)
    .annotate(rank=Window(RowNumber(), partition_by=[F("conversation_id")], order_by=[F(f) for f in _PEOPLE_ORDER]))
    .filter(rank__lte=MAX_INLINE_PARTICIPANTS)
    .order_by(*_PEOPLE_ORDER)
    .values_list("conversation_id", *PARTICIPANT_ROW_FIELDS),
    model=ConversationMembership,
    values={"ids": Conversation._meta.pk},
    uuids_as_text=True,
)


def participants_by_conversation(conversation_ids: list) -> dict:
    """
    {str(conversation_id): [(user_id, first_name, last_name, role), ...]}: the first
    MAX_INLINE_PARTICIPANTS of each in User.Meta.ordering, one query; ids as text (they are only rendered).
    """
    people = {str(pk): [] for pk in conversation_ids}
    if not conversation_ids:
        return people
    for conversation_id, *person in _PARTICIPANTS.read(values={"ids": conversation_ids}):
        people[conversation_id].append(person)
    return people


def participant_rows(*, conversation: Conversation) -> QuerySet:
    """
    Every participant of a conversation with their role, in User.Meta.ordering, as dicts of
    PARTICIPANT_ROW_FIELDS + joined_at, for a paginator (one query per page on the membership's
    conversation index, users joined).
    """
    return (
        ConversationMembership.objects.filter(conversation=conversation)
        .order_by(*_PEOPLE_ORDER, "pk")
        .values(*PARTICIPANT_ROW_FIELDS, "joined_at")
    )


def conversation_row(*, conversation_id) -> dict | None:
    """
    A conversation as CONVERSATION_ROW_FIELDS without the viewer's own (read marker, unread
    count and mentions, role): what every recipient of its event shares, one query.
    """
    own = {"my_last_read_at", "unread_count", "my_role", "unread_mentions"}
    return (
        Conversation.objects.filter(pk=conversation_id)
        .values(*(name for name in CONVERSATION_ROW_FIELDS if name not in own))
        .first()
    )


def member_states(*, conversation_id) -> list[tuple]:
    """(user_id, unread_count, unread_mentions, role) of each participant: what differs between their copies."""
    return list(
        ConversationMembership.objects.filter(conversation_id=conversation_id)
        .order_by("role", "unread_count", "unread_mentions", "user_id")
        .values_list("user_id", "unread_count", "unread_mentions", "role")
    )


_CONVERSATION_TOTAL = PreparedRead(
    lambda user: ConversationMembership.objects.filter(user=user, archived_at__isnull=True)
    .order_by()
    .values("user")
    .annotate(total=Count("pk"))
    .values_list("total", flat=True),
    model=ConversationMembership,
    values={"user": User._meta.pk},
)


def conversation_total_for_user(*, user: User) -> int:
    """How many conversations are in the user's inbox (not archived): their memberships, on the user's index."""
    return next(iter(_CONVERSATION_TOTAL.read(values={"user": user.pk})), 0)


def unread_totals_for_user(*, user: User) -> dict:
    """
    Unread messages across the conversations the user has not muted, and unread mentions of them
    across all (a mention in a muted conversation still counts): one query.
    """
    return ConversationMembership.objects.filter(user=user).aggregate(
        unread_count=Coalesce(Sum("unread_count", filter=Q(muted=False)), 0),
        unread_mentions=Coalesce(Sum("unread_mentions"), 0),
    )


def unread_total_for_user(*, user: User) -> int:
    """Unread messages across the user's conversations they have not muted, in one query."""
    return unread_totals_for_user(user=user)["unread_count"]


def message_total_for_user(*, user: User) -> int:
    """Messages (tombstones included) across the user's conversations, from their stored counts."""
    return conversations_of(user=user).aggregate(total=Coalesce(Sum("message_count"), 0))["total"]


def message_history(*, message: Message) -> QuerySet[MessageEdit]:
    """Earlier versions of a message, oldest first."""
    return MessageEdit.objects.filter(message=message).order_by("replaced_at", "id")


def message_list_for_user(*, user: User) -> QuerySet[Message]:
    """Messages of every conversation the user takes part in."""
    return Message.objects.filter(conversation_id__in=_conversation_ids_of(user)).select_related(
        "sender"
    )


class NewestMessageIdsOfUser:
    """
    The ids of a user's messages across all their conversations, newest first, sliceable
    (`[offset:offset + limit]`) like the queryset a paginator takes, without the database
    sorting the user's whole history: the newest N messages all lie in the N most recently
    active conversations (each one's newest message is at least as new as anything in the
    others), so each of those gives its own newest N ids from the timeline index, and only
    those are merged. Two queries per page; for the first MERGE_LIMIT messages only.
    """

    MERGE_LIMIT = 200
    ordered = True  # for Django's Paginator

    def __init__(self, user: User):
        self.user = user

    def __getitem__(self, page: slice) -> list:
        depth = page.stop
        if depth <= page.start:
            return []
        active = conversations_of(user=self.user).filter(message_count__gt=0).order_by("-last_activity_at")
        # Ties with the Nth conversation's last activity are in too: their newest message may sort first.
        nth = active.values("last_activity_at")[depth - 1:depth]
        since = Coalesce(Subquery(nth), Value(datetime.min.replace(tzinfo=dt_timezone.utc)))
        conversation_ids = list(active.filter(last_activity_at__gte=since).values_list("pk", flat=True))
        if not conversation_ids:
            return []
        newest = [
            Message.objects.filter(conversation_id=pk)
            .order_by("-sent_at", "-message_id")
            .values("message_id", "sent_at")[:depth]
            for pk in conversation_ids
        ]
        parts, params = [], []
        for number, queryset in enumerate(newest):
            sql, part_params = queryset.query.sql_with_params()
            parts.append(f"SELECT * FROM ({sql}) part{number}")
            params.extend(part_params)
        sql = (
            f"SELECT message_id FROM ({' UNION ALL '.join(parts)}) newest "
            f"ORDER BY sent_at DESC, message_id DESC LIMIT {depth - page.start} OFFSET {page.start}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            to_python = Message._meta.pk.to_python
            return [to_python(row[0]) for row in cursor.fetchall()]


MESSAGE_ROW_FIELDS = (
    "message_id", "conversation_id", "message_body", "sent_at", "edited_at", "is_deleted",
    "parent_message_id", "client_id", "sender__user_id", "sender__first_name", "sender__last_name",
    "has_attachments", "reaction_summary", "mentions",
)


_MESSAGE_ROWS = PreparedRead(
    lambda ids: Message.objects.filter(pk__in=ids).order_by().values(*MESSAGE_ROW_FIELDS),
    model=Message,
    values={"ids": Message._meta.pk},
    uuids_as_text=True,  # only rendered
)


def message_rows(ids: list) -> list[dict]:
    """
    The messages of a timeline page (ids already chosen, and scoped, by the pagination), in
    the order of `ids`, as dicts of MESSAGE_ROW_FIELDS: one query on the primary key.
    """
    if not ids:
        return []
    rows = {row["message_id"]: row for row in _MESSAGE_ROWS.read(values={"ids": ids})}
    return [rows[key] for key in map(str, ids) if key in rows]


_TIMELINE_IDS = PreparedRead(
    lambda conversation, offset, limit: Message.objects.filter(conversation_id=conversation)
    .values_list("pk", flat=True)[offset:limit],
    model=Message,
    values={"conversation": Conversation._meta.pk},
    uuids_as_text=True,  # only looked up and rendered
)


def timeline_ids(*, conversation: Conversation) -> PreparedPages:
    """
    A conversation's message ids newest first (Message.Meta.ordering), for a paginator: the
    page is chosen on the timeline index alone, by a statement compiled once per page shape.
    """
    return PreparedPages(_TIMELINE_IDS, conversation=conversation.pk)


def message_list_for_conversation(*, conversation: Conversation) -> QuerySet[Message]:
    return Message.objects.filter(conversation=conversation).select_related("sender")


def user_search(*, user: User, term: str) -> QuerySet[User]:
    """
    People to talk to. Without a term: the people the user already shares a
    conversation with. With a term: anyone active whose name contains it, or
    whose email is exactly it (so an email address cannot be guessed piecemeal).
    """
    others = User.objects.filter(is_active=True).exclude(pk=user.pk)
    term = term.strip()
    if not term:
        return others.filter(memberships__conversation_id__in=_conversation_ids_of(user)).distinct()
    name_match = Q()
    for word in term.split():
        name_match &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
    return others.filter(name_match | Q(email=term.lower()))


def example_contact_id(*, user: User):
    """Someone the user already shares a conversation with, or None: the browsable API's example."""
    return user_search(user=user, term="").values_list("pk", flat=True).first()


def example_conversation_id(*, user: User):
    """The user's most recently active conversation, or None: the browsable API's example."""
    return conversations_of(user=user).order_by("-last_activity_at").values_list("pk", flat=True).first()


_USER_BY_ID = PreparedRead(
    lambda user: User.objects.order_by().filter(pk=user).values_list(*attnames(User)),
    model=User,
    values={"user": User._meta.pk},
)


def user_by_id(user_id) -> User | None:
    """
    The user with this id, or None: the request's user under JWT authentication (every request).
    One statement compiled once (no ORDER BY or LIMIT, which `.get()` adds), its row made a
    model instance as the ORM makes them (Model.from_db): a third of the CPU of `.get(pk=...)`.
    A malformed id raises ValidationError, as the ORM does.
    """
    return _USER_BY_ID.instance(values={"user": user_id})


PIN_ROW_FIELDS = (
    "pinned_at", "pinned_by__user_id", "pinned_by__first_name", "pinned_by__last_name",
    *(f"message__{name}" for name in MESSAGE_ROW_FIELDS),
)


def pin_rows(*, conversation: Conversation) -> QuerySet:
    """
    A conversation's pins, newest pin first (pin_conv_pinned_at_idx), as dicts of PIN_ROW_FIELDS:
    each with its message, the message's sender and who pinned it, joined (one query per page).
    """
    return (
        MessagePin.objects.filter(conversation=conversation)
        .order_by("-pinned_at", "-id")
        .values(*PIN_ROW_FIELDS)
    )


def read_marker_rows(*, conversation: Conversation) -> list[dict]:
    """
    Each participant's read marker, in User.Meta.ordering, as dicts: one query on the
    membership's conversation index, users joined (at most MAX_PARTICIPANTS rows).
    """
    return list(
        ConversationMembership.objects.filter(conversation=conversation)
        .order_by(*_PEOPLE_ORDER)
        .values("user__user_id", "user__first_name", "user__last_name", "last_read_at")
    )
