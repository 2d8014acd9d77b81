"""
DJANGO_LOG_FORMAT=json (messaging_app/request_log.py JsonLineFormatter): one JSON object per line,
with the request id, for log shippers. Checked in a process started with the setting, as a
deployment would run it, and on the handler of this one.
"""
import io
import json
import logging
import subprocess
import sys
import uuid
from datetime import datetime

import pytest

from chats.tests.integration.servers import ROOT
from messaging_app.request_log import JsonLineFormatter

SERVE_TWO_REQUESTS = """
import django, logging
django.setup()
from django.test import Client
client = Client()
client.get("/api/ping/", HTTP_X_REQUEST_ID="{request_id}")
client.get("/%0aFORGED%1b[2J")
try:
    raise ValueError("boom\\nline")
except ValueError:
    logging.getLogger("chats").exception("it failed")
"""


def run_with(env_format: str, request_id: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "messaging_app.test_settings",
        "DJANGO_LOG_FORMAT": env_format, "DATABASE_URL": "sqlite:///:memory:", "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    return subprocess.run([sys.executable, "-c", SERVE_TWO_REQUESTS.format(request_id=request_id)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_process_started_with_json_writes_one_object_per_line_with_the_request_id():
    request_id = str(uuid.uuid4())
    result = run_with("json", request_id)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # every line is one object
    ping = next(r for r in records if r.get("path") == "/api/ping/")
    assert ping["request_id"] == request_id
    assert ping["level"] == "INFO" and ping["logger"] == "messaging_app.requests"
    assert ping["method"] == "GET" and ping["status"] == 401 and ping["duration_ms"] >= 0
    assert ping["message"].startswith("GET /api/ping/ 401 ")
    assert datetime.fromisoformat(ping["timestamp"]).utcoffset().total_seconds() == 0
    forged = next(r for r in records if r.get("status") == 404)
    assert forged["path"] == "/\nFORGED\x1b[2J"  # kept as it was, on its one line
    assert len(uuid.UUID(forged["request_id"]).hex) == 32
    failure = next(r for r in records if r["logger"] == "chats")
    assert failure["request_id"] is None and failure["level"] == "ERROR"
    assert "ValueError: boom" in failure["exception"]


def test_the_default_stays_the_plain_line():
    result = run_with("plain", str(uuid.uuid4()))
    assert result.returncode == 0, result.stderr
    assert " INFO messaging_app.requests [" in result.stdout and "{" not in result.stdout.splitlines()[0]


def test_an_unknown_format_is_refused_at_start():
    result = run_with("xml", str(uuid.uuid4()))
    assert result.returncode != 0 and "DJANGO_LOG_FORMAT must be 'plain' or 'json'" in result.stderr


@pytest.mark.django_db
def test_the_running_handler_writes_json_when_given_the_formatter(client):
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer, formatter = io.StringIO(), handler.formatter
    previous = handler.setStream(buffer)
    handler.setFormatter(JsonLineFormatter())
    try:
        client.get("/api/ping/", HTTP_X_REQUEST_ID="0b7c6a4e-5d0f-4c39-9e43-3c1f0c2d9a11")
    finally:
        handler.setStream(previous)
        handler.setFormatter(formatter)
    (record,) = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert record["request_id"] == "0b7c6a4e-5d0f-4c39-9e43-3c1f0c2d9a11" and record["status"] == 401
