"""
Full-text search of messages (`?search=` on /api/messages/ and .../messages/, chats/search.py):
each database's own index, scoped to the caller's conversations, ranked, with a safe snippet.

Transactional: InnoDB's FULLTEXT index shows a change only once it is committed.
"""
import pytest
from django.db import connection

from chats import services
from chats.search import snippet
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

# What InnoDB can index: words of 3 letters or more (innodb_ft_min_token_size).
BODIES = (
    "Lunch at the harbour tomorrow?",
    "Harbour harbour harbour: the harbour is closed",
    "Bring the <b>Apple</b> pie & cream",
    "Nothing to see here",
)


@pytest.fixture
def chat(alice, bob):
    conversation = make_conversation(alice, bob)
    messages = [send(conversation, alice if i % 2 else bob, body) for i, body in enumerate(BODIES)]
    return conversation, messages


def results(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def bodies(items):
    return [item["message_body"] for item in items]


class TestMatching:
    def test_every_word_must_start_a_word_of_the_message_case_insensitively(self, chat, alice, client_for):
        client = client_for(alice)
        assert set(bodies(results(client, "/api/messages/", search="HARB"))) == {BODIES[0], BODIES[1]}
        assert bodies(results(client, "/api/messages/", search="harbour lunch")) == [BODIES[0]]
        assert results(client, "/api/messages/", search="arbour") == []  # not the middle of a word
        assert results(client, "/api/messages/", search="harbour apple") == []

    def test_only_the_callers_conversations(self, chat, alice, carol, mallory, client_for):
        make_conversation(mallory, carol, messages=("harbour secrets",))
        assert len(results(client_for(alice), "/api/messages/", search="harbour")) == 2
        assert bodies(results(client_for(mallory), "/api/messages/", search="harbour")) == ["harbour secrets"]
        conversation, _ = chat
        url = f"/api/conversations/{conversation.pk}/messages/"
        assert client_for(mallory).get(url, {"search": "harbour"}).status_code == 404

    def test_nested_list_searches_its_conversation_only(self, chat, alice, carol, client_for):
        conversation, _ = chat
        make_conversation(alice, carol, messages=("harbour elsewhere",))
        found = results(client_for(alice), f"/api/conversations/{conversation.pk}/messages/", search="harbour")
        assert set(bodies(found)) == {BODIES[0], BODIES[1]}
        assert len(results(client_for(alice), "/api/messages/", search="harbour")) == 3

    def test_deleted_messages_never_match(self, chat, alice, bob, client_for):
        _, messages = chat
        services.message_delete(message=messages[1], actor=alice)
        assert bodies(results(client_for(bob), "/api/messages/", search="harbour")) == [BODIES[0]]

    def test_edits_update_the_index(self, chat, bob, client_for):
        _, messages = chat
        services.message_edit(message=messages[0], actor=bob, message_body="Dinner by the lighthouse")
        client = client_for(bob)
        assert bodies(results(client, "/api/messages/", search="lunch")) == []
        assert bodies(results(client, "/api/messages/", search="lighthouse")) == ["Dinner by the lighthouse"]

    def test_stopwords_are_searchable(self, chat, alice, client_for):
        # MariaDB's FULLTEXT index is built without its stopword list ("the", "about"...).
        assert len(results(client_for(alice), "/api/messages/", search="the")) == 3

    def test_other_filters_still_apply(self, chat, alice, bob, client_for):
        found = results(client_for(alice), "/api/messages/", search="harbour", sender=str(alice.pk))
        assert bodies(found) == [BODIES[1]]


class TestRankingAndSnippets:
    def test_most_relevant_first_by_default_or_by_time_on_request(self, chat, alice, client_for):
        client = client_for(alice)
        assert bodies(results(client, "/api/messages/", search="harbour")) == [BODIES[1], BODIES[0]]
        assert bodies(results(client, "/api/messages/", search="harbour", ordering="relevance")) == [
            BODIES[1], BODIES[0]
        ]
        assert bodies(results(client, "/api/messages/", search="harbour", ordering="sent_at")) == [
            BODIES[0], BODIES[1]
        ]
        assert bodies(results(client, "/api/messages/", search="harbour", ordering="-sent_at")) == [
            BODIES[1], BODIES[0]
        ]

    def test_the_snippet_escapes_the_body_and_marks_the_matches(self, chat, alice, client_for):
        (hit,) = results(client_for(alice), "/api/messages/", search="apple")
        assert hit["snippet"] == "Bring the &lt;b&gt;<mark>Apple</mark>&lt;/b&gt; pie &amp; cream"
        assert hit["message_body"] == BODIES[2]

    def test_no_snippet_without_a_search(self, chat, alice, client_for):
        assert all("snippet" not in item for item in results(client_for(alice), "/api/messages/"))

    def test_long_bodies_are_cut_around_the_first_match(self):
        body = "x" * 300 + " needle " + "y" * 300
        cut = snippet(body, ["needle"])
        assert "<mark>needle</mark>" in cut
        assert cut.startswith("…") and cut.endswith("…")
        assert len(cut) < 200

    def test_cursor_pages_of_a_search_go_by_time(self, chat, alice, client_for):
        conversation, messages = chat
        url = f"/api/conversations/{conversation.pk}/messages/"
        # The cursor is a message of the searched timeline; pages go newest first from it.
        found = results(client_for(alice), url, search="harbour", before=str(messages[1].pk))
        assert bodies(found) == [BODIES[0]]


# Operators, quotes and wildcards of the three engines, unicode, control characters: never a 500.
FUZZ = [
    '"', "'", '""', "*", "-", "+", "~", "()", "(", ")", "<>", "@", ":", "^", "NEAR(a b)", "a OR b",
    "harbour AND NOT", "-harbour", "+harbour*", '"harbour', "harbour:*", "harbour & | !", "\\", "%", "_",
    "ñandú 中文 😀", "İstanbul", "ǅemal", "a\x00b", "\t\n", "²³", "x" * 100, " " * 50, "!@#$%^&*()",
    "harbour' OR '1'='1", "harbour\"; DROP TABLE chats_message; --", "{}[]", "col:value", "rank",
]


@pytest.mark.parametrize("term", FUZZ)
def test_any_search_text_is_answered_never_a_500(chat, alice, client_for, term):
    conversation, _ = chat
    client = client_for(alice)
    for url in ("/api/messages/", f"/api/conversations/{conversation.pk}/messages/"):
        response = client.get(url, {"search": term})
        if "\x00" in term:  # refused like in any text field
            assert_error(response, 400, "null_characters_not_allowed", "search")
        else:
            assert response.status_code == 200, (term, response.content)


def test_searches_with_operators_match_their_words(chat, alice, client_for):
    client = client_for(alice)
    assert set(bodies(results(client, "/api/messages/", search='"-harbour*"'))) == {BODIES[0], BODIES[1]}
    assert bodies(results(client, "/api/messages/", search="lunch:* & (harbour)")) == [BODIES[0]]


def test_too_long_a_search_is_a_400(chat, alice, client_for):
    assert_error(client_for(alice).get("/api/messages/", {"search": "x" * 101}), 400, "max_length", "search")


def test_search_runs_a_fixed_number_of_queries(alice, bob, client_for, django_assert_num_queries):
    conversation = make_conversation(alice, bob)
    for i in range(25):
        send(conversation, alice if i % 2 else bob, f"harbour number {i}")
    client = client_for(alice)
    for page_size in (1, 20):
        # count, the page's ids (ranked), those rows
        with django_assert_num_queries(3):
            response = client.get("/api/messages/", {"search": "harbour", "page_size": page_size})
        assert len(response.json()["results"]) == page_size
        # + the conversation access check
        with django_assert_num_queries(4):
            response = client.get(
                f"/api/conversations/{conversation.pk}/messages/", {"search": "harbour", "page_size": page_size}
            )
        assert len(response.json()["results"]) == page_size


def test_the_search_uses_the_full_text_index(chat):
    """Each engine's own index serves the search (SQLite: its FTS5 table, kept by triggers)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'chats_message'")
            assert {row[0] for row in cursor.fetchall()} >= {
                "chats_message_fts_ai", "chats_message_fts_ad", "chats_message_fts_au"
            }
            cursor.execute("SELECT count(*) FROM chats_message_fts WHERE chats_message_fts MATCH 'harbour'")
            assert cursor.fetchone()[0] == 2
        elif connection.vendor == "postgresql":
            cursor.execute("SET enable_seqscan = off")
            cursor.execute(
                "EXPLAIN SELECT message_id FROM chats_message "
                "WHERE to_tsvector('simple', message_body) @@ to_tsquery('simple', 'harbour:*')"
            )
            assert "msg_body_fts_idx" in " ".join(row[0] for row in cursor.fetchall())
            cursor.execute("SET enable_seqscan = on")
        else:
            cursor.execute(
                "EXPLAIN SELECT message_id FROM chats_message "
                "WHERE MATCH (message_body) AGAINST ('+harbour*' IN BOOLEAN MODE)"
            )
            row = cursor.fetchone()
            columns = [c[0] for c in cursor.description]
            assert dict(zip(columns, row))["type"] == "fulltext"
