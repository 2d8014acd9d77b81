"""
Prometheus metrics (messaging_app/metrics.py, metrics_server.py): scraped for real from the
production command (gunicorn, two uvicorn workers) on its own port, and the values move with
the traffic. Plus the bounded labels, the per-request query counting and the throttle counter,
in process.
"""
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pytest
import websockets
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from chats.tests.factories import UserFactory
from chats.tests.integration.servers import (
    ROOT, Server, _http, app_env, call, child_pids, free_port, migrate, register, start_gunicorn, wait_until_answering,
)

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, frozenset of (label, value))): value} of a text exposition."""
    samples = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def value(samples, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def scrape(port: int) -> dict:
    with _http.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return parse(response.read().decode())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    env = app_env(
        database_url=f"sqlite:///{tmp / 'db.sqlite3'}", secret_key=secrets.token_urlsafe(50),
        METRICS_PORT=str(free_port()), PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus"),
    )
    migrate(env)
    server = Server("gunicorn", free_port(), tmp / "server.log")
    start_gunicorn(server, env, workers=2)
    try:
        wait_until_answering(server, timeout=60)
        yield server, int(env["METRICS_PORT"])
    finally:
        server.stop()


def register_and_log_in(server: Server) -> str:
    return register(server, f"M{secrets.token_hex(4)}")["token"]


class TestScrapedFromTheServer:
    def test_requests_are_counted_per_route_across_both_workers(self, served):
        server, port = served
        token = register_and_log_in(server)
        before = scrape(port)
        for _ in range(40):  # spread over both workers by the kernel
            assert call(server, "GET", "/api/ping/", token=token).status == 200
        for _ in range(3):
            unknown = f"/api/conversations/{'0' * 8}-0000-4000-8000-{'0' * 12}/"
            assert call(server, "GET", unknown, token=token).status == 404
        after = scrape(port)
        ping = dict(route="ping", method="GET", status="200")
        assert value(after, "messaging_http_requests_total", **ping) - value(
            before, "messaging_http_requests_total", **ping) == 40
        assert value(after, "messaging_http_request_duration_seconds_count", route="ping") - value(
            before, "messaging_http_request_duration_seconds_count", route="ping") == 40
        # The route's name, never the path with its id.
        assert value(after, "messaging_http_requests_total", route="conversation-detail", status="404") >= 3
        assert not any("0000-4000" in str(labels) for _, labels in after)
        # Every ping looks its user up: at least one query each, and some time in the database.
        queries = value(after, "messaging_db_queries_per_request_sum", route="ping") - value(
            before, "messaging_db_queries_per_request_sum", route="ping")
        assert 40 <= queries <= 80
        assert value(after, "messaging_db_time_per_request_seconds_sum", route="ping") > value(
            before, "messaging_db_time_per_request_seconds_sum", route="ping")

    def test_open_websockets_follow_the_sockets_and_a_dead_worker_stops_counting(self, served):
        server, port = served
        token = register_and_log_in(server)

        def open_websockets() -> float:
            return value(scrape(port), "messaging_websockets_open")

        def eventually(expected: float) -> None:
            deadline = time.monotonic() + 15
            while open_websockets() != expected:
                assert time.monotonic() < deadline, f"open sockets: {open_websockets()}, expected {expected}"
                time.sleep(0.2)

        async def scenario():
            sockets = []
            for _ in range(2):
                socket = await websockets.connect(server.ws_url, origin=server.base_url)
                await socket.send(json.dumps({"type": "auth", "token": token}))
                assert json.loads(await socket.recv())["type"] == "auth.ok"
                sockets.append(socket)
            assert open_websockets() == 2
            await sockets[0].close()
            await asyncio.to_thread(eventually, 1)
            # Its worker killed: the socket it held is never closed cleanly, and stops counting
            # (child_exit marks the process dead; the gauge sums live processes only).
            for pid in child_pids(server.process.pid):
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(eventually, 0)
            await sockets[1].close()

        asyncio.run(scenario())
        wait_until_answering(server, timeout=60)  # gunicorn replaced its workers

    def test_the_api_port_does_not_serve_metrics(self, served):
        server, _ = served
        reply = call(server, "GET", "/metrics")
        assert reply.status == 404 and b"messaging_http_requests" not in str(reply.body).encode()

    def test_workers_share_one_directory_that_the_master_sums(self, served, tmp_path):
        server, port = served
        assert len(child_pids(server.process.pid)) == 2
        assert "messaging_http_requests_total" in {name for name, _ in scrape(port)}


class TestInProcess:
    @pytest.mark.django_db
    def test_an_unknown_method_and_an_unmatched_path_keep_labels_bounded(self):
        client = APIClient()
        client.generic("BREW", "/api/ping/")
        client.get("/no/such/page/12345/")
        names = {
            dict(sample.labels).get("method") for metric in REGISTRY.collect()
            if metric.name == "messaging_http_requests" for sample in metric.samples
        }
        assert "BREW" not in names and "other" in names
        assert REGISTRY.get_sample_value(
            "messaging_http_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}) >= 1

    @pytest.mark.django_db
    def test_the_queries_of_a_request_are_counted(self, django_assert_max_num_queries):
        user = UserFactory()
        client = APIClient()
        client.force_authenticate(user)
        labels = {"route": "conversation-list"}
        before = REGISTRY.get_sample_value("messaging_db_queries_per_request_sum", labels) or 0
        with django_assert_max_num_queries(10) as captured:
            assert client.get("/api/conversations/").status_code == 200
        after = REGISTRY.get_sample_value("messaging_db_queries_per_request_sum", labels)
        assert after - before == len(captured.captured_queries) > 0

    @pytest.mark.django_db
    def test_a_refused_request_is_counted_with_its_scope(self, monkeypatch):
        from django.core.cache import cache
        from rest_framework.throttling import SimpleRateThrottle

        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {
            "anon": "1000/min", "user": "1000/min", "login": "2/min", "register": "1000/min", "send": "1000/min"})
        cache.clear()
        before = REGISTRY.get_sample_value("messaging_throttled_requests_total", {"scope": "login"}) or 0
        wrong = {"email": "nobody@example.com", "password": "wrong"}
        statuses = [APIClient().post("/api/token/", wrong, format="json").status_code for _ in range(4)]
        assert statuses == [401, 401, 429, 429]
        assert REGISTRY.get_sample_value("messaging_throttled_requests_total", {"scope": "login"}) - before == 2


def test_gunicorn_config_marks_dead_workers_and_serves_on_its_own_port():
    """The hooks exist in the production config (the scrape test above exercises them)."""
    text = (ROOT / "gunicorn.conf.py").read_text()
    for hook in ("def on_starting", "def when_ready", "def child_exit", "def on_exit"):
        assert hook in text
    result = subprocess.run([sys.executable, "-c", "import messaging_app.metrics_server"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # the master imports it without Django


def exported_series() -> dict[str, set[str]]:
    """{series name as scraped: its label names} of every metric the app and the master export."""
    from messaging_app import metrics  # noqa: F401 (registers the app's metrics)
    from messaging_app.metrics_server import TaskQueueCollector

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    series = {}
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else collector.collect():
            if not family.name.startswith("messaging_"):
                continue
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in suffixes[family.type]:
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in TaskQueueCollector("redis://127.0.0.1:1/0", "messaging").collect():  # -1: unreachable
        series[family.name] = {"queue"}
    return series


def test_the_grafana_dashboard_shows_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "messaging_app.json").read_text())
    series = exported_series()
    # Labels Prometheus adds when it scrapes a pod (kubernetes_sd relabelling).
    added = {"namespace", "pod"}
    shown = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\bmessaging_[a-z_]+", target["expr"]))
            assert names, f"{panel['title']}: no messaging_ metric in {target['expr']}"
            for name in names:
                assert name in series, f"{panel['title']}: {name} is not exported"
            known = set().union(*(series[name] for name in names)) | added
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                for label in (label.strip() for label in group.split(",")):
                    assert label in known, f"{panel['title']}: label {label} not on {names}"
            shown |= names
    # Every family the app exports is on the dashboard.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in series}
    assert families == {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}


def test_the_queue_depth_is_the_length_of_the_celery_queue_on_redis():
    """One LLEN on the broker per scrape (a real Redis; a queue name of this test's own)."""
    import redis

    from messaging_app.metrics_server import TaskQueueCollector

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    queue = f"test-metrics-queue-{secrets.token_hex(6)}"
    client = redis.Redis.from_url(url)
    try:
        client.rpush(queue, "a", "b", "c")
        (family,) = TaskQueueCollector(url, queue).collect()
        assert [(s.name, s.labels, s.value) for s in family.samples] == [
            ("messaging_task_queue_depth", {"queue": queue}, 3)]
    finally:
        client.delete(queue)
    assert list(TaskQueueCollector("", queue).collect()) == []  # no broker: tasks run in-process


@pytest.mark.django_db
def test_counting_survives_a_connection_opened_inside_an_execute_wrapper_block():
    """Django's execute_wrapper() pops the last wrapper when its block ends: ours is never that one."""
    from django.db import connections

    from messaging_app.metrics import _count_query

    fresh = connections.create_connection("default")
    try:
        def theirs(execute, *args):
            return execute(*args)

        with fresh.execute_wrapper(theirs):
            fresh.ensure_connection()  # connection_created: counted from now on
        assert fresh.execute_wrappers == [_count_query]
    finally:
        fresh.close()
