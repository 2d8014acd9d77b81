"""
The background worker's Prometheus metrics, scraped for real (integration: `make test-integration`):
the production command (`celery worker`, prefork pool of 2 processes, as the worker Deployments run
it) with METRICS_PORT, on a private redis-server as its broker. Tasks that succeed and a task that
fails are counted per task name and outcome, summed over the pool's processes, with their
durations, beside the queue's depth (messaging_app/celery.py, metrics_server.py).
"""
import secrets
import time
import uuid

import pytest
from celery import Celery

from chats.tests.integration.servers import app_env, free_port
from chats.tests.test_connection_reuse import PrivateRedis
from chats.tests.test_metrics import scrape, value
from notifications.tests.test_worker import Worker

pytestmark = pytest.mark.integration

SUCCEEDING = 6


@pytest.fixture
def broker(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()


def test_the_worker_counts_its_tasks_and_serves_them_on_its_metrics_port(tmp_path, broker):
    queue, port = f"test-{uuid.uuid4().hex[:12]}", free_port()
    env = app_env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", secret_key=secrets.token_urlsafe(50),
        CELERY_BROKER_URL=broker, CELERY_QUEUE=queue, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the worker makes its own, as in the image
    worker = Worker(env, tmp_path / "worker.log", pool=("--pool=prefork", "--concurrency=2")).start()
    client = Celery(broker=broker)
    client.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    try:
        for n in range(SUCCEEDING):
            client.send_task("notifications.ping", args=[f"ping-{n}"])
        client.send_task("notifications.ping", args=["one", "too many"])  # TypeError: the run fails

        def counted(outcome: str) -> float:
            return value(scrape(port), "messaging_tasks_total", task="notifications.ping", outcome=outcome)

        deadline = time.monotonic() + 30
        while (counted("succeeded"), counted("failed")) != (SUCCEEDING, 1):
            assert time.monotonic() < deadline, f"counted: {scrape(port)}"
            time.sleep(0.2)
        samples = scrape(port)
        assert value(samples, "messaging_task_duration_seconds_count", task="notifications.ping") == SUCCEEDING + 1
        assert 0 < value(samples, "messaging_task_duration_seconds_sum", task="notifications.ping") < 10
        assert value(samples, "messaging_task_queue_depth", queue=queue) == 0
    finally:
        client.close()
        worker.stop()
