"""
The scrape endpoint, `GET http://<pod>:METRICS_PORT/metrics`, served by gunicorn's master
(gunicorn.conf.py) on a port of its own: the Service and the ingress only route the API's port,
so nothing outside the cluster reaches it, and Prometheus scrapes the pod directly (the
prometheus.io/* annotations of the Deployments). It sums what every worker recorded
(PROMETHEUS_MULTIPROC_DIR) and adds the background-task queue's depth, measured at scrape time.

Loaded in the master, which never sets Django up: it reads the environment itself.
"""
import logging
import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger("messaging_app.metrics")


def prepare_directory() -> None:
    """
    An empty PROMETHEUS_MULTIPROC_DIR at start (a restart must not add the previous run's counts).
    Made under /tmp (writable in the container) when not set.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="messaging-metrics-")
        return
    path = Path(directory)
    if path.exists():
        for entry in path.glob("*.db"):
            entry.unlink()
    else:
        path.mkdir(parents=True)


def remove_directory() -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and Path(directory).name.startswith("messaging-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """A worker that exited: its live gauges (open sockets) stop counting."""
    multiprocess.mark_process_dead(pid)


class TaskQueueCollector:
    """
    messaging_task_queue_depth{queue}: tasks waiting in the Celery queue, one LLEN (Redis broker,
    on the primary Sentinel names for sentinel:// URLs) or one passive queue declaration (RabbitMQ)
    per scrape, with a 1 s deadline. Nothing when no broker is configured (tasks then run in-process).
    """

    def __init__(self, broker_url: str, queue: str, sentinel_master: str = "") -> None:
        self.broker_url, self.queue, self.sentinel_master = broker_url, queue, sentinel_master

    def collect(self):
        if not self.broker_url:
            return
        family = GaugeMetricFamily(
            "messaging_task_queue_depth", "Background tasks waiting in the Celery queue (-1: broker unreachable).",
            labels=["queue"],
        )
        try:
            depth = self._depth()
        except Exception as exc:  # any broker error: report it, never fail the scrape
            logger.warning("metrics: queue depth unavailable: %s", exc)
            depth = -1
        family.add_metric([self.queue], depth)
        yield family

    def _depth(self) -> int:
        if self.broker_url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
            from messaging_app.redis_clients import broker_client

            client = broker_client(self.broker_url, self.sentinel_master, socket_connect_timeout=1, socket_timeout=1,
                                   retry=None)
            try:
                return int(client.llen(self.queue))
            finally:
                client.close()
        from kombu import Connection

        with Connection(self.broker_url, connect_timeout=1) as connection:
            return int(connection.default_channel.queue_declare(self.queue, passive=True).message_count)


def registry() -> CollectorRegistry:
    """What every process of the pod recorded, and the queue's depth (the broker as settings.py derives it)."""
    from messaging_app.redis_clients import RedisConfig

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    redis = RedisConfig.from_environ(os.environ)
    broker = os.environ.get("CELERY_BROKER_URL") or redis.celery_broker()[0]
    registry.register(TaskQueueCollector(broker, os.environ.get("CELERY_QUEUE", "messaging"), redis.master))
    return registry


def start(host: str, port: int) -> None:
    """Serves /metrics on a thread of the master; a port already taken is logged, not fatal."""
    try:
        start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        logger.error("metrics: cannot listen on %s:%s (%s); no metrics are served.", host, port, exc)
        return
    logger.info("metrics: serving http://%s:%s/metrics", host, port)
