"""
The full-text index of message bodies, in each database's own engine (chats/search.py queries it).
Not in the model state: each engine's index is its own SQL.

SQLite: an FTS5 table whose content is chats_message (external content, rowid = the message's
rowid), kept in step by triggers. A later migration that makes Django rebuild chats_message on
SQLite (it copies the table) drops the triggers and renumbers rowids: such a migration must run
SQLITE_INSTALL again (test_search checks the index after every migration).
"""
from django.db import migrations

SQLITE_INSTALL = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS chats_message_fts USING fts5("
    "message_body, content='chats_message', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS chats_message_fts_ai AFTER INSERT ON chats_message BEGIN "
    "INSERT INTO chats_message_fts(rowid, message_body) VALUES (new.rowid, new.message_body); END",
    "CREATE TRIGGER IF NOT EXISTS chats_message_fts_ad AFTER DELETE ON chats_message BEGIN "
    "INSERT INTO chats_message_fts(chats_message_fts, rowid, message_body) "
    "VALUES ('delete', old.rowid, old.message_body); END",
    "CREATE TRIGGER IF NOT EXISTS chats_message_fts_au AFTER UPDATE OF message_body ON chats_message BEGIN "
    "INSERT INTO chats_message_fts(chats_message_fts, rowid, message_body) "
    "VALUES ('delete', old.rowid, old.message_body); "
    "INSERT INTO chats_message_fts(rowid, message_body) VALUES (new.rowid, new.message_body); END",
    "INSERT INTO chats_message_fts(chats_message_fts) VALUES ('rebuild')",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS chats_message_fts_ai",
    "DROP TRIGGER IF EXISTS chats_message_fts_ad",
    "DROP TRIGGER IF EXISTS chats_message_fts_au",
    "DROP TABLE IF EXISTS chats_message_fts",
]
INSTALL = {
    # A GIN index on the expression the searches use ('simple': no language's stemming or stopwords).
    "postgresql": ["CREATE INDEX msg_body_fts_idx ON chats_message USING GIN (to_tsvector('simple', message_body))"],
    # Stopwords off for this index (read when it is built), so "the" or "about" can be searched too.
    "mysql": [
        "SET SESSION innodb_ft_enable_stopword = 0",
        "CREATE FULLTEXT INDEX msg_body_fts_idx ON chats_message (message_body)",
    ],
    "sqlite": SQLITE_INSTALL,
}
REMOVE = {
    "postgresql": ["DROP INDEX msg_body_fts_idx"],
    "mysql": ["DROP INDEX msg_body_fts_idx ON chats_message"],
    "sqlite": SQLITE_REMOVE,
}


def _run(statements):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, ()):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("chats", "0009_mentions"),
    ]

    operations = [
        # Not in a transaction of its own: MySQL cannot roll DDL back, and Django refuses DDL in one there.
        migrations.RunPython(_run(INSTALL), _run(REMOVE), atomic=False),
    ]
