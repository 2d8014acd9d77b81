"""
Shared by the integration tests: the app served by real server processes (production
settings, DEBUG off) and a plain HTTP client for them. Nothing here uses the in-process
Django or the pytest-django test database.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "Integration-Pass-7319!"

# Plain HTTP to 127.0.0.1, whatever proxy the environment configures.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") or "(empty)"
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(*, database_url: str, secret_key: str, redis_url: str = "", **extra: str) -> dict:
    """The environment of a production-like app process; `extra` adds or overrides variables."""
    # Nothing from the caller's Django configuration leaks in (pytest-django sets
    # DJANGO_SETTINGS_MODULE to the test settings; the Makefile exports DJANGO_DEBUG=1).
    settings_vars = {
        "DATABASE_URL", "REDIS_URL", "WS_AUTH_TIMEOUT", "WS_MAX_SOCKETS_PER_USER", "JWT_ACCESS_MINUTES",
        "JWT_REFRESH_DAYS",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_") and k not in settings_vars}
    env.update(
        DJANGO_SETTINGS_MODULE="messaging_app.settings",
        DJANGO_DEBUG="0",  # production-like
        DJANGO_SECRET_KEY=secret_key,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        # Plain HTTP on loopback: no TLS-terminating proxy in front of these servers.
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_LOG_LEVEL="INFO",
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def migrate(env: dict, timeout: float = 300) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def start_uvicorn(server: Server, env: dict) -> None:
    """One uvicorn process serving the ASGI application."""
    _start(server, env, [
        "-m", "uvicorn", "messaging_app.asgi:application",
        "--host", "127.0.0.1", "--port", str(server.port),
        "--lifespan", "off", "--timeout-graceful-shutdown", "5",
    ])


def start_gunicorn(server: Server, env: dict, workers: int = 2) -> None:
    """The production command: gunicorn (gunicorn.conf.py) managing uvicorn workers."""
    env = dict(
        env,
        GUNICORN_BIND=f"127.0.0.1:{server.port}",
        GUNICORN_WORKERS=str(workers),
        GUNICORN_GRACEFUL_TIMEOUT="5",
    )
    _start(server, env, ["-m", "gunicorn", "messaging_app.asgi:application"])


def _start(server: Server, env: dict, args: list[str]) -> None:
    with open(server.log_path, "ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )


def wait_until_answering(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited ({server.process.returncode}) before answering:\n{server.log_text()}"
            )
        try:
            with _http.open(server.base_url + "/api/", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # 401 without credentials: it answers
                return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer within {timeout}s:\n{server.log_text()}")
        time.sleep(0.2)


def child_pids(pid: int) -> set[int]:
    """The direct children of a process (gunicorn's workers), from /proc."""
    children = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return children


# --- the client ----------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: object  # decoded JSON, or the first bytes of anything else
    headers: dict
    seconds: float

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


def call(
    server: Server,
    method: str,
    path: str,
    body=None,
    token: str | None = None,
    timeout: float = 30,
) -> Reply:
    """One HTTP request; a client-side timeout raises (TimeoutError or URLError)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base_url + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    try:
        with _http.open(request, timeout=timeout) as response:
            status, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), exc.headers
    seconds = time.monotonic() - started
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw[:500]
    return Reply(status, payload, {k.lower(): v for k, v in headers.items()}, seconds)


def api(server: Server, method: str, path: str, body=None, token: str | None = None, expect: int | None = None):
    """One REST call; returns (status, decoded JSON or None), asserting the status if given."""
    reply = call(server, method, path, body, token)
    if expect is not None:
        assert reply.status == expect, f"{method} {server.name}{path}: {reply.status} {reply.body}"
    return reply.status, reply.body


def register(server: Server, first_name: str) -> dict:
    email = f"{first_name.lower()}@example.com"
    _, user = api(
        server,
        "POST",
        "/api/users/",
        {"email": email, "password": PASSWORD, "first_name": first_name, "last_name": "Tester"},
        expect=201,
    )
    _, tokens = api(server, "POST", "/api/token/", {"email": email, "password": PASSWORD}, expect=200)
    return {"user_id": user["user_id"], "token": tokens["access"], "name": first_name}
