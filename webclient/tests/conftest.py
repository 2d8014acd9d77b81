"""
Browser tests of the web client: a live production-like server (DEBUG off, collectstatic,
WhiteNoise, uvicorn, SQLite and the in-memory channel layer: one process) and Debian's Chromium
driven by Playwright, never a downloaded browser.
"""
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass

import pytest

from chats.tests.integration import servers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class LiveServer(servers.Server):
    env: dict

    def start(self) -> None:
        servers.start_uvicorn(self, self.env)
        servers.wait_until_answering(self, timeout=60)

    def manage(self, *args: str) -> str:
        """A manage.py command on this server's database and settings (while it is stopped, say)."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=servers.ROOT, env=self.env,
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def webclient_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webclient")
    env = servers.app_env(
        database_url=f"sqlite:///{tmp / 'db.sqlite3'}",
        secret_key=secrets.token_urlsafe(40),
        DJANGO_STATIC_ROOT=str(tmp / "static"),
        # The production rates are per IP, and every browser here is 127.0.0.1.
        THROTTLE_LOGIN="1000/min", THROTTLE_REGISTER="1000/min", THROTTLE_ANON="10000/min",
        THROTTLE_USER="100000/min", THROTTLE_SEND="10000/min",
        # Someone whose page closed is announced offline after a second, not the default ten.
        PRESENCE_OFFLINE_GRACE="1",
        DJANGO_MEDIA_ROOT=str(tmp / "media"),  # uploads stay out of the working tree
        ATTACHMENTS_MAX_BYTES=str(1024 * 1024),  # so that a "too large" upload stays small
    )
    servers.migrate(env)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    server = LiveServer("webclient", servers.free_port(), tmp / "server.log")
    server.env = env
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test-browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Person:
    first_name: str
    email: str
    user_id: str
    token: str
    password: str = servers.PASSWORD


def register(server, first_name: str, last_name: str) -> Person:
    """A person registered and logged in over the API (the token is for the test's own REST checks)."""
    email = f"{first_name.lower()}.{secrets.token_hex(3)}@example.com"
    _, user = servers.api(server, "POST", "/api/users/", {
        "email": email, "password": servers.PASSWORD, "first_name": first_name, "last_name": last_name,
    }, expect=201)
    _, tokens = servers.api(server, "POST", "/api/token/", {"email": email, "password": servers.PASSWORD}, expect=200)
    return Person(first_name, email, user["user_id"], tokens["access"])
