"""Production refuses a DJANGO_SECRET_KEY copied from an example file, or one too short.

The Kubernetes path makes its Secret from secret.env (a copy of secret.env.example): a copy
left unedited must not run. The local production-like runs keep their own keys, which pass.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(secret_key):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="messaging_app.settings", DJANGO_DEBUG="0",
               DJANGO_SECRET_KEY=secret_key, DJANGO_ALLOWED_HOSTS="api.example.com")
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _example_key():
    text = (ROOT / "secret.env.example").read_text()
    return re.search(r"^DJANGO_SECRET_KEY=(.*)$", text, re.M).group(1)


@pytest.mark.parametrize("key", [
    pytest.param(_example_key(), id="secret.env.example"),
    pytest.param("CHANGE-ME-please-0123456789-abcdefghijklmnopqrstuvwxyz", id="change-me, any case"),
    pytest.param("replace-with-a-long-random-string-0123456789abcdef", id=".env.example's wording"),
    pytest.param("django-insecure-" + "k3y" * 20, id="django-insecure prefix"),
    # make serve makes a key per machine now (scripts/serve.sh); its former one is published.
    pytest.param("local-serve-only-not-a-production-secret-0123456789abcdef", id="the Makefile's former key"),
])
def test_placeholder_keys_are_refused(key):
    result = _check(key)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is a placeholder" in result.stderr


@pytest.mark.parametrize("key", ["short-key-0123456789", "a" * 64])
def test_short_or_uniform_keys_are_refused(key):
    result = _check(key)
    assert result.returncode != 0
    assert "too short or too uniform" in result.stderr


def test_the_projects_own_local_keys_still_work():
    """docker compose and the image build keep running in production mode."""
    keys = [
        re.search(r"DJANGO_SECRET_KEY:-([^}]+)\}", (ROOT / "docker-compose.yml").read_text()).group(1),
        re.search(r"DJANGO_DEBUG=0 DJANGO_SECRET_KEY=(\S+)", (ROOT / "Dockerfile").read_text()).group(1),
    ]
    for key in keys:
        result = _check(key)
        assert result.returncode == 0, (key, result.stderr[-500:])
