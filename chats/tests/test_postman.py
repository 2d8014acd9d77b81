"""The Postman collection runs again and again: what one run spends, and the rate limits by mode.

scripts/newman.sh proves it live in CI (3 runs on a development server, 2 on one with the
production rates, then a 429); these tests pin the numbers the documentation states.
"""
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.urls import resolve
from rest_framework.throttling import SimpleRateThrottle

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "post_man-Collections" / "messaging_app.postman_collection.json"
SECRET = "a-test-only-secret-key-that-is-long-enough-and-varied-0123456789"
# The production rates, written out: changing one is a decision, and the docs must follow.
PRODUCTION = {"anon": "120/min", "user": "1200/min", "login": "20/min", "register": "30/hour", "send": "300/min",
              "password_ip": "30/hour", "password_account": "10/hour"}


def collection_requests():
    """(method, path) of every request of the collection, in run order, variables as placeholders."""
    def walk(items):
        for item in items:
            yield from walk(item["item"]) if "item" in item else [item]

    for item in walk(json.loads(COLLECTION.read_text())["item"]):
        url = item["request"]["url"]["raw"].removeprefix("{{baseUrl}}").split("?")[0]
        yield item["request"]["method"], re.sub(r"\{\{\w+\}\}", "0b7f3a52-1c7e-4d0a-9b3e-6f2a8c1d4e70", url)


def throttle_scopes(method, path):
    """The rate-limit scopes the API applies to this request, asked of the view that serves it."""
    func = resolve(path).func
    view = func.cls(**func.initkwargs)
    view.action = getattr(func, "actions", {}).get(method.lower())
    return {throttle.scope for throttle in view.get_throttles()}


class _RateParser(SimpleRateThrottle):
    rate = "1/sec"  # any: only parse_rate() is used


def per_minute(rate):
    """Requests a minute that a rate such as "30/hour" allows, read the way DRF reads it."""
    requests, seconds = _RateParser().parse_rate(rate)
    return requests * 60 / seconds


def runs_allowed_per_minute(rate, spent_per_run):
    return per_minute(rate) / spent_per_run


def settings_rates(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "THROTTLE_", "DATABASE_URL"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="messaging_app.settings", DJANGO_SECRET_KEY=SECRET)
    code = "import json; from django.conf import settings; print(json.dumps(settings.REST_FRAMEWORK))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["DEFAULT_THROTTLE_RATES"]


@pytest.fixture(scope="module")
def spent_per_run():
    """Requests of one full run per per-IP scope (per-user scopes start afresh: each run has new users)."""
    return Counter(
        scope for method, path in collection_requests() for scope in throttle_scopes(method, path)
        if scope in ("login", "register")
    )


class TestWhatARunSpends:
    def test_a_run_spends_10_logins_and_4_registrations(self, spent_per_run):
        """Token, refresh and logout share the login limit; Carol's logout reuses her first pair."""
        assert spent_per_run == {"login": 10, "register": 4}
        assert len(list(collection_requests())) == 218

    def test_two_runs_a_minute_and_seven_an_hour_fit_the_production_limits(self, spent_per_run):
        assert runs_allowed_per_minute(PRODUCTION["login"], spent_per_run["login"]) == 2
        assert runs_allowed_per_minute(PRODUCTION["register"], spent_per_run["register"]) * 60 == 7.5

    def test_development_limits_take_far_more_runs_than_a_person_can_start(self, spent_per_run):
        """A run takes seconds, so nobody starts 60 a minute; the development limits allow more."""
        from django.conf import settings

        for scope, spent in spent_per_run.items():
            assert runs_allowed_per_minute(settings.DEVELOPMENT_THROTTLE_RATES[scope], spent) >= 60


class TestRateDefaultsByMode:
    def test_production_applies_the_documented_limits(self):
        assert settings_rates(DJANGO_DEBUG="0", DJANGO_ALLOWED_HOSTS="api.example.com") == PRODUCTION

    def test_development_applies_its_own_higher_limits(self):
        rates = settings_rates(DJANGO_DEBUG="1")
        assert rates == {"anon": "1000/min", "user": "10000/min", "login": "1000/min", "register": "1000/min",
                         "send": "3000/min", "password_ip": "100/min", "password_account": "100/min"}
        assert all(per_minute(rate) > per_minute(PRODUCTION[scope]) for scope, rate in rates.items())

    @pytest.mark.parametrize("debug", ["0", "1"])
    def test_an_environment_variable_sets_a_limit_in_either_mode(self, debug):
        rates = settings_rates(DJANGO_DEBUG=debug, DJANGO_ALLOWED_HOSTS="api.example.com", THROTTLE_LOGIN="3/min")
        assert rates["login"] == "3/min"
        assert rates["register"] == ("30/hour" if debug == "0" else "1000/min")


class TestDocumentation:
    def test_readme_and_postman_guide_state_both_sets_of_limits(self):
        from django.conf import settings

        readme = (ROOT / "docs" / "configuration.md").read_text().splitlines()
        readme_row = next(line for line in readme if "`THROTTLE_LOGIN`" in line)
        guide = (ROOT / "post_man-Collections.md").read_text()
        for scope in PRODUCTION:
            assert f"`THROTTLE_{scope.upper()}`" in guide
        for rate in [*PRODUCTION.values(), *settings.DEVELOPMENT_THROTTLE_RATES.values()]:
            assert f"`{rate}`" in readme_row
            assert f"| {rate} |" in guide
        assert "**10 logins**" in guide and "**4 registrations**" in guide
