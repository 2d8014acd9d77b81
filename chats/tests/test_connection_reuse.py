"""
Connections per request on the production server (gunicorn + uvicorn workers): the shared cache
(throttle counters, on every API request) must reuse its Redis connections, not open one per
request. Measured on a private redis-server of the test's own, so nothing else's connections count.
"""
import shutil
import subprocess
import time

import pytest
import redis

from chats.tests.integration.servers import Server, api, app_env, free_port, migrate, register, start_gunicorn
from chats.tests.integration.servers import wait_until_answering

REQUESTS = 60


class PrivateRedis:
    """A redis-server of the test's own on a free port, which the test may restart."""

    def __init__(self, folder):
        self.binary = shutil.which("redis-server")
        assert self.binary, "redis-server is part of the machine (machine.md); the tests need it"
        self.folder = folder
        self.port = free_port()
        self.client = redis.Redis(port=self.port)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the private redis-server did not start"
                time.sleep(0.1)

    def stop(self):
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def production_server(private_redis, tmp_path):
    """gunicorn with one uvicorn worker, its cache on the private Redis."""
    served = Server("gunicorn", free_port(), tmp_path / "gunicorn.log")
    env = app_env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        secret_key="connection-reuse-test-" + "k" * 40,
        redis_url=f"redis://127.0.0.1:{private_redis.port}/0",
    )
    migrate(env)
    start_gunicorn(served, env, workers=1)
    try:
        wait_until_answering(served, timeout=60)
        yield served
    finally:
        served.stop()


def connections_received(client: redis.Redis) -> int:
    return client.info("stats")["total_connections_received"]


def test_api_requests_reuse_the_caches_redis_connections(private_redis, production_server):
    """60 authenticated requests (each counts against the per-user throttle in Redis) open no new
    Redis connection once the worker is warm; before, each opened its own (60 for 60)."""
    token = register(production_server, "Reuse")["token"]
    for _ in range(5):  # warm: the worker's pool opens what it needs
        api(production_server, "GET", "/api/ping/", token=token, expect=200)
    before = connections_received(private_redis.client)
    for _ in range(REQUESTS):
        api(production_server, "GET", "/api/ping/", token=token, expect=200)
    opened = connections_received(private_redis.client) - before
    assert opened <= 1, f"{opened} new Redis connections for {REQUESTS} requests"


def test_a_restarted_redis_does_not_poison_the_shared_pool(private_redis, production_server):
    """The pool's connections die with a Redis restart; the next requests reconnect instead of failing."""
    token = register(production_server, "Restart")["token"]
    for _ in range(5):
        api(production_server, "GET", "/api/ping/", token=token, expect=200)
    private_redis.stop()
    private_redis.start()
    for _ in range(5):
        api(production_server, "GET", "/api/ping/", token=token, expect=200)


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def test_the_throttle_costs_one_counter_increment_per_block_of_requests(private_redis, production_server):
    """
    Authenticated requests count against their user's rate (1,200 a minute in production) with
    one script call (INCRBY, and EXPIRE when it opened the window's counter) per block of 12
    numbers the worker reserves (chats.throttles): no read of a stored list of request times,
    which DRF's throttles GET and SET whole on every request.
    """
    token = register(production_server, "Counted")["token"]
    api(production_server, "GET", "/api/ping/", token=token, expect=200)
    before = command_calls(private_redis.client)
    for _ in range(REQUESTS):
        api(production_server, "GET", "/api/ping/", token=token, expect=200)
    after = command_calls(private_redis.client)
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    calls["cmdstat_info"] -= 1  # our own reading
    blocks = REQUESTS // 12 + 1  # the window may turn during the run: one more block
    assert REQUESTS // 12 <= calls.get("cmdstat_evalsha", 0) <= blocks
    assert calls.get("cmdstat_incrby") == calls.get("cmdstat_evalsha")
    assert calls.get("cmdstat_expire", 0) <= 2  # once per window opened (a minute: at most one boundary)
    others = {name: count for name, count in calls.items()
              if count and name not in ("cmdstat_evalsha", "cmdstat_incrby", "cmdstat_expire")}
    assert others == {}
    counters = [key for key in private_redis.client.scan_iter("*throttle_user*")]
    assert counters and all(private_redis.client.get(key).isdigit() for key in counters)
