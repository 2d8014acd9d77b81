"""JWT lifecycle (rotation, logout, password change), inactive users, throttling, body size, database outages."""
import logging
from datetime import timedelta

import jwt

import pytest
from django.conf import settings
from django.db.utils import OperationalError
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.tokens import AccessToken

from chats import selectors
from chats.models import Message
from chats.tests.factories import PASSWORD, UserFactory
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db
TOKEN, REFRESH, LOGOUT, ME = "/api/token/", "/api/token/refresh/", "/api/token/blacklist/", "/api/users/me/"
NEW_PASSWORD = "another-Strong-passphrase-42"


def login(api, user, password=PASSWORD):
    response = api.post(TOKEN, {"email": user.email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


class TestTokens:
    def test_refresh_rotates_and_the_used_refresh_token_is_dead(self, api, alice):
        pair = login(api, alice)
        rotated = api.post(REFRESH, {"refresh": pair["refresh"]}, format="json")
        assert rotated.status_code == 200
        assert set(rotated.json()) == {"access", "refresh"} and rotated.json()["refresh"] != pair["refresh"]
        assert_error(api.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401, code="token_not_valid")
        assert api.post(REFRESH, {"refresh": rotated.json()["refresh"]}, format="json").status_code == 200

    def test_logout_blacklists_the_refresh_token(self, api, alice):
        pair = login(api, alice)
        assert api.post(LOGOUT, {"refresh": pair["refresh"]}, format="json").status_code == 200
        assert_error(api.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401, code="token_not_valid")

    @pytest.mark.parametrize(
        "forge",
        [
            lambda token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),  # bad signature
            lambda token: jwt.encode(jwt.decode(token, options={"verify_signature": False}), key=None,
                                     algorithm="none"),  # unsigned
            lambda token: jwt.encode(jwt.decode(token, options={"verify_signature": False}),
                                     key="not-the-server-key-but-long-enough-0123456789", algorithm="HS256"),
            lambda token: jwt.encode(jwt.decode(token, options={"verify_signature": False}),
                                     key=settings.SECRET_KEY, algorithm="HS512"),  # wrong algorithm
        ],
        ids=["bad-signature", "alg-none", "other-key", "wrong-algorithm"],
    )
    def test_forged_access_tokens_are_401(self, api, alice, forge):
        access = login(api, alice)["access"]
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {forge(access)}")
        assert_error(api.get(ME), 401)

    def test_expired_access_token_is_401(self, api, alice):
        token = AccessToken.for_user(alice)
        token.set_exp(lifetime=-timedelta(seconds=1))
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        assert_error(api.get(ME), 401, code="token_not_valid")

    def test_access_tokens_are_short_lived(self):
        assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] <= timedelta(minutes=15)


class TestInactiveUsers:
    def test_an_inactive_user_is_refused_everywhere(self, api, client, alice):
        pair = login(api, alice)
        client.login(email=alice.email, password=PASSWORD)
        alice.is_active = False
        alice.save()
        assert_error(api.post(TOKEN, {"email": alice.email, "password": PASSWORD}, format="json"), 401)
        assert_error(api.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401)
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
        assert_error(api.get(ME), 401)
        api.credentials(HTTP_AUTHORIZATION="Basic " + __import__("base64").b64encode(
            f"{alice.email}:{PASSWORD}".encode()).decode())
        assert_error(api.get(ME), 401)
        assert client.get(ME, HTTP_ACCEPT="application/json").status_code in (401, 403)

    def test_refresh_for_a_deleted_account_is_401_not_500(self, api):
        doomed = UserFactory()
        pair = login(api, doomed)
        doomed.delete()
        assert_error(api.post(REFRESH, {"refresh": pair["refresh"]}, format="json"), 401)


class TestPasswordChange:
    URL = "/api/users/me/password/"

    def test_change_needs_the_current_password_and_a_strong_new_one(self, client_for, alice):
        client = client_for(alice)
        wrong = client.post(self.URL, {"current_password": "nope", "new_password": NEW_PASSWORD}, format="json")
        assert_error(wrong, 400, attr="current_password")
        weak = client.post(self.URL, {"current_password": PASSWORD, "new_password": "123"}, format="json")
        assert_error(weak, 400, attr="new_password")
        alice.refresh_from_db()
        assert alice.check_password(PASSWORD)

    def test_change_logs_out_every_refresh_token(self, api, client_for, alice):
        old_pair = login(api, alice)
        response = client_for(alice).post(
            self.URL, {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
        )
        assert response.status_code == 204
        assert_error(api.post(REFRESH, {"refresh": old_pair["refresh"]}, format="json"), 401)
        assert_error(api.post(TOKEN, {"email": alice.email, "password": PASSWORD}, format="json"), 401)
        login(api, alice, NEW_PASSWORD)

    def test_the_browser_session_that_changed_it_stays_logged_in(self, client, alice):
        client.login(email=alice.email, password=PASSWORD)
        csrf_free = client.post(
            self.URL, {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, content_type="application/json"
        )
        assert csrf_free.status_code == 204  # the test client skips CSRF checks
        assert client.get(ME).status_code == 200


@pytest.fixture
def low_limits(monkeypatch):
    rates = {"anon": "1000/min", "user": "1000/min", "login": "3/min", "register": "2/hour", "send": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    return rates


class TestThrottling:
    def test_login_attempts_are_limited_per_address_with_retry_after(self, api, alice, low_limits):
        for _ in range(3):
            api.post(TOKEN, {"email": alice.email, "password": "wrong"}, format="json")
        blocked = api.post(TOKEN, {"email": alice.email, "password": PASSWORD}, format="json")
        assert_error(blocked, 429, code="throttled")
        assert 0 < int(blocked["Retry-After"]) <= 60
        other_address = api.post(
            TOKEN, {"email": alice.email, "password": PASSWORD}, format="json", REMOTE_ADDR="10.9.8.7"
        )
        assert other_address.status_code == 200

    def test_registrations_are_limited_per_address(self, api, low_limits):
        def register(n):
            payload = {"email": f"r{n}@example.com", "password": NEW_PASSWORD, "first_name": "R", "last_name": "N"}
            return api.post("/api/users/", payload, format="json")

        assert [register(n).status_code for n in range(2)] == [201, 201]
        assert_error(register(3), 429, code="throttled")

    def test_sends_are_limited_per_user(self, client_for, conversation, alice, bob, low_limits):
        url = f"/api/conversations/{conversation.pk}/messages/"
        client = client_for(alice)
        assert [client.post(url, {"message_body": "x"}, format="json").status_code for _ in range(3)] == [201] * 3
        assert_error(client.post(url, {"message_body": "x"}, format="json"), 429)
        assert client.get(url).status_code == 200  # reading is not a send
        assert client_for(bob).post(url, {"message_body": "y"}, format="json").status_code == 201


class TestSizeLimits:
    def test_an_oversize_body_is_413_before_parsing(self, client_for, conversation, alice):
        body = '{"message_body": "' + "x" * (settings.MAX_REQUEST_BODY_BYTES + 10) + '"}'
        response = client_for(alice).post(
            f"/api/conversations/{conversation.pk}/messages/", body, content_type="application/json"
        )
        assert_error(response, 413, code="request_too_large")
        assert not Message.objects.filter(message_body__startswith="xxxx").exists()


class TestDatabaseOutage:
    @pytest.fixture
    def client_for(self):
        """Like the shared fixture, but a 5xx comes back as a response instead of re-raising."""

        def make(user):
            client = APIClient(raise_request_exception=False)
            client.force_authenticate(user)
            return client

        return make

    def test_a_database_error_is_a_503_with_retry_after(self, client_for, alice, monkeypatch):
        def down(**kwargs):
            raise OperationalError("(2006, 'MySQL server has gone away')")

        monkeypatch.setattr(selectors, "inbox_rows", down)
        response = client_for(alice).get("/api/conversations/")
        body = assert_error(response, 503, code="service_unavailable")
        assert body["type"] == "server_error" and "MySQL" not in response.content.decode()
        assert response["Retry-After"] == "5"

    def test_an_outage_logs_one_line_per_request_without_a_traceback(self, client_for, alice, monkeypatch, caplog):
        def down(**kwargs):
            raise OperationalError("(2006, 'MySQL server has gone away')")

        monkeypatch.setattr(selectors, "inbox_rows", down)
        with caplog.at_level(logging.INFO, logger="django.request"):
            assert_error(client_for(alice).get("/api/conversations/"), 503)
        records = [r for r in caplog.records if r.name == "django.request"]
        assert len(records) == 1 and records[0].levelno == logging.ERROR
        assert "gone away" in records[0].getMessage() and records[0].exc_info is None

    def test_a_failure_mid_write_leaves_nothing_half_written(self, client_for, alice, bob, monkeypatch):
        """Memberships fail after the conversation row is inserted: the whole create rolls back."""
        from chats.models import Conversation, ConversationMembership

        def fail(*args, **kwargs):
            raise OperationalError("connection lost")

        monkeypatch.setattr(ConversationMembership.objects, "bulk_create", fail)
        response = client_for(alice).post(
            "/api/conversations/", {"participants": [str(bob.pk)], "messages": [{"message_body": "hi"}]}, format="json"
        )
        assert_error(response, 503)
        assert Conversation.objects.count() == 0 and Message.objects.count() == 0
