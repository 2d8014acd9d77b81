"""Production serving: health checks, HTTPS and security headers, request ids and logs, fail-fast settings."""
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.db.utils import OperationalError
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a-test-only-secret-key-that-is-long-enough-and-varied-0123456789"

pytestmark = pytest.mark.django_db


class TestHealth:
    def test_healthz_is_up_and_does_no_io(self, client, django_assert_num_queries):
        with django_assert_num_queries(0):
            response = client.get("/healthz")
        assert response.status_code == 200 and response.json() == {"status": "ok"}

    def test_readyz_checks_the_database(self, client):
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "checks": {"database": True, "redis": None}}

    def test_readyz_is_503_when_the_database_is_down(self, client, monkeypatch):
        from django.db import connection

        def broken_cursor(*args, **kwargs):
            raise OperationalError("database is gone")

        monkeypatch.setattr(connection, "cursor", broken_cursor)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"] is False

    @override_settings(REDIS_URL="redis://127.0.0.1:1/0")
    def test_readyz_is_503_when_configured_redis_is_unreachable(self, client):
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": True, "redis": False}

    @override_settings(REDIS_URL="redis://127.0.0.1:6379/0")
    def test_readyz_checks_a_real_redis(self, client):
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
        assert response.json()["checks"]["redis"] is True

    @override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["api.example.com"])
    @pytest.mark.parametrize("path", ["/healthz", "/readyz"])
    def test_probes_need_no_https_and_no_known_host(self, client, path):
        """Kubernetes probes use plain HTTP and the pod IP as Host."""
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200

    def test_health_endpoints_are_not_in_the_api_schema(self, client):
        paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
        assert not [p for p in paths if "healthz" in p or "readyz" in p]


class TestHttps:
    @pytest.fixture(autouse=True)
    def https_redirect(self, settings):
        settings.SECURE_SSL_REDIRECT = True

    def test_plain_http_is_redirected_to_https(self, client):
        response = client.get("/api/users/me/")
        assert response.status_code == 301
        assert response["Location"] == "https://testserver/api/users/me/"

    def test_https_from_the_proxy_is_served_with_hsts_and_headers(self, client):
        response = client.get("/api/users/me/", HTTP_X_FORWARDED_PROTO="https")
        assert response.status_code == 401
        assert "max-age=31536000" in response["Strict-Transport-Security"]
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"


class TestRequestIds:
    def test_every_response_carries_a_request_id(self, client):
        first, second = client.get("/api/users/me/"), client.get("/healthz/")
        assert uuid.UUID(first["X-Request-ID"])
        assert first["X-Request-ID"] != second.get("X-Request-ID")

    def test_a_valid_incoming_request_id_is_kept_and_a_bad_one_replaced(self, client):
        given = str(uuid.uuid4())
        assert client.get("/api/users/me/", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
        forged = client.get("/api/users/me/", HTTP_X_REQUEST_ID="evil\nINFO fake log line")
        assert "evil" not in forged["X-Request-ID"]

    def test_one_log_line_per_request_without_secrets_or_query_strings(self, client, caplog):
        password = "Sup3r-secret-Passw0rd!"
        with caplog.at_level(logging.INFO, logger="messaging_app.requests"):
            client.post(
                "/api/users/",
                {"email": "log@example.com", "password": password, "first_name": "L", "last_name": "G"},
                content_type="application/json",
            )
            credentials = {"email": "log@example.com", "password": password}
            client.post("/api/token/", credentials, content_type="application/json")
            client.get("/api/users/?search=private-term")
        lines = [r.getMessage() for r in caplog.records if r.name == "messaging_app.requests"]
        assert len(lines) == 3
        assert lines[0].startswith("POST /api/users/ 201 ") and lines[0].endswith("ms")
        assert lines[2].startswith("GET /api/users/ 401 ")
        everything = "\n".join(r.getMessage() for r in caplog.records)
        assert password not in everything and "private-term" not in everything and "access" not in everything


def _run(args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="messaging_app.settings")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


class TestSettings:
    def test_production_without_a_secret_key_refuses_to_start(self):
        result = _run(["manage.py", "check"], DJANGO_DEBUG="0")
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY is not set" in result.stderr

    def test_check_deploy_is_clean_with_only_secret_and_hosts(self):
        result = _run(
            ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            DJANGO_SECRET_KEY=SECRET,
            DJANGO_ALLOWED_HOSTS="api.example.com",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no issues" in result.stdout

    def test_production_defaults_are_secure(self):
        code = (
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
            "s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)"
        )
        result = _run(["-c", code], DJANGO_SECRET_KEY=SECRET, DJANGO_ALLOWED_HOSTS="api.example.com")
        assert result.stdout.split() == [
            "False", "True", "True", "True", "31536000", "('HTTP_X_FORWARDED_PROTO',", "'https')",
        ]
