"""
The first run, as the README tells a new developer to do it: the development server
(`make run`: `manage.py runserver` with the autoreloader, DJANGO_DEBUG=1), its log,
`make seed`, `make superuser` and `make listen`. Each test runs the real commands in
subprocesses against a throwaway SQLite database, on free ports.
"""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_PASSWORD = "demo-password-123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dev_env(database: Path, **extra) -> dict:
    """What `make` gives the commands: DJANGO_DEBUG=1 and the shell's environment, minus our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env.update(DJANGO_DEBUG="1", DATABASE_URL=f"sqlite:///{database}", PYTHONUNBUFFERED="1",
               DJANGO_MEDIA_ROOT=str(database.parent / "media"), **extra)
    return env


def default_sigint():
    # A shell that starts pytest in the background ignores SIGINT, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def manage(*args, env, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def make(*args, env, timeout=120) -> subprocess.CompletedProcess:
    """`make` with this interpreter and without (re)installing: the suite already runs in the virtualenv."""
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed-run", f"PY={sys.executable}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


class Lines:
    """Collects a pipe's lines in a thread, so a test can wait for one without blocking forever."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; got:\n" + "\n".join(self.lines))

    def rest(self, timeout: float = 10) -> list[str]:
        """Every remaining line, once the stream has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                return self.lines
            self.lines.append(line)
        raise AssertionError("the stream did not end")


def request(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method, headers=headers)) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """A migrated SQLite database with the demo users (the state after `make seed`)."""
    database = tmp_path_factory.mktemp("first-run") / "db.sqlite3"
    env = dev_env(database)
    assert manage("migrate", "--no-input", "-v", "0", env=env).returncode == 0
    seeded = manage("seed_demo", env=env)
    assert seeded.returncode == 0, seeded.stderr
    conversation_id = seeded.stdout.rsplit("demo conversation:", 1)[1].split()[0]
    return database, conversation_id


def start_dev_server(database: Path, port: int) -> subprocess.Popen:
    """`make run`'s command: runserver with the autoreloader (a parent and a serving child)."""
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
        cwd=ROOT, env=dev_env(database), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                raise AssertionError("the development server did not start:\n" + server.stdout.read())
            time.sleep(0.2)


def stop(process: subprocess.Popen, sig=signal.SIGINT, timeout=20) -> None:
    """Ctrl-C in a terminal: the signal goes to the whole process group (the reloader's child too)."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"still running {timeout} s after {sig.name}")


def test_runserver_on_a_busy_port_exits_at_once_with_one_clear_line(demo_db):
    database, _ = demo_db
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
            cwd=ROOT, env=dev_env(database), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the reloader's child too
            server.communicate()
            pytest.fail("runserver neither served nor exited on a port already in use")
        result = subprocess.CompletedProcess(server.args, server.returncode, stdout, stderr)
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    errors = [line for line in result.stderr.splitlines() if "Error" in line or "error" in line]
    assert errors == [
        f"Error: port {port} on 127.0.0.1 is already in use (another server is running there?). "
        f"Stop it, or serve on another port: PORT={port + 1} make run"
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert "Listen failure" not in result.stdout + result.stderr


def test_dev_server_logs_one_line_per_request_and_stops_cleanly_on_ctrl_c(demo_db):
    database, _ = demo_db
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_dev_server(database, port)
    output = Lines(server.stdout)
    try:
        credentials = json.dumps({"email": "alice@example.com", "password": DEMO_PASSWORD}).encode()
        missing = f"/no-such-page-{uuid.uuid4().hex}"
        assert request("POST", f"{base}/api/token/", credentials)[0] == 200
        assert request("GET", base + missing)[0] == 404
        assert request("GET", f"{base}/api/conversations/")[0] == 401
        assert request("POST", f"{base}/api/token/", b"{not json")[0] == 400
        output.wait_for("/api/token/ 400")
    finally:
        stop(server)
    lines = output.rest()
    assert server.returncode == 0
    assert "Traceback" not in "\n".join(lines)
    assert sum("Watching for file changes" in line for line in lines) == 1
    # Exactly one line per request (the request line, with its request id), none from Django's
    # "Not Found"/"Unauthorized" warnings, daphne's access log or channels' server logger.
    request_lines = [line for line in lines if "/api/" in line or missing in line]
    assert all(" INFO messaging_app.requests [" in line for line in request_lines), request_lines
    # '... INFO messaging_app.requests [id] GET /x 404 3.1ms' -> 'GET /x 404'
    assert [line.split("] ", 1)[1].rsplit(" ", 1)[0] for line in request_lines] == [
        "POST /api/token/ 200", f"GET {missing} 404", "GET /api/conversations/ 401", "POST /api/token/ 400",
    ]


def test_make_seed_prints_links_on_the_port_the_server_uses(demo_db, tmp_path):
    database, _ = demo_db
    port = free_port()
    result = make("seed", env=dev_env(database, PORT=str(port)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"http://127.0.0.1:{port}/api-auth/login/" in result.stdout
    assert f"curl -u alice@example.com:{DEMO_PASSWORD} http://127.0.0.1:{port}/api/conversations/" in result.stdout
    assert ":8000" not in result.stdout


def test_make_superuser_creates_an_admin_with_the_development_settings(demo_db):
    database, _ = demo_db
    env = dev_env(
        database,
        DJANGO_SUPERUSER_EMAIL="root@example.com",
        DJANGO_SUPERUSER_PASSWORD="an-admin-passw0rd",
        DJANGO_SUPERUSER_FIRST_NAME="Ada",
        DJANGO_SUPERUSER_LAST_NAME="Admin",
    )
    del env["DJANGO_DEBUG"]  # as in a fresh shell: the Makefile sets it
    result = make("superuser", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Superuser created successfully." in result.stdout
    check = manage("shell", "--no-imports", "-c", (
        "from chats.models import User; u = User.objects.get(email='root@example.com'); "
        "print(u.is_superuser, u.is_staff, u.check_password('an-admin-passw0rd'))"
    ), env=dev_env(database))
    assert check.stdout.strip() == "True True True", check.stderr


def test_manage_py_without_a_secret_in_production_mode_says_so_in_one_line(tmp_path):
    env = dev_env(tmp_path / "db.sqlite3")
    del env["DJANGO_DEBUG"]  # production mode, and no DJANGO_SECRET_KEY: must refuse
    result = manage("createsuperuser", "--no-input", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "Error: DJANGO_SECRET_KEY is not set. Set it (any long random string) or, "
        "for local development only, set DJANGO_DEBUG=1."
    )


def test_listen_on_port_says_what_it_does_prints_events_and_stops_on_ctrl_c(demo_db):
    database, conversation_id = demo_db
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_dev_server(database, port)
    try:
        # No --server: `make listen` and a bare `manage.py listen` both take the port from PORT.
        listener = subprocess.Popen(
            [sys.executable, "manage.py", "listen", "--email", "bob@example.com", "--password", DEMO_PASSWORD],
            cwd=ROOT, env=dev_env(database, PORT=str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=default_sigint,
        )
        events, status = Lines(listener.stdout), Lines(listener.stderr)
        try:
            connected = status.wait_for("waiting for events")
            assert connected == (
                f"Connected to ws://127.0.0.1:{port}/ws/ as bob@example.com; waiting for events (Ctrl-C to stop)"
            )
            _, tokens = request("POST", f"{base}/api/token/", json.dumps(
                {"email": "alice@example.com", "password": DEMO_PASSWORD}).encode())
            body = json.dumps({"conversation": conversation_id, "message_body": "Hello from the test"}).encode()
            assert request("POST", f"{base}/api/messages/", body, token=tokens["access"])[0] == 201
            event = json.loads(events.wait_for("Hello from the test"))
            assert event["type"] == "message.created"
        finally:
            stop(listener)
    finally:
        stop(server)
    assert listener.returncode == 0
    assert [line for line in status.rest() if line.strip()] == [connected, "Stopped."]
    assert all(json.loads(line) for line in events.rest())  # stdout carries events only


def test_listen_since_replays_the_stream_in_order_before_live_events(demo_db):
    database, conversation_id = demo_db
    port = free_port()
    server = start_dev_server(database, port)
    try:
        listener = subprocess.Popen(
            [sys.executable, "manage.py", "listen", "--email", "bob@example.com", "--password", DEMO_PASSWORD,
             "--since", "0"],
            cwd=ROOT, env=dev_env(database, PORT=str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, preexec_fn=default_sigint,
        )
        events, status = Lines(listener.stdout), Lines(listener.stderr)
        try:
            status.wait_for("Resuming after event 0")
            first = json.loads(events.wait_for('"event_id": 1}'))  # the seed's first event of bob's
            assert first["event_id"] == 1
        finally:
            stop(listener)
    finally:
        stop(server)
    replayed = [json.loads(line) for line in events.rest() if line.strip()]  # every line printed, first included
    assert [event["event_id"] for event in replayed] == list(range(1, len(replayed) + 1))
