"""
The browsable API as a browser uses it: log in with the session form, open a write
endpoint as HTML, fill in its "HTML form" tab (CSRF token included) or post its
"Raw data" tab as it stands. Every write that matters has its real input fields, and
its raw example is a valid request. Also the open API root, for people and programs.
"""
import json

import pytest
from django.test import Client

from chats.models import Conversation, ConversationMembership, Message
from chats.tests.factories import PASSWORD, UserFactory, make_conversation
from chats.tests.pages import csrf_token, html_form, raw_data

pytestmark = pytest.mark.django_db

HTML = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def browser_for(user) -> Client:
    """A browser that enforces CSRF, logged in through /api-auth/login/."""
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/api-auth/login/")
    assert page.status_code == 200
    response = browser.post(
        "/api-auth/login/",
        {"username": user.email, "password": PASSWORD, "next": "/api/", "csrfmiddlewaretoken": csrf_token(
            page.content.decode())},
    )
    assert response.status_code == 302 and response["Location"] == "/api/", response.content
    return browser


def open_page(browser: Client, path: str) -> str:
    response = browser.get(path, **HTML)
    assert response["Content-Type"].startswith("text/html"), response
    return response.content.decode()


def submit_form(browser: Client, path: str, page: str, values: dict, accept=HTML["HTTP_ACCEPT"]):
    """Posts the HTML form tab as a browser does: multipart, every field, the CSRF token."""
    fields = html_form(page)
    data = {name: "" for name in fields}
    data.update(values, csrfmiddlewaretoken=fields["csrfmiddlewaretoken"]["value"])
    return browser.post(path, data, HTTP_ACCEPT=accept)


def submit_raw(browser: Client, path: str, page: str):
    """Posts the raw data tab's JSON as it stands, as the page's script does (CSRF header)."""
    body = raw_data(page)
    return browser.post(
        path, body, content_type="application/json", HTTP_ACCEPT="application/json",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )


@pytest.fixture
def alice_browser(alice, conversation):
    return browser_for(alice)


def test_send_to_a_conversation_with_the_form_and_with_the_raw_example(alice, conversation, alice_browser):
    path = f"/api/conversations/{conversation.pk}/messages/"
    page = open_page(alice_browser, path)

    assert set(html_form(page)) == {"csrfmiddlewaretoken", "message_body", "parent_message", "client_id"}
    assert html_form(page)["message_body"]["tag"] == "textarea"
    response = submit_form(alice_browser, path, page, {"message_body": "Typed into the form"})
    assert response.status_code == 201, response.content
    sent = Message.objects.get(message_body="Typed into the form")
    assert (sent.conversation_id, sent.sender_id, sent.client_id, sent.parent_message_id) == (
        conversation.pk, alice.pk, None, None)

    assert json.loads(raw_data(page)) == {"message_body": "Hello!"}
    response = submit_raw(alice_browser, path, page)
    assert response.status_code == 201, response.content
    assert response.json()["message_body"] == "Hello!"
    conversation.refresh_from_db()
    assert conversation.message_count == 4


def test_flat_send_form_names_the_conversation_and_the_raw_example_uses_your_latest(alice, bob, conversation):
    newer = make_conversation(alice, bob, UserFactory())
    browser = browser_for(alice)
    page = open_page(browser, "/api/messages/")

    fields = html_form(page)
    assert set(fields) == {"csrfmiddlewaretoken", "conversation", "message_body", "parent_message", "client_id"}
    response = submit_form(browser, "/api/messages/", page, {
        "conversation": str(conversation.pk), "message_body": "Flat from the form", "client_id": "form-1"})
    assert response.status_code == 201, response.content
    assert Message.objects.get(client_id="form-1").conversation_id == conversation.pk

    example = json.loads(raw_data(page))
    assert example == {"conversation": str(newer.pk), "message_body": "Hello!"}
    response = submit_raw(browser, "/api/messages/", page)
    assert response.status_code == 201, response.content
    assert response.json()["conversation"] == str(newer.pk)


def test_start_a_conversation_with_the_form(alice, bob, carol, conversation, alice_browser):
    page = open_page(alice_browser, "/api/conversations/")

    fields = html_form(page)
    assert set(fields) == {"csrfmiddlewaretoken", "participants", "messages[0]message_body"}
    assert fields["participants"]["value"] == str(bob.pk)  # someone Alice already talks to
    response = submit_form(alice_browser, "/api/conversations/", page, {
        "participants": f"{bob.pk}, {carol.pk}", "messages[0]message_body": "Hi both"})
    assert response.status_code == 201, response.content
    created = Conversation.objects.exclude(pk=conversation.pk).get()
    assert set(created.participants.all()) == {alice, bob, carol}
    assert list(created.messages.values_list("message_body", flat=True)) == ["Hi both"]

    # The first-message box left empty sends no message.
    response = submit_form(alice_browser, "/api/conversations/", page, {
        "participants": f"{carol.pk}", "messages[0]message_body": "  "})
    assert response.status_code == 201, response.content
    assert Conversation.objects.get(pk=created.pk).message_count == 1
    quiet = Conversation.objects.exclude(pk__in=[conversation.pk, created.pk]).get()
    assert (quiet.message_count, set(quiet.participants.all())) == (0, {alice, carol})


def test_bad_form_input_is_a_400_in_the_error_shape(alice, conversation, alice_browser):
    page = open_page(alice_browser, "/api/conversations/")
    response = submit_form(
        alice_browser, "/api/conversations/", page, {"participants": "not-an-id"}, accept="application/json"
    )
    assert response.status_code == 400
    assert [(e["code"], e["attr"]) for e in response.json()["errors"]] == [("invalid", "participants.0")]
    assert Conversation.objects.count() == 1


def test_start_a_conversation_with_the_raw_example(alice, bob, conversation, alice_browser):
    page = open_page(alice_browser, "/api/conversations/")

    assert json.loads(raw_data(page)) == {"participants": [str(bob.pk)], "messages": [{"message_body": "Hello!"}]}
    response = submit_raw(alice_browser, "/api/conversations/", page)
    # Alice and Bob already have their two-person conversation: it is returned, with the message.
    assert response.status_code == 200, response.content
    assert response.json()["conversation_id"] == str(conversation.pk)
    assert response.json()["last_message"]["message_body"] == "Hello!"


def test_a_newcomers_raw_example_names_no_one_and_is_refused_cleanly(db):
    """Someone who talks to no one yet gets `participants: []` to fill: a 400, never a 500."""
    newcomer = UserFactory()
    browser = browser_for(newcomer)
    page = open_page(browser, "/api/conversations/")
    assert json.loads(raw_data(page))["participants"] == []
    response = submit_raw(browser, "/api/conversations/", page)
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "participants"


def test_add_a_participant_with_the_form_and_with_the_raw_example(alice, bob, carol, conversation, alice_browser):
    path = f"/api/conversations/{conversation.pk}/participants/"
    page = open_page(alice_browser, path)  # POST-only: the page answers 405 to GET, with the forms

    assert set(html_form(page)) == {"csrfmiddlewaretoken", "user_id"}
    response = submit_form(alice_browser, path, page, {"user_id": str(carol.pk)})
    assert response.status_code == 201, response.content
    assert set(conversation.participants.all()) == {alice, bob, carol}

    assert json.loads(raw_data(page)) == {"user_id": str(bob.pk)}
    response = submit_raw(alice_browser, path, page)
    assert response.status_code == 200, response.content  # Bob was already in


def test_mark_read_with_the_form_and_with_the_raw_example(alice, bob, conversation):
    browser = browser_for(bob)
    path = f"/api/conversations/{conversation.pk}/read/"
    page = open_page(browser, path)
    membership = ConversationMembership.objects.get(conversation=conversation, user=bob)
    assert membership.unread_count == 2

    assert set(html_form(page)) == {"csrfmiddlewaretoken", "message_id"}
    first = conversation.messages.get(message_body="first")
    response = submit_form(browser, path, page, {"message_id": str(first.pk)})
    assert response.status_code == 200, response.content
    membership.refresh_from_db()
    assert membership.unread_count == 1

    assert json.loads(raw_data(page)) == {}  # everything, up to the newest message
    response = submit_raw(browser, path, page)
    assert response.status_code == 200, response.content
    assert response.json()["unread_count"] == 0


def test_change_password_with_the_form(alice, alice_browser):
    path = "/api/users/me/password/"
    page = open_page(alice_browser, path)

    fields = html_form(page)
    assert set(fields) == {"csrfmiddlewaretoken", "current_password", "new_password"}
    assert fields["current_password"]["type"] == fields["new_password"]["type"] == "password"
    # The raw example names the two fields to fill; it cannot know your password.
    assert json.loads(raw_data(page)) == {"current_password": "", "new_password": ""}

    response = submit_form(alice_browser, path, page, {
        "current_password": PASSWORD, "new_password": "a-brand-new-Passphrase-7"})
    assert response.status_code in (200, 204), response.content  # the HTML page shows a 204 as 200
    alice.refresh_from_db()
    assert alice.check_password("a-brand-new-Passphrase-7")
    # This browser stays logged in.
    assert alice_browser.get("/api/users/me/", HTTP_ACCEPT="application/json").status_code == 200


def test_edit_raw_example_is_the_messages_current_text(alice, conversation, alice_browser):
    message = conversation.messages.get(message_body="second")
    page = open_page(alice_browser, f"/api/messages/{message.pk}/")
    assert json.loads(raw_data(page, "put")) == {"message_body": "second"}


def test_forms_without_the_csrf_token_are_refused(alice, conversation, alice_browser):
    path = f"/api/conversations/{conversation.pk}/messages/"
    response = alice_browser.post(path, {"message_body": "no token"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert not Message.objects.filter(message_body="no token").exists()


# --- The API root --------------------------------------------------------------------------
def test_anonymous_api_root_says_what_exists_and_how_to_log_in(client):
    response = client.get("/api/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    for name in ("users", "conversations", "messages", "me", "ping", "events", "presence", "schema", "swagger_ui",
                 "redoc", "websocket_protocol", "login"):
        assert body[name].startswith("http://testserver/"), name
    assert body["login"] == "http://testserver/api-auth/login/?next=/api/"
    assert "POST /api/token/" in body["authentication"]

    page = client.get("/api/", **HTML)
    assert page.status_code == 200
    assert 'href="http://testserver/api-auth/login/?next=%2Fapi%2F"' in page.content.decode()


@pytest.mark.parametrize("name", ["users", "conversations", "messages", "me", "ping", "events", "presence"])
def test_every_endpoint_the_open_root_lists_still_needs_credentials(client, name):
    url = client.get("/api/", HTTP_ACCEPT="application/json").json()[name]
    path = url.removeprefix("http://testserver")

    assert client.get(path, HTTP_ACCEPT="application/json").status_code == 401
    # A browser is sent to the login form, and back afterwards.
    page = client.get(path, **HTML)
    assert page.status_code == 302
    assert page["Location"] == f"/api-auth/login/?next={path}"
