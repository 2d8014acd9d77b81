"""
Full-text search of message bodies (`?search=` on the message lists), on each database's own
engine, through its own index (migration 0010_message_search):

- PostgreSQL: `to_tsvector('simple', message_body) @@ to_tsquery('simple', ...)` on a GIN
  expression index (msg_body_fts_idx), ranked by ts_rank;
- MariaDB/MySQL: `MATCH (message_body) AGAINST (... IN BOOLEAN MODE)` on an InnoDB FULLTEXT
  index (msg_body_fts_idx), ranked by its relevance;
- SQLite: an FTS5 table over the messages' bodies (chats_message_fts, external content kept in
  step by triggers), ranked by bm25.

What the engines are given is never the raw text: the search is cut into words (letters and
digits; everything else, quotes and operators included, separates words), and every word must
start a word of the message (prefix match, case-insensitive). So no input is a syntax error.
"""
import html
import re

from django.db import connections
from django.db.models import DateTimeField, Expression, F, FloatField, Lookup, QuerySet

from chats.models import Message

# Words of a search: runs of letters and digits (never operators or quotes of any engine).
_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 10  # words of one search (more are dropped)
MAX_TERM_LENGTH = 64  # characters of one word (longer ones are cut: a prefix still matches)
# InnoDB's innodb_ft_min_token_size (default 3): shorter words are not in a FULLTEXT index.
MYSQL_MIN_TERM_LENGTH = 3
SNIPPET_LENGTH = 160  # characters of the body around the first match shown in `snippet`
SQLITE_TABLE = "chats_message_fts"


def search_terms(text: str, vendor: str) -> list[str]:
    """The words of a search, lower-cased, each once, as the engine of `vendor` can match them."""
    terms = []
    for word in _WORD.findall(text.lower()):
        word = word[:MAX_TERM_LENGTH]
        if vendor == "mysql" and len(word) < MYSQL_MIN_TERM_LENGTH:
            continue
        if word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def _engine_query(terms: list[str], vendor: str) -> str:
    """The engine's own query for "every term starts a word" (terms are letters and digits only)."""
    if vendor == "postgresql":
        return " & ".join(f"{term}:*" for term in terms)
    if vendor == "mysql":
        return " ".join(f"+{term}*" for term in terms)
    return " ".join(f'"{term}"*' for term in terms)  # FTS5


class _BodyMatches(Lookup):
    """
    `message_body__full_text=<engine query>`: the vendor's full-text test. A lookup, not a boolean
    expression: Django compares those with True on MySQL (`(MATCH ...) = True`), which MariaDB
    cannot answer from the FULLTEXT index (3 s in 1,000,000 messages instead of milliseconds).
    """

    lookup_name = "full_text"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        raise NotImplementedError(f"No full-text search for {connection.vendor}.")

    def as_postgresql(self, compiler, connection):
        # The matches' ids first, from the GIN index alone (an InitPlan), then those rows by primary
        # key. Given `... @@ ...` beside the caller's conversations, the planner, which guesses 0.5%
        # to 2% of all messages match, ANDed the GIN bitmap with the timeline index of every
        # conversation of the caller: a read of all they can see (83 ms in 1,000,000 messages).
        alias = compiler.quote_name_unless_alias(self.lhs.alias)
        return (
            f"{alias}.message_id = ANY(ARRAY(SELECT hit.message_id FROM chats_message hit "
            "WHERE to_tsvector('simple', hit.message_body) @@ to_tsquery('simple', %s)))",
            [self.rhs],
        )

    def as_mysql(self, compiler, connection):
        body, params = compiler.compile(self.lhs)
        return f"MATCH ({body}) AGAINST (%s IN BOOLEAN MODE)", [*params, self.rhs]

    def as_sqlite(self, compiler, connection):
        # The FTS5 table's rowid is the message's rowid (external content).
        rowid = f"{compiler.quote_name_unless_alias(self.lhs.alias)}.rowid"
        return f"{rowid} IN (SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH %s)", [self.rhs]


Message._meta.get_field("message_body").register_lookup(_BodyMatches)


class _Relevance(Expression):
    """A vendor's relevance of message_body for an engine query: higher is better."""

    def __init__(self, body, query: str):
        super().__init__(output_field=FloatField())
        self.body, self.query = body, query

    def get_source_expressions(self):
        return [self.body]

    def set_source_expressions(self, exprs):
        (self.body,) = exprs

    def as_sql(self, compiler, connection):
        raise NotImplementedError(f"No full-text search for {connection.vendor}.")

    def as_postgresql(self, compiler, connection):
        body, params = compiler.compile(self.body)
        return f"ts_rank(to_tsvector('simple', {body}), to_tsquery('simple', %s))", [*params, self.query]

    def as_mysql(self, compiler, connection):
        body, params = compiler.compile(self.body)
        return f"MATCH ({body}) AGAINST (%s IN BOOLEAN MODE)", [*params, self.query]

    def as_sqlite(self, compiler, connection):
        rowid = f"{compiler.quote_name_unless_alias(self.body.alias)}.rowid"
        return (  # bm25: lower is better
            f"(SELECT -bm25({SQLITE_TABLE}) FROM {SQLITE_TABLE} "
            f"WHERE {SQLITE_TABLE} MATCH %s AND {SQLITE_TABLE}.rowid = {rowid})",
            [self.query],
        )


class _SentAtUnindexed(Expression):
    """
    sent_at as an expression no index serves, to order search hits by time on PostgreSQL: given
    `ORDER BY sent_at DESC LIMIT 20`, its planner walks msg_sent_at_idx and computes to_tsvector
    for every message until 20 match (270 ms in 20,000 messages, bench/search.py), instead of
    taking the few matches from the GIN index and sorting them.
    """

    def __init__(self):
        super().__init__(output_field=DateTimeField())
        self.sent_at = F("sent_at")

    def get_source_expressions(self):
        return [self.sent_at]

    def set_source_expressions(self, exprs):
        (self.sent_at,) = exprs

    def as_sql(self, compiler, connection):
        return compiler.compile(self.sent_at)

    def as_postgresql(self, compiler, connection):
        sql, params = compiler.compile(self.sent_at)
        return f"({sql} + interval '0 seconds')", params


ORDERINGS = ("relevance", "-sent_at", "sent_at")


def message_search(queryset: QuerySet, terms: list[str], *, ordering: str = "relevance") -> QuerySet:
    """
    The messages of `queryset` (already scoped to the caller) whose body holds every term, never a
    deleted one, in `ordering` (ORDERINGS): most relevant first (then newest), newest or oldest first.
    No terms (nothing searchable was typed): no message.
    """
    if not terms:
        return queryset.none()
    query = _engine_query(terms, connections[queryset.db].vendor)
    found = queryset.filter(message_body__full_text=query, is_deleted=False)
    if ordering == "relevance":
        found = found.annotate(relevance=_Relevance(F("message_body"), query))
        return found.order_by("-relevance", "-sent_at", "-message_id")
    found = found.annotate(search_sent_at=_SentAtUnindexed())
    if ordering == "sent_at":
        return found.order_by("search_sent_at", "message_id")
    return found.order_by("-search_sent_at", "-message_id")


def snippet(body: str, terms: list[str]) -> str:
    """
    The body as HTML-escaped text with each word that a term starts wrapped in <mark>...</mark>,
    cut to about SNIPPET_LENGTH characters around the first match ("…" where cut). Only <mark>
    is markup: everything of the body is escaped first.
    """
    if not terms:
        return html.escape(body)
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(term) for term in terms) + r")[^\W_]*", re.IGNORECASE
    )
    first = pattern.search(body)
    start = 0
    if first and len(body) > SNIPPET_LENGTH:
        start = max(0, min(first.start() - SNIPPET_LENGTH // 4, len(body) - SNIPPET_LENGTH))
    end = min(len(body), start + SNIPPET_LENGTH)
    part = body[start:end]
    out, at = [], 0
    for match in pattern.finditer(part):
        out.append(html.escape(part[at:match.start()]))
        out.append(f"<mark>{html.escape(match.group())}</mark>")
        at = match.end()
    out.append(html.escape(part[at:]))
    return ("…" if start else "") + "".join(out) + ("…" if end < len(body) else "")
