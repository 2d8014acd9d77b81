"""
gunicorn settings for production: gunicorn manages uvicorn workers that serve the ASGI
application (HTTP and WebSockets). Everything comes from the environment.

    gunicorn messaging_app.asgi:application     # reads this file from the working directory
"""
import gc
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# uvicorn's worker with a deadline for request headers (GUNICORN_HEADER_TIMEOUT) and WebSocket
# messages bounded at 64 KiB (messaging_app/server.py).
worker_class = "messaging_app.server.UvicornWorker"
# Seconds a worker may stay silent before it is restarted, and the grace period on
# SIGTERM for in-flight requests (Kubernetes waits terminationGracePeriodSeconds).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
# Seconds between requests on a kept-alive connection. The deadline for a request's headers
# is GUNICORN_HEADER_TIMEOUT (10 s; messaging_app/server.py).
keepalive = 5
# The app writes one line per request with a request id; no separate access log.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# No runtime control socket: nothing uses it, and the container's filesystem is read-only.
control_socket_disable = True
# Proxies whose X-Forwarded-* headers are trusted (the ingress/load balancer).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Prometheus metrics (messaging_app/metrics_server.py) on a port of their own, on the interface of
# `bind`: METRICS_PORT (unset or 0: not served; the image and the Kubernetes manifests use 9100).
# The workers record into PROMETHEUS_MULTIPROC_DIR (made under /tmp when not set, emptied at
# start), and the master sums them for each scrape.
METRICS_PORT = int(os.environ.get("METRICS_PORT") or 0)


def on_starting(server):
    if METRICS_PORT:
        from messaging_app import metrics_server

        metrics_server.prepare_directory()


def when_ready(server):
    if METRICS_PORT:
        from messaging_app import metrics_server

        # The API's interface (loopback for `make serve`); a Unix socket bind: loopback.
        host = "127.0.0.1" if bind.startswith("unix:") else bind.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"
        metrics_server.start(host, METRICS_PORT)


def child_exit(server, worker):
    if METRICS_PORT:
        from messaging_app import metrics_server

        metrics_server.worker_exited(worker.pid)


def on_exit(server):
    if METRICS_PORT:
        from messaging_app import metrics_server

        metrics_server.remove_directory()


def post_worker_init(worker):
    # What the worker has loaded by now (Django, the app, ~140,000 objects) lives as long as the
    # worker: out of the garbage collector's reach, its full collections scan only what came
    # after. Measured with 1,000 sockets open: full collections of 76-177 ms (each holding every
    # request and socket of the worker) became 8-26 ms, rarely up to ~100 ms.
    gc.collect()
    gc.freeze()
    # Each worker numbers the events its requests queued in the event outbox on a thread of its own,
    # off the request path, and sweeps rows a stopped worker left (chats/outbox.py). Only in our
    # application: the benchmark serves its reference floors (a raw ASGI app, a bare Django
    # project) with this same file.
    from django.apps import apps

    if not (apps.ready and apps.is_installed("chats")):
        return
    from chats import outbox

    outbox.start_drainer()
