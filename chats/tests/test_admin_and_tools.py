"""The admin, the demo seeding command, browser session login and CORS."""
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from chats import services
from chats.models import Conversation, Message, User
from chats.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = User.objects.create_superuser("root@example.com", PASSWORD, first_name="Ad", last_name="Min")
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", ["user", "conversation", "conversationmembership", "message", "messageedit"])
def test_every_model_has_a_working_admin_changelist_with_search(admin_client, conversation, model):
    message = conversation.messages.first()
    services.message_edit(message=message, actor=message.sender, message_body="edited in a test")
    response = admin_client.get(f"/admin/chats/{model}/", {"q": "a"})
    assert response.status_code == 200
    assert admin_client.get(f"/admin/chats/{model}/").context["cl"].result_count >= 1


def test_admin_conversation_page_shows_its_members(admin_client, conversation, alice):
    response = admin_client.get(f"/admin/chats/conversation/{conversation.pk}/change/")
    assert response.status_code == 200
    assert alice.email in response.content.decode()


@override_settings(DEBUG=True)
def test_seed_demo_is_idempotent(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    assert User.objects.filter(email__endswith="@example.com").count() == 3
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 2
    assert "demo-password-123" in capsys.readouterr().out
    assert User.objects.get(email="alice@example.com").check_password("demo-password-123")


def test_seed_demo_refuses_without_debug():
    with pytest.raises(CommandError):
        call_command("seed_demo")
    assert not User.objects.exists()


def test_browsable_api_login_with_email_any_case(client):
    user = UserFactory(email="dana@example.com")
    page = client.get("/api-auth/login/")
    assert page.status_code == 200
    response = client.post(
        "/api-auth/login/", {"username": "DANA@example.com", "password": PASSWORD, "next": "/api/users/me/"}
    )
    assert response.status_code == 302
    me = client.get("/api/users/me/", HTTP_ACCEPT="application/json")
    assert me.status_code == 200 and me.json()["user_id"] == str(user.pk)


@override_settings(CORS_ALLOWED_ORIGINS=["http://app.example"])
def test_cors_allows_configured_origins_only(client):
    allowed = client.options("/api/users/", HTTP_ORIGIN="http://app.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert allowed.headers.get("Access-Control-Allow-Origin") == "http://app.example"
    denied = client.options("/api/users/", HTTP_ORIGIN="http://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_docs_are_served_without_internet_assets(client):
    for url in ("/api/docs/", "/api/redoc/"):
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/conversations/{conversation_id}/messages/" in schema.json()["paths"]


def test_admin_cannot_delete_messages_rows(admin_client, conversation):
    """Row deletion would break counts and timelines; only the API's tombstone deletes."""
    message = conversation.messages.first()
    assert admin_client.get(f"/admin/chats/message/{message.pk}/delete/").status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()
