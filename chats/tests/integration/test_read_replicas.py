"""
Read replicas for real (messaging_app/db/replicas.py): a private MariaDB primary with binlog
replication to a private MariaDB replica (their own data directories and ports), and the app
served by the production command with DATABASE_URL on the primary and DATABASE_REPLICA_URLS on
the replica.

The same with a PostgreSQL primary and a streaming hot standby made by pg_basebackup
(recovery_min_apply_delay). The replica applies every event DELAY seconds late, so who reads where shows from outside:
a reader who did not write sees a new message only once the delay has passed (its reads go to
the replica), the sender sees it at once (read-your-writes: the primary). Then replication is
stopped (MariaDB), and the replica server itself: reads fall back to the primary and /readyz says so,
while staying ready.
"""
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from chats.tests.integration.databases import PG_BIN, PrivateMariaDB, PrivatePostgreSQL, _run
from chats.tests.integration.servers import (
    Server, api, app_env, call, free_port, migrate, register, start_gunicorn, wait_until_answering,
)

pytestmark = pytest.mark.integration

DATABASE = "replicas"
DELAY = 3  # seconds the replica stays behind (MASTER_DELAY)
CHECK = 0.5  # REPLICA_CHECK_SECONDS


class ReplicatedMariaDB(PrivateMariaDB):
    """A MariaDB with a binary log (the primary) or replicating from one (the replica)."""

    def __init__(self, tmp: Path, server_id: int):
        super().__init__(tmp)
        self.server_id = server_id

    def command(self) -> list[str]:
        command = [arg for arg in super().command() if arg != "--skip-log-bin"]
        return [*command, f"--server-id={self.server_id}", "--log-bin=mysql-bin", "--binlog-format=ROW",
                f"--relay-log={self.tmp / 'relay-bin'}"]

    def execute(self, *statements: str) -> list:
        connection = self.connect()
        try:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def replicate_from(self, primary: "ReplicatedMariaDB", delay: int) -> None:
        self.execute(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, MASTER_USER='root', "
            f"MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=4, MASTER_USE_GTID=no, MASTER_DELAY={delay}",
            "START SLAVE",
        )


class StreamingReplicaPostgreSQL(PrivatePostgreSQL):
    """A hot standby made by pg_basebackup from `primary`, streaming its WAL, applied `delay` s late."""

    def __init__(self, tmp: Path, primary: PrivatePostgreSQL, delay: int):
        super().__init__(tmp)
        self.primary, self.delay = primary, delay

    def initialise(self) -> None:
        _run([
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "root",
            "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
        ], self.tmp, **self.popen_options())

    def command(self) -> list[str]:
        return [*super().command(), "-c", f"recovery_min_apply_delay={self.delay}s"]

    def has_table(self, database: str, table: str) -> bool:
        try:
            with self.connect(database) as connection:
                return connection.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()[0]
        except Exception:  # the database itself not replayed yet
            return False


def replicated_pair(kind: str):
    """(primary, replica), started, replicating (the replica DELAY seconds behind once the schema is in)."""
    if kind == "mariadb":
        primary = ReplicatedMariaDB(Path(tempfile.mkdtemp(prefix="messaging_app-replicas-primary-")), 1)
        replica = ReplicatedMariaDB(Path(tempfile.mkdtemp(prefix="messaging_app-replicas-replica-")), 2)
        for db in (primary, replica):
            db.initialise()
            db.start()
        replica.replicate_from(primary, delay=0)
        return primary, replica
    primary = PrivatePostgreSQL(Path(tempfile.mkdtemp(prefix="messaging_app-replicas-primary-")))
    primary.initialise()
    primary.start()
    replica = StreamingReplicaPostgreSQL(Path(tempfile.mkdtemp(prefix="messaging_app-replicas-replica-")),
                                         primary, DELAY)
    replica.initialise()
    replica.start()
    return primary, replica


def schema_replicated(replica) -> bool:
    if isinstance(replica, StreamingReplicaPostgreSQL):
        return replica.has_table(DATABASE, "chats_message")
    return bool(replica.execute(f"SHOW TABLES FROM `{DATABASE}` LIKE 'chats_message'"))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["mariadb", "postgresql"])
def stack(request):
    tmp = Path(tempfile.mkdtemp(prefix="messaging_app-replicas-"))
    server = Server("app", free_port(), tmp / "app.log")
    primary = replica = None
    try:
        primary, replica = replicated_pair(request.param)
        primary.create_database(DATABASE)
        redis_url = os.environ.get("INTEGRATION_REDIS_URL") or "redis://127.0.0.1:6379/6"
        env = app_env(
            database_url=primary.url(DATABASE), secret_key=f"replicas-{uuid.uuid4().hex}{uuid.uuid4().hex}",
            redis_url=redis_url, LIVE_CHANNEL=f"replicas-{uuid.uuid4().hex}",
            DATABASE_REPLICA_URLS=replica.url(DATABASE), REPLICA_CHECK_SECONDS=str(CHECK),
            REPLICA_MAX_LAG_SECONDS="30", READ_YOUR_WRITES_SECONDS=str(DELAY + 3),
            THROTTLE_USER="100000/min", THROTTLE_SEND="100000/min",
        )
        migrate(env)  # on the primary; the replica gets the schema by replication
        wait_for(lambda: schema_replicated(replica), 30, "the schema replicated")
        if request.param == "mariadb":
            # From now on the replica applies each event DELAY seconds after the primary wrote it.
            replica.execute("STOP SLAVE", f"CHANGE MASTER TO MASTER_DELAY={DELAY}", "START SLAVE")
        start_gunicorn(server, env, workers=2)
        wait_until_answering(server, 30)
        yield primary, replica, server
    finally:
        server.stop()
        for db in (replica, primary):
            if db is not None:
                db.close()
        shutil.rmtree(tmp, ignore_errors=True)


def message_ids(server, path: str, token: str) -> set[str]:
    _, page = api(server, "GET", path, token=token, expect=200)
    items = page["results"] if isinstance(page, dict) else page
    return {item["message_id"] for item in items}


def replica_report(server) -> dict:
    reply = call(server, "GET", "/readyz")
    assert reply.status == 200 and reply.body["status"] == "ok", reply.body  # ready all along
    return reply.body["replicas"]["replica1"]


def test_reads_go_to_the_replica_writers_read_their_writes_and_a_stopped_replica_falls_back(stack):
    primary, replica, server = stack
    wait_for(lambda: replica_report(server)["usable"], 10, "the replica takes reads")
    alice, bob = register(server, "Alice"), register(server, "Bob")
    _, conversation = api(server, "POST", "/api/conversations/", {"participants": [bob["user_id"]]},
                          token=alice["token"], expect=201)
    path = f"/api/conversations/{conversation['conversation_id']}/messages/"
    time.sleep(DELAY + 1.5)  # bob and the conversation reach the replica

    # Alice sends, then lists: her message is there (she wrote: her reads are on the primary).
    _, sent = api(server, "POST", path, {"message_body": "read your writes"}, token=alice["token"], expect=201)
    sent_at = time.monotonic()
    assert sent["message_id"] in message_ids(server, path, alice["token"])
    # Bob, who wrote nothing, reads the replica: the message is not there until it is replayed.
    assert sent["message_id"] not in message_ids(server, path, bob["token"])
    wait_for(lambda: sent["message_id"] in message_ids(server, path, bob["token"]), DELAY + 5, "replayed")
    assert time.monotonic() - sent_at >= DELAY - 0.5

    if isinstance(replica, ReplicatedMariaDB):
        replication_stopped_falls_back(server, replica, path, alice, bob)
    expected = {sent["message_id"]} | message_ids(server, path, alice["token"])

    # The replica server killed: reads fall back to the primary.
    replica.kill()
    wait_for(lambda: not replica_report(server)["usable"], 15, "the dead replica set aside")
    time.sleep(2 * CHECK)
    _, last = api(server, "POST", path, {"message_body": "replica down"}, token=alice["token"], expect=201)
    assert message_ids(server, path, bob["token"]) == expected | {last["message_id"]}


def replication_stopped_falls_back(server, replica, path, alice, bob):
    """MariaDB: replication stopped, the replica stops taking reads (readyz says why, and stays ready)."""
    replica.execute("STOP SLAVE")
    report = wait_for(lambda: (r := replica_report(server)) and not r["usable"] and r, 10, "the replica set aside")
    assert "not running" in report["detail"]
    time.sleep(2 * CHECK)  # /readyz answered from one worker: every worker checks within CHECK
    _, second = api(server, "POST", path, {"message_body": "from the primary"}, token=alice["token"], expect=201)
    assert second["message_id"] in message_ids(server, path, bob["token"])  # at once: the primary

    replica.execute("START SLAVE")
    wait_for(lambda: replica_report(server)["usable"], DELAY + 10, "the replica back")
    time.sleep(2 * CHECK)
