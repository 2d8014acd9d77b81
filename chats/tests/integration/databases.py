"""
Private database servers for tests that stop them: a MariaDB or PostgreSQL instance started
from this machine's binaries, on a free port, with its own temporary data directory and socket.

They cannot touch the shared servers (127.0.0.1:3306 and :5432): MariaDB runs with
--no-defaults (no /etc/mysql configuration), PostgreSQL with its own data directory, each on
a port taken from the kernel, and only the processes started here are ever signalled (by
their own process group). `close()` kills whatever is left and removes the directory.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from chats.tests.integration.servers import Server, app_env, free_port, migrate, start_gunicorn, wait_until_answering

SHARED_PORTS = {3306, 5432}
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivateDatabase:
    kind = ""
    scheme = ""

    def __init__(self, tmp: Path):
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.data = tmp / "data"
        self.port = free_port()
        assert self.port not in SHARED_PORTS
        self.log_path = tmp / f"{self.kind}.log"
        self.process: subprocess.Popen | None = None

    # -- what differs between the two --
    def initialise(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict:
        return {}

    clean_stop_signal = signal.SIGTERM

    def connect(self, database: str | None = None, timeout: int = 2):
        """A DB-API connection in autocommit mode."""
        raise NotImplementedError

    def create_database(self, name: str) -> None:
        raise NotImplementedError

    # -- the same for both --
    def url(self, database: str) -> str:
        return f"{self.scheme}://root@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> float:
        """Start the server (same data directory, same port) and wait until it takes queries."""
        assert not self.running
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches its children too
                **self.popen_options(),
            )
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited ({self.process.returncode}):\n{self.log_text()}")
            try:
                self.connect().close()
                return time.monotonic() - started
            except Exception:
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"{self.kind} did not start within {timeout}s:\n{self.log_text()}")
                time.sleep(0.1)

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown: open sessions are ended and their transactions rolled back."""
        self.process.send_signal(self.clean_stop_signal)
        self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """kill -9 of the whole server (every process of its group), like a crash."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        _wait_for_group_exit(self.process.pid)

    def freeze(self) -> None:
        """
        SIGSTOP to every process of the server, like a paused machine: connections are still
        accepted by the kernel, but nothing answers, on new connections or open ones.
        (PostgreSQL's backends leave the postmaster's process group: stopping the group alone
        left open sessions answering.)
        """
        os.killpg(self.process.pid, signal.SIGSTOP)
        self._frozen = _descendants(self.process.pid)
        for pid in self._frozen:
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in getattr(self, "_frozen", ()):
            _signal(pid, signal.SIGCONT)
        os.killpg(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)
            _wait_for_group_exit(self.process.pid)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:] or "(empty)"
        except OSError as exc:
            return f"(no log: {exc})"


class PrivateMariaDB(PrivateDatabase):
    kind = "mariadb"
    scheme = "mysql"

    def initialise(self) -> None:
        _run([
            "mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
        ], self.tmp)

    def command(self) -> list[str]:
        return [
            "mariadbd", "--no-defaults",
            f"--datadir={self.data}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.tmp / 'mysqld.sock'}", f"--pid-file={self.tmp / 'mysqld.pid'}",
            "--user=root", "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
            # Commits reach the OS at once (a killed server keeps them), fsync once a second.
            "--innodb-flush-log-at-trx-commit=2",
        ]

    def connect(self, database: str | None = None, timeout: int = 2):
        import MySQLdb

        options = dict(host="127.0.0.1", port=self.port, user="root", charset="utf8mb4", connect_timeout=timeout)
        if database:
            options["db"] = database
        connection = MySQLdb.connect(**options)
        connection.autocommit(True)
        return connection

    def create_database(self, name: str) -> None:
        connection = self.connect()
        try:
            connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            connection.close()


class PrivatePostgreSQL(PrivateDatabase):
    kind = "postgresql"
    scheme = "postgres"
    clean_stop_signal = signal.SIGINT  # "fast" shutdown, the default of pg_ctl stop

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        # initdb and postgres refuse to run as root: the postgres user owns the directory.
        shutil.chown(tmp, "postgres", "postgres")

    def popen_options(self) -> dict:
        return dict(user="postgres", group="postgres", extra_groups=[], cwd=self.tmp)

    def initialise(self) -> None:
        _run([
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "root", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        ], self.tmp, **self.popen_options())

    def command(self) -> list[str]:
        return [
            str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.tmp), "-c", "listen_addresses=127.0.0.1",
            # Commits still reach the OS before they are acknowledged (a killed server keeps
            # them); only an OS crash could lose them.
            "-c", "fsync=off",
        ]

    def connect(self, database: str | None = None, timeout: int = 2):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="root", dbname=database or "postgres",
            connect_timeout=timeout, autocommit=True,
        )

    def create_database(self, name: str) -> None:
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')


KINDS = {"mariadb": PrivateMariaDB, "postgresql": PrivatePostgreSQL}


@contextmanager
def app_on_private_database(kind: str, database: str, label: str, **settings):
    """
    A private database server of `kind` (KINDS) with `database` migrated, and the app served on it
    by the production command (gunicorn.conf.py, 2 workers, DEBUG off) with `settings` added to
    its environment: yields (the database server, the app's Server). Everything goes afterwards.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"messaging_app-{label}-"))
    # Its own directory (under /tmp, not in this 0700 one): PostgreSQL runs as another user.
    db = KINDS[kind](Path(tempfile.mkdtemp(prefix=f"messaging_app-{label}-{kind}-")))
    server = Server("app", free_port(), tmp / "app.log")
    try:
        db.initialise()
        db.start()
        db.create_database(database)
        env = app_env(database_url=db.url(database), secret_key=f"{label}-{uuid.uuid4().hex}{uuid.uuid4().hex}",
                      **settings)
        migrate(env)
        start_gunicorn(server, env, workers=2)
        wait_until_answering(server, 30)
        yield db, server
    finally:
        server.stop()
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: list[str], tmp: Path, **options) -> None:
    options.setdefault("cwd", tmp)
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, **options)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def _wait_for_group_exit(pgid: int, timeout: float = 10) -> None:
    """Until no live process is left in the group (zombies waiting for init do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_in_group_and_alive(stat, pgid) for stat in Path("/proc").glob("[0-9]*/stat")):
            return
        time.sleep(0.05)
    raise RuntimeError(f"processes of group {pgid} still alive after SIGKILL")


def _in_group_and_alive(stat: Path, pgid: int) -> bool:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and int(fields[2]) == pgid


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(p) for p in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
