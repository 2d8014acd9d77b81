"""
The Celery application: background tasks (notifications/tasks.py) run by `make worker`.

Configured from the Django settings named CELERY_* (messaging_app/settings.py): the broker is
CELERY_BROKER_URL, else Redis (REDIS_URL, or the primary REDIS_SENTINELS name); with neither,
tasks run in-process (task_always_eager).

Metrics (docs/observability.md): every run of a task is counted, with its outcome and duration,
in the process that ran it. A worker started with METRICS_PORT serves them on that port
(METRICS_HOST, default 0.0.0.0) from its main process, summed over its pool's child processes
(prometheus_client's multiprocess mode, as gunicorn's master does for the web workers).
"""
import os
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")

app = Celery("messaging_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Task state at the end of a run -> the `outcome` label (anything else: "other").
OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
# task id -> perf_counter() at its start, in the process running it.
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **kwargs) -> None:
    from messaging_app import metrics

    started = _started.pop(task_id, None)
    name = getattr(task, "name", None) or "unknown"
    metrics.TASKS.labels(name, OUTCOMES.get(state, "other")).inc()
    if started is not None:
        metrics.TASK_DURATION.labels(name).observe(time.perf_counter() - started)


def _metrics_port() -> int:
    return int(os.environ.get("METRICS_PORT") or 0)


@signals.celeryd_init.connect
def _worker_starting(**kwargs) -> None:
    """In the worker's main process, before its pool starts: the pool's processes record into files."""
    if not _metrics_port():
        return
    from prometheus_client import values

    from messaging_app import metrics_server

    metrics_server.prepare_directory()
    # Django may have imported prometheus_client already: values made from now on (the tasks'
    # series, made in the pool's processes) go to PROMETHEUS_MULTIPROC_DIR.
    values.ValueClass = values.get_value_class()


@signals.worker_ready.connect
def _worker_ready(**kwargs) -> None:
    if _metrics_port():
        from messaging_app import metrics_server

        metrics_server.start(os.environ.get("METRICS_HOST") or "0.0.0.0", _metrics_port())


@signals.worker_shutdown.connect
def _worker_stopped(**kwargs) -> None:
    if _metrics_port():
        from messaging_app import metrics_server

        metrics_server.remove_directory()
