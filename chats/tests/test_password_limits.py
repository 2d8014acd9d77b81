"""
Password guessing is limited the same way on every route that takes a password (chats/password_limits.py):
HTTP Basic on an API route, POST /api/token/, the /api-auth/login/ and /admin/login/ forms, and
current_password on POST /api/users/me/password/. Per client address and per account, failures only,
answered 429 with Retry-After before any password is hashed, counters in the configured cache.
"""
import base64
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis
from asgiref.sync import async_to_sync
from django.contrib.auth import aauthenticate
from django.conf import settings as django_settings
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.test import APIClient

from chats.models import User
from chats.password_limits import KEY_PREFIX, PasswordGuessesThrottled
from chats.tests.factories import PASSWORD, UserFactory
from chats.tests.pages import csrf_token
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "another-Strong-passphrase-42"
BASE_DIR = django_settings.BASE_DIR


class CountingMD5PasswordHasher(MD5PasswordHasher):
    """The test suite's hasher, counting every hash it computes (checks and new hashes alike)."""

    hashes = 0

    def encode(self, password, salt):
        CountingMD5PasswordHasher.hashes += 1
        return super().encode(password, salt)


@pytest.fixture
def hashes(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingMD5PasswordHasher"]
    CountingMD5PasswordHasher.hashes = 0
    return lambda: CountingMD5PasswordHasher.hashes


@pytest.fixture
def password_limits(settings):
    """password_limits(ip=..., account=..., num_proxies=...) sets the two rates (and the trusted proxies)."""

    def set_limits(ip="1000/hour", account="1000/hour", num_proxies=0):
        rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "password_ip": ip, "password_account": account}
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates, "NUM_PROXIES": num_proxies
        }

    return set_limits


def basic(email: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


# --- The five ways of presenting a password. Each returns the response and the status a wrong
# --- password gets when the limits are not reached; a right password gets `ok`.
def via_basic(email, password, **extra):
    return APIClient().get("/api/users/me/", HTTP_AUTHORIZATION=basic(email, password), **extra)


def via_token(email, password, **extra):
    return APIClient().post("/api/token/", {"email": email, "password": password}, format="json", **extra)


def _form_login(url, email, password, **extra):
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(url, **extra)
    assert page.status_code == 200
    token = csrf_token(page.content.decode())
    return browser.post(url, {"username": email, "password": password, "csrfmiddlewaretoken": token}, **extra)


def via_api_auth_form(email, password, **extra):
    return _form_login("/api-auth/login/", email, password, **extra)


def via_admin_form(email, password, **extra):
    return _form_login("/admin/login/", email, password, **extra)


def via_current_password(email, password, **extra):
    client = APIClient()
    client.force_authenticate(User.objects.get(email=email))
    return client.post(
        "/api/users/me/password/", {"current_password": password, "new_password": NEW_PASSWORD}, format="json", **extra
    )


PATHS = {
    "basic": (via_basic, 401, 200),
    "token": (via_token, 401, 200),
    "api-auth-form": (via_api_auth_form, 200, 302),
    "admin-form": (via_admin_form, 200, 302),
    "current-password": (via_current_password, 400, 204),
}


def assert_limited(response, html: bool):
    assert response.status_code == 429, response.content
    assert 0 < int(response["Retry-After"]) <= 3600
    if html:
        assert response["Content-Type"].startswith("text/html")
        page = response.content.decode()
        assert "Too many failed password attempts" in page and 'name="password"' in page  # the form, with the error
    else:
        assert_error(response, 429, code="throttled")


@pytest.fixture
def staff():
    """An admin (so the admin form lets the right password in)."""
    return UserFactory(is_staff=True, is_superuser=True)


class TestEveryPathIsLimited:
    @pytest.mark.parametrize("path", PATHS)
    def test_wrong_guesses_then_429_even_for_the_right_password_without_hashing(
        self, path, staff, password_limits, hashes
    ):
        guess, wrong_status, ok_status = PATHS[path]
        password_limits(ip="3/hour")
        assert [guess(staff.email, f"wrong-{n}").status_code for n in range(3)] == [wrong_status] * 3
        hashed = hashes()
        assert hashed >= 3
        html = path.endswith("form")
        assert_limited(guess(staff.email, "wrong-4"), html)
        assert_limited(guess(staff.email, PASSWORD), html)
        assert hashes() == hashed, "a refused attempt must not hash its password"
        staff.refresh_from_db()
        assert staff.check_password(PASSWORD)  # current_password: nothing changed
        # Another address is another budget (the account's limit is not reached).
        assert guess(staff.email, PASSWORD, REMOTE_ADDR="10.1.2.3").status_code == ok_status

    def test_all_paths_share_one_budget(self, staff, password_limits):
        password_limits(ip="5/hour")
        statuses = [guess(staff.email, "wrong").status_code for guess, _, _ in PATHS.values()]
        assert statuses == [401, 401, 200, 200, 400]
        for guess, _, _ in PATHS.values():
            assert guess(staff.email, PASSWORD).status_code == 429

    def test_basic_guesses_are_limited_before_the_anonymous_rate(self, alice, password_limits):
        """The issue's case: 130 Basic guesses all got 401. Now the 4th is a 429, whatever the anon rate."""
        password_limits(ip="3/hour")
        statuses = [via_basic(alice.email, f"guess-{n}").status_code for n in range(10)]
        assert statuses == [401] * 3 + [429] * 7


class TestPerAccount:
    def test_an_account_is_limited_across_many_addresses(self, alice, bob, password_limits, hashes):
        password_limits(account="3/hour")
        for n in range(3):
            assert via_token(alice.email, "wrong", REMOTE_ADDR=f"10.0.0.{n}").status_code == 401
        hashed = hashes()
        assert_limited(via_token(alice.email, PASSWORD, REMOTE_ADDR="10.0.0.99"), html=False)
        assert_limited(via_basic(alice.email.upper(), PASSWORD, REMOTE_ADDR="10.0.0.98"), html=False)
        assert hashes() == hashed
        # Other accounts, from the same addresses, are not affected.
        assert via_token(bob.email, PASSWORD, REMOTE_ADDR="10.0.0.0").status_code == 200

    def test_an_unknown_email_behaves_exactly_like_a_real_one(self, alice, password_limits):
        """No account enumeration through the limiter: same statuses, same Retry-After."""
        password_limits(account="3/hour")

        def run(email):
            responses = [via_token(email, "wrong", REMOTE_ADDR=f"10.0.1.{n}") for n in range(5)]
            # Retry-After: the window's remaining seconds (3600, or a little less if seconds went by).
            return [(r.status_code, 3590 < int(r["Retry-After"]) <= 3600 if r.has_header("Retry-After") else None)
                    for r in responses]

        assert run(alice.email) == run("nobody-here@example.com") == [(401, None)] * 3 + [(429, True)] * 2

    def test_the_async_authenticate_is_limited_too(self, alice, password_limits, hashes):
        password_limits(account="1/hour")
        assert via_token(alice.email, "wrong").status_code == 401
        hashed = hashes()
        with pytest.raises(PasswordGuessesThrottled):
            async_to_sync(aauthenticate)(None, email=alice.email, password=PASSWORD)
        assert hashes() == hashed

    def test_only_failures_count(self, alice, password_limits):
        password_limits(ip="3/hour", account="3/hour")
        assert [via_token(alice.email, PASSWORD).status_code for _ in range(10)] == [200] * 10
        assert [via_basic(alice.email, PASSWORD).status_code for _ in range(10)] == [200] * 10
        assert via_token(alice.email, "wrong").status_code == 401
        assert via_token(alice.email, PASSWORD).status_code == 200

    def test_the_lock_ends_when_its_window_closes(self, alice, password_limits):
        """A window opens at the first counted failure; refused attempts do not extend it."""
        password_limits(account="2/sec")
        assert [via_token(alice.email, "wrong").status_code for _ in range(2)] == [401, 401]
        refused = via_token(alice.email, PASSWORD)
        assert refused.status_code == 429 and refused["Retry-After"] == "1"
        time.sleep(1.05)
        assert via_token(alice.email, PASSWORD).status_code == 200


class TestClientAddress:
    def test_the_address_is_the_one_drf_throttles_trust(self, alice, bob, password_limits):
        """Behind one proxy (NUM_PROXIES=1) the client is the last X-Forwarded-For entry, not the proxy."""
        password_limits(ip="3/hour", num_proxies=1)
        proxy = {"REMOTE_ADDR": "10.0.0.1"}
        for user in (alice, bob, alice):
            assert via_token(user.email, "wrong", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 401
        # A forged first entry does not make a new client.
        spoofed = via_token(bob.email, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7", **proxy)
        assert_limited(spoofed, html=False)
        # Another client behind the same proxy is not limited.
        assert via_token(bob.email, PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 200


class TestSharedCache:
    def test_counters_written_by_another_process_limit_this_one(self, alice, password_limits, settings):
        """Two processes on one Redis: failures counted by a separate Python process refuse a login here."""
        url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        prefix = f"test-password-limits-{uuid.uuid4().hex}"
        caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                              "KEY_PREFIX": prefix}}
        settings.CACHES = caches
        password_limits(account="3/hour")
        script = (
            "import json, sys, django\n"
            "django.setup()\n"
            "from django.test.utils import override_settings\n"
            "caches, rest_framework, email = json.loads(sys.argv[1])\n"
            "with override_settings(CACHES=caches, REST_FRAMEWORK=rest_framework):\n"
            "    from chats.password_limits import password_check\n"
            "    for _ in range(3):\n"
            "        password_check(None, email)\n"
        )
        argument = json.dumps([caches, settings.REST_FRAMEWORK, alice.email.upper()])
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "messaging_app.test_settings"}
        try:
            subprocess.run([sys.executable, "-c", script, argument], cwd=BASE_DIR, env=env, check=True, timeout=60)
            assert_limited(via_token(alice.email, PASSWORD), html=False)
        finally:
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(f"{prefix}:*"))
            assert any(KEY_PREFIX.encode() in key for key in keys)
            client.delete(*keys)


class TestNoSessionForTokenClients:
    """A password change over JWT or Basic created an empty session row and sent a sessionid cookie."""

    URL = "/api/users/me/password/"

    @pytest.mark.parametrize("scheme", ["jwt", "basic"])
    def test_no_session_row_and_no_session_cookie(self, alice, scheme):
        api = APIClient()
        if scheme == "jwt":
            access = via_token(alice.email, PASSWORD).json()["access"]
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        else:
            api.credentials(HTTP_AUTHORIZATION=basic(alice.email, PASSWORD))
        response = api.post(self.URL, {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json")
        assert response.status_code == 204, response.content
        assert django_settings.SESSION_COOKIE_NAME not in response.cookies
        assert Session.objects.count() == 0

    def test_a_session_login_stays_logged_in_with_a_new_session_key(self, alice):
        browser = Client()
        browser.login(email=alice.email, password=PASSWORD)
        old_key = browser.session.session_key
        response = browser.post(
            self.URL, {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, content_type="application/json"
        )
        assert response.status_code == 204
        assert browser.session.session_key != old_key  # cycled, as Django does after a password change
        assert browser.get("/api/users/me/").status_code == 200
