"""Personal access tokens: made, listed and revoked through the API; used as `Authorization: Token`."""
import pytest
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from bots import services
from bots.models import PersonalAccessToken
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db


def token_client(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    return client


def make(user, *scopes):
    return services.access_token_create(user=user, name="bot", scopes=scopes or ("read", "send"))[1]


def test_create_list_and_revoke(alice, client_for):
    client = client_for(alice)
    created = client.post("/api/tokens/", {"name": "CI bot", "scopes": ["read", "send"]}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token"].startswith("mat_") and len(body["token"]) > 40
    assert body["name"] == "CI bot" and body["scopes"] == ["read", "send"] and body["prefix"] == body["token"][:12]
    # Stored hashed: the value is nowhere in the database row.
    row = PersonalAccessToken.objects.get(pk=body["token_id"])
    assert body["token"] not in (row.token_hash, row.prefix) and row.token_hash == services.token_hash(body["token"])

    listed = client.get("/api/tokens/").json()
    assert listed["count"] == 1 and "token" not in listed["results"][0]
    assert token_client(body["token"]).get("/api/users/me/").json()["user_id"] == str(alice.pk)

    assert client.delete(f"/api/tokens/{body['token_id']}/").status_code == 204
    assert_error(token_client(body["token"]).get("/api/users/me/"), 401)
    assert client.get("/api/tokens/").json()["count"] == 0


def test_last_used_at_is_recorded(alice):
    value = make(alice)
    assert PersonalAccessToken.objects.get().last_used_at is None
    token_client(value).get("/api/conversations/")
    assert PersonalAccessToken.objects.get().last_used_at is not None


def test_read_scope_reads_but_does_not_send(alice, conversation):
    client = token_client(make(alice, "read"))
    assert client.get("/api/conversations/").json()["count"] == 1
    assert client.get(f"/api/conversations/{conversation.pk}/messages/").status_code == 200
    response = client.post(f"/api/conversations/{conversation.pk}/messages/", {"message_body": "hi"}, format="json")
    assert_error(response, 403)
    assert conversation.messages.count() == 2


def test_send_scope_sends_but_does_not_read(alice, conversation):
    client = token_client(make(alice, "send"))
    sent = client.post(f"/api/conversations/{conversation.pk}/messages/", {"message_body": "from a bot"},
                       format="json")
    assert sent.status_code == 201 and sent.json()["sender"]["user_id"] == str(alice.pk)
    assert_error(client.get("/api/conversations/"), 403)


@pytest.mark.parametrize("method,path,data", [
    ("get", "/api/tokens/", None),
    ("post", "/api/tokens/", {"name": "another", "scopes": ["read"]}),
    ("post", "/api/users/me/password/", {"current_password": "x", "new_password": "y-Strong-enough-42"}),
    ("get", "/api/webhooks/", None),
    ("post", "/api/webhooks/", {"url": "https://hooks.example.com/"}),
])
def test_no_token_manages_credentials_or_webhooks(alice, method, path, data):
    response = getattr(token_client(make(alice)), method)(path, data, format="json")
    assert_error(response, 403)
    assert PersonalAccessToken.objects.count() == 1


def test_a_wrong_or_malformed_token_is_a_401(alice):
    make(alice)
    assert_error(token_client("mat_not-a-token").get("/api/users/me/"), 401)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token")
    assert_error(client.get("/api/users/me/"), 401)
    client.credentials(HTTP_AUTHORIZATION="Token a b")
    assert_error(client.get("/api/users/me/"), 401)


def test_a_deactivated_users_token_is_a_401(alice):
    value = make(alice)
    alice.is_active = False
    alice.save()
    assert_error(token_client(value).get("/api/users/me/"), 401)


def test_someone_elses_token_is_a_404(alice, mallory, client_for):
    services.access_token_create(user=alice, name="bot", scopes=["read"])
    token = PersonalAccessToken.objects.get()
    assert_error(client_for(mallory).delete(f"/api/tokens/{token.pk}/"), 404)
    assert_error(client_for(mallory).delete("/api/tokens/not-a-uuid/"), 404)
    assert client_for(mallory).get("/api/tokens/").json()["count"] == 0
    assert PersonalAccessToken.objects.filter(pk=token.pk).exists()


def test_bad_input_is_a_400(alice, client_for, settings):
    client = client_for(alice)
    assert_error(client.post("/api/tokens/", {"name": "x", "scopes": []}, format="json"), 400, attr="scopes")
    assert_error(client.post("/api/tokens/", {"name": "x", "scopes": ["admin"]}, format="json"), 400)
    assert_error(client.post("/api/tokens/", {"scopes": ["read"]}, format="json"), 400, attr="name")
    settings.ACCESS_TOKENS_MAX_PER_USER = 1
    assert client.post("/api/tokens/", {"name": "a", "scopes": ["read"]}, format="json").status_code == 201
    assert_error(client.post("/api/tokens/", {"name": "b", "scopes": ["read"]}, format="json"), 400,
                 code="too_many_tokens")


def test_requests_with_a_token_are_throttled_like_the_users(alice, monkeypatch):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "user": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    client = token_client(make(alice))
    assert [client.get("/api/ping/").status_code for _ in range(4)] == [200, 200, 200, 429]
