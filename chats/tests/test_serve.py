"""
`make serve`, the production-like local run, as a user starts it: the real target (gunicorn
managing uvicorn workers) on a free port with a throwaway database and home directory.
Its key is made for this machine and kept outside the repository, it listens on loopback
only unless told otherwise (and then never with a published key), and a client that drips
its request headers is cut off.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from chats.tests.test_first_run import ROOT, free_port, request

# Keys anyone could read: the one `make serve` used to sign with, and compose's default.
OLD_MAKEFILE_KEY = "local-serve-only-not-a-production-secret-0123456789abcdef"
COMPOSE_KEY = re.search(r"DJANGO_SECRET_KEY:-([^}]+)}", (ROOT / "docker-compose.yml").read_text()).group(1)
HEADER_TIMEOUT = 2


def serve_env(home: Path, port: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), DATABASE_URL=f"sqlite:///{home / 'db.sqlite3'}",
        PORT=str(port), GUNICORN_WORKERS="1", GUNICORN_HEADER_TIMEOUT=str(HEADER_TIMEOUT), PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def make_serve(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed-run", f"PY={sys.executable}", "serve"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    return process.communicate(timeout=30)[0]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on the port (/proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                ipv4 = len(address) == 8
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]) if ipv4 else address)
    return found


def forged_token(user_id: str, key: str) -> str:
    now = datetime.now(timezone.utc)
    claims = {"token_type": "access", "user_id": user_id, "jti": uuid.uuid4().hex}
    claims.update(iat=now, exp=now + timedelta(minutes=5))
    return jwt.encode(claims, key, algorithm="HS256")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    server = make_serve(serve_env(home, port))
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("make serve did not start:\n" + stop(server))
            time.sleep(0.3)
    yield home, port
    stop(server)


class TestMakeServe:
    def test_its_key_is_made_for_this_machine_and_kept_outside_the_repository(self, served):
        home, port = served
        key_file = home / ".config" / "messaging_app" / "secret_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 50 and not subprocess.run(["git", "grep", "-qF", key], cwd=ROOT).returncode == 0

    def test_a_token_signed_with_a_published_key_is_refused(self, served):
        _, port = served
        base = f"http://127.0.0.1:{port}"
        email, password = f"victim-{uuid.uuid4().hex[:8]}@example.com", "Victim-passw0rd-2026"
        body = {"email": email, "password": password, "first_name": "V", "last_name": "Ictim"}
        assert request("POST", f"{base}/api/users/", json.dumps(body).encode())[0] == 201
        credentials = json.dumps({"email": email, "password": password}).encode()
        tokens = request("POST", f"{base}/api/token/", credentials)[1]
        status, me = request("GET", f"{base}/api/users/me/", token=tokens["access"])
        assert status == 200
        for published in (OLD_MAKEFILE_KEY, COMPOSE_KEY):
            assert request("GET", f"{base}/api/users/me/", token=forged_token(me["user_id"], published))[0] == 401

    def test_it_listens_on_loopback_only(self, served):
        _, port = served
        assert listening_addresses(port) == {"127.0.0.1"}

    def test_a_client_dripping_its_headers_is_cut_off(self, served):
        _, port = served
        with socket.create_connection(("127.0.0.1", port), timeout=15) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            closed_after = None
            while time.monotonic() - started < 4 * HEADER_TIMEOUT:
                try:
                    slow.sendall(b"X-Drip: 1\r\n")
                    slow.settimeout(0.5)
                    if slow.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except socket.timeout:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None and HEADER_TIMEOUT - 0.5 < closed_after < HEADER_TIMEOUT + 2, closed_after
        # Clients that send their headers at once are served, on a kept-alive connection too.
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):
            client.request("GET", "/healthz")
            response = client.getresponse()
            assert response.status == 200 and response.read() == b'{"status": "ok"}'
        client.close()

    def test_the_deadline_starts_again_when_a_response_ends(self, served):
        """A kept-alive connection that sends no next request is closed after the header deadline
        (before uvicorn's own 5 s keep-alive), counted from the end of the previous response."""
        _, port = served
        with socket.create_connection(("127.0.0.1", port), timeout=15) as kept:
            time.sleep(HEADER_TIMEOUT / 2)  # within the first deadline
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answered = b""
            while b'{"status": "ok"}' not in answered:
                piece = kept.recv(4096)
                assert piece, answered
                answered += piece
            responded = time.monotonic()
            assert answered.startswith(b"HTTP/1.1 200"), answered
            assert kept.recv(1024) == b""  # closed by the server
            closed_after = time.monotonic() - responded
        assert HEADER_TIMEOUT - 0.5 < closed_after < HEADER_TIMEOUT + 1.5, closed_after

    def test_another_interface_is_refused_with_a_published_key(self, tmp_path):
        port = free_port()
        server = make_serve(serve_env(tmp_path, port, GUNICORN_BIND=f"0.0.0.0:{port}", DJANGO_SECRET_KEY=COMPOSE_KEY))
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        output = stop(server)
        assert server.returncode not in (None, 0) and "refusing to listen on 0.0.0.0" in output, output
        assert not listening_addresses(port)
