"""
Every error the API can give has the one JSON shape (see messaging_app/errors.py):
bad bodies, wrong methods, malformed ids, unknown URLs, paging and size limits,
and an unexpected exception inside a view.
"""
import io
import json
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db.models import F
from django.test import RequestFactory
from rest_framework.test import APIClient

from chats import selectors
from chats.models import MAX_PARTICIPANTS, MESSAGE_BODY_MAX_LENGTH, Conversation, ConversationMembership, Message
from chats.tests.factories import make_conversation
from chats.tests.utils import assert_error
from messaging_app import errors

pytestmark = pytest.mark.django_db

CONVERSATIONS_URL = "/api/conversations/"
MESSAGES_URL = "/api/messages/"


def conversation_url(conversation):
    return f"/api/conversations/{conversation.pk}/"


def nested_messages_url(conversation):
    return f"/api/conversations/{conversation.pk}/messages/"


def participant_ids(conversation):
    return set(ConversationMembership.objects.filter(conversation=conversation).values_list("user_id", flat=True))


# --- Request bodies ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", [CONVERSATIONS_URL, MESSAGES_URL, "nested", "/api/users/", "/api/token/"]
)
def test_malformed_json_is_400_parse_error(alice, conversation, client_for, url):
    """A body that is not valid JSON is a 400 `parse_error`, never a 500."""
    url = nested_messages_url(conversation) if url == "nested" else url

    response = client_for(alice).post(url, '{"message_body": "hi",', content_type="application/json")

    body = assert_error(response, 400, code="parse_error")
    assert body["type"] == "client_error"


@pytest.mark.parametrize("url", [CONVERSATIONS_URL, MESSAGES_URL, "nested", "/api/users/"])
def test_unsupported_content_type_is_415(alice, conversation, client_for, url):
    """A text/plain body is a 415 `unsupported_media_type`."""
    url = nested_messages_url(conversation) if url == "nested" else url

    response = client_for(alice).post(url, "hello", content_type="text/plain")

    assert_error(response, 415, code="unsupported_media_type")


@pytest.mark.parametrize("raw", ["null", "[]", '"text"', "42"])
def test_a_json_body_that_is_not_an_object_is_400(alice, conversation, client_for, raw):
    """The body must be a JSON object: null, a list, a string or a number is a 400."""
    client = client_for(alice)

    for url in (CONVERSATIONS_URL, MESSAGES_URL, nested_messages_url(conversation)):
        assert_error(client.post(url, raw, content_type="application/json"), 400)
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize("url", [CONVERSATIONS_URL, MESSAGES_URL, "/api/users/", "/api/ping/"])
def test_more_query_parameters_than_django_parses_is_400_not_500(alice, client_for, url):
    """Past DATA_UPLOAD_MAX_NUMBER_FIELDS query parameters, a 400 `parse_error` (it was a 500)."""
    query = urlencode([("x", "1")] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = client_for(alice).get(f"{url}?{query}")

    body = assert_error(response, 400, code="parse_error")
    assert body["type"] == "client_error"
    assert str(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS) in body["errors"][0]["detail"]


@pytest.mark.parametrize("form", ["urlencoded", "multipart"])
def test_more_form_fields_than_django_parses_is_400_not_500(alice, bob, client_for, form):
    """Past DATA_UPLOAD_MAX_NUMBER_FIELDS form fields, a 400 `parse_error` and nothing created."""
    fields = [("participants", str(bob.pk))] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)
    client = client_for(alice)

    if form == "urlencoded":
        response = client.post(CONVERSATIONS_URL, urlencode(fields), content_type="application/x-www-form-urlencoded")
    else:
        data = {f"field{i}": value for i, (_, value) in enumerate(fields)}
        response = client.post(CONVERSATIONS_URL, data, format="multipart")

    assert_error(response, 400, code="parse_error")
    assert not Conversation.objects.exists()


def test_more_files_than_django_parses_is_400_not_500(alice, conversation, client_for):
    """Past DATA_UPLOAD_MAX_NUMBER_FILES uploaded files, a 400 `parse_error` and nothing sent."""
    files = {f"file{i}": io.BytesIO(b"x") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)}

    response = client_for(alice).post(nested_messages_url(conversation), {"message_body": "hi", **files})

    assert_error(response, 400, code="parse_error")
    assert Message.objects.filter(conversation=conversation).count() == 2


# --- Methods ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["put", "delete"])
def test_conversation_detail_allows_no_update_or_delete(alice, bob, carol, conversation, client_for, method):
    """PUT/DELETE on a conversation are 405 (PATCH changes a group's details only); its participants stay."""
    before = participant_ids(conversation)

    response = getattr(client_for(alice), method)(
        conversation_url(conversation), {"participants": [str(carol.pk)]}, format="json"
    )

    assert_error(response, 405, code="method_not_allowed")
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert participant_ids(conversation) == before == {alice.pk, bob.pk}


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_conversation_list_allows_no_bulk_update_or_delete(alice, conversation, client_for, method):
    """PUT/PATCH/DELETE on the conversation list are 405."""
    response = getattr(client_for(alice), method)(CONVERSATIONS_URL, {}, format="json")

    assert_error(response, 405, code="method_not_allowed")
    assert Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_message_detail_allows_no_put_and_patch_cannot_move_it(alice, carol, conversation, client_for, nested):
    """PUT on a message is 405; PATCH changes only the text: a message cannot be moved."""
    other = make_conversation(alice, carol)
    message = Message.objects.filter(conversation=conversation).order_by("sent_at").first()
    url = (
        f"{nested_messages_url(conversation)}{message.pk}/" if nested else f"{MESSAGES_URL}{message.pk}/"
    )
    client = client_for(alice)
    payload = {"conversation": str(other.pk), "sender": str(carol.pk), "message_body": "edited"}

    assert_error(client.put(url, payload, format="json"), 405, code="method_not_allowed")
    message.refresh_from_db()
    assert message.message_body == "first"

    assert client.patch(url, payload, format="json").status_code == 200
    message.refresh_from_db()
    assert message.conversation_id == conversation.pk
    assert message.sender_id == alice.pk
    assert message.message_body == "edited"


@pytest.mark.parametrize("method", ["put", "delete"])
def test_me_allows_no_replace_or_delete(alice, client_for, method):
    """The own account cannot be replaced or deleted through the API: the role cannot be changed through it."""
    response = getattr(client_for(alice), method)("/api/users/me/", {"role": "admin"}, format="json")

    assert_error(response, 405, code="method_not_allowed")
    alice.refresh_from_db()
    assert alice.role == "guest"


def test_me_patch_changes_only_settings(alice, client_for):
    """PATCH takes presence_visible and ignores everything else: the role stays."""
    response = client_for(alice).patch("/api/users/me/", {"role": "admin", "presence_visible": False}, format="json")

    assert response.status_code == 200 and response.json()["role"] == "guest"
    alice.refresh_from_db()
    assert (alice.role, alice.presence_visible) == ("guest", False)


def test_me_patch_with_a_bad_value_is_a_400(alice, client_for):
    response = client_for(alice).patch("/api/users/me/", {"presence_visible": "sometimes"}, format="json")

    assert_error(response, 400, code="invalid", attr="presence_visible")


# --- Malformed ids ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/api/conversations/not-a-uuid/",
        "/api/conversations/not-a-uuid/messages/",
        "/api/messages/not-a-uuid/",
        "/api/conversations/12345/",
        "/api/conversations/00000000-0000-0000-0000-00000000000g/messages/",
    ],
)
def test_an_invalid_uuid_in_the_path_is_404_json(alice, client_for, url):
    """A malformed id in the path is a JSON 404, like any unknown id."""
    response = client_for(alice).get(url)

    body = assert_error(response, 404, code="not_found")
    assert response["Content-Type"].startswith("application/json")
    assert body["type"] == "client_error"


def test_an_invalid_message_uuid_in_a_nested_path_is_404_json(alice, conversation, client_for):
    """/api/conversations/<id>/messages/not-a-uuid/ is a JSON 404."""
    response = client_for(alice).get(f"{nested_messages_url(conversation)}not-a-uuid/")

    assert_error(response, 404, code="not_found")


def test_posting_to_an_invalid_conversation_uuid_is_404(alice, client_for):
    """Sending to /api/conversations/not-a-uuid/messages/ is a 404 and stores nothing."""
    response = client_for(alice).post(
        "/api/conversations/not-a-uuid/messages/", {"message_body": "hi"}, format="json"
    )

    assert_error(response, 404, code="not_found")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "url, attr",
    [
        (f"{MESSAGES_URL}?conversation=nope", "conversation"),
        (f"{MESSAGES_URL}?sender=nope", "sender"),
        (f"{MESSAGES_URL}?sent_after=yesterday", "sent_after"),
        (f"{CONVERSATIONS_URL}?participant=nope", "participant"),
        (f"{CONVERSATIONS_URL}?created_before=not-a-date", "created_before"),
    ],
)
def test_an_invalid_filter_value_is_400(alice, conversation, client_for, url, attr):
    """A malformed UUID or date in a filter is a 400 naming the parameter."""
    assert_error(client_for(alice).get(url), 400, attr=attr)


def test_an_invalid_conversation_uuid_in_a_message_body_is_400(alice, client_for):
    """POST /api/messages/ with a malformed conversation id is a 400 on `conversation`."""
    response = client_for(alice).post(
        MESSAGES_URL, {"conversation": "nope", "message_body": "hi"}, format="json"
    )

    assert_error(response, 400, attr="conversation")


# --- Unknown URLs and pages -------------------------------------------------------------
@pytest.mark.parametrize("url", ["/api/does-not-exist/", "/api/conversations/x/y/z/", "/nowhere/"])
def test_unknown_url_is_404_json_with_debug_off(alice, client_for, url):
    """With DEBUG off, an unknown URL answers a JSON 404 in the error shape, not HTML."""
    assert settings.DEBUG is False

    response = client_for(alice).get(url)

    body = assert_error(response, 404, code="not_found")
    assert response["Content-Type"].startswith("application/json")
    assert body["type"] == "client_error"


@pytest.mark.parametrize("url", [CONVERSATIONS_URL, MESSAGES_URL, "nested", "/api/users/"])
@pytest.mark.parametrize("page", ["999", "abc", "0"])
def test_a_page_out_of_range_is_404_json(alice, bob, conversation, client_for, url, page):
    """?page= past the end (or not a page number) is a JSON 404."""
    url = nested_messages_url(conversation) if url == "nested" else url

    response = client_for(alice).get(url, {"page": page})

    assert_error(response, 404, code="not_found")


@pytest.fixture
def long_conversation(conversation, alice):
    """The Alice/Bob conversation with 110 more messages (bulk-inserted: 112 in all)."""
    first = Message.objects.filter(conversation=conversation).order_by("-sent_at").first()
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            sender=alice,
            message_body=f"bulk {i}",
            sent_at=first.sent_at + timedelta(seconds=i + 1),
        )
        for i in range(110)
    )
    # Keep the denormalised count in step, as message_send would.
    Conversation.objects.filter(pk=conversation.pk).update(message_count=F("message_count") + 110)
    return conversation


@pytest.mark.parametrize("url", ["nested", "flat"])
def test_page_size_is_capped_at_100(alice, long_conversation, client_for, url):
    """?page_size=1000 returns at most 100 items; the rest is on the next page."""
    url = nested_messages_url(long_conversation) if url == "nested" else MESSAGES_URL
    client = client_for(alice)

    response = client.get(url, {"page_size": 1000})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 112
    assert len(body["results"]) == 100
    assert body["next"] is not None
    second = client.get(url, {"page_size": 1000, "page": 2}).json()
    assert len(second["results"]) == 12
    seen = {m["message_id"] for m in body["results"]} | {m["message_id"] for m in second["results"]}
    assert len(seen) == 112


def test_page_size_default_is_20_and_smaller_sizes_are_honoured(alice, long_conversation, client_for):
    """Without page_size a page has 20 items; page_size=5 gives 5."""
    client = client_for(alice)
    url = nested_messages_url(long_conversation)

    assert len(client.get(url).json()["results"]) == 20
    assert len(client.get(url, {"page_size": 5}).json()["results"]) == 5


# --- Wrong types and limits -------------------------------------------------------------
@pytest.mark.parametrize(
    "participants", ["some-user-id", {"id": "x"}, 42, None, [], ["not-a-uuid"], [None]],
    ids=["string", "object", "number", "null", "empty", "bad-uuid", "null-item"],
)
def test_participants_of_the_wrong_type_are_400(alice, bob, client_for, participants):
    """`participants` must be a non-empty list of UUIDs."""
    if participants == "some-user-id":
        participants = str(bob.pk)  # A lone id, not a list of one.

    response = client_for(alice).post(CONVERSATIONS_URL, {"participants": participants}, format="json")

    body = assert_error(response, 400)
    assert all(e["attr"].startswith("participants") for e in body["errors"]), body
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize(
    "message_body", [42, 4.5, True, ["hi"], {"text": "hi"}, None],
    ids=["int", "float", "bool", "list", "object", "null"],
)
def test_message_body_of_the_wrong_type_is_400(alice, conversation, client_for, message_body, nested):
    """`message_body` must be a JSON string: numbers, booleans, lists, objects, null are 400."""
    if nested:
        url, payload = nested_messages_url(conversation), {"message_body": message_body}
    else:
        url = MESSAGES_URL
        payload = {"conversation": str(conversation.pk), "message_body": message_body}

    response = client_for(alice).post(url, payload, format="json")

    assert_error(response, 400, attr="message_body")
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_message_body_longer_than_the_limit_is_400(alice, conversation, client_for, nested):
    """4001 characters is a 400 on `message_body`; exactly 4000 is accepted."""
    client = client_for(alice)

    def post(body):
        if nested:
            return client.post(nested_messages_url(conversation), {"message_body": body}, format="json")
        return client.post(
            MESSAGES_URL, {"conversation": str(conversation.pk), "message_body": body}, format="json"
        )

    assert_error(post("x" * (MESSAGE_BODY_MAX_LENGTH + 1)), 400, code="max_length", attr="message_body")
    assert Message.objects.filter(conversation=conversation).count() == 2
    accepted = post("é" * MESSAGE_BODY_MAX_LENGTH)
    assert accepted.status_code == 201, accepted.content
    assert len(accepted.json()["message_body"]) == MESSAGE_BODY_MAX_LENGTH


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("message_body", ["", "   ", "\n\t  \n"], ids=["empty", "spaces", "mixed"])
def test_blank_or_whitespace_only_message_body_is_400(alice, conversation, client_for, message_body, nested):
    """A body that is empty after trimming is a 400 `blank` on `message_body`."""
    if nested:
        url, payload = nested_messages_url(conversation), {"message_body": message_body}
    else:
        url = MESSAGES_URL
        payload = {"conversation": str(conversation.pk), "message_body": message_body}

    response = client_for(alice).post(url, payload, format="json")

    assert_error(response, 400, code="blank", attr="message_body")
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_missing_message_body_is_400_required(alice, conversation, client_for):
    """Leaving out `message_body` is a 400 `required`."""
    response = client_for(alice).post(nested_messages_url(conversation), {}, format="json")

    assert_error(response, 400, code="required", attr="message_body")


def test_initial_message_errors_name_their_position(alice, bob, client_for):
    """Bad initial messages are reported as messages.<i>.message_body, and nothing is created."""
    response = client_for(alice).post(
        CONVERSATIONS_URL,
        {
            "participants": [str(bob.pk)],
            "messages": [{"message_body": "ok"}, {"message_body": "x" * (MESSAGE_BODY_MAX_LENGTH + 1)}],
        },
        format="json",
    )

    assert_error(response, 400, attr="messages.1.message_body")
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "messages", ["hi", {"message_body": "hi"}, ["hi"], [{"message_body": ["hi"]}], [{}]],
    ids=["string", "object", "list-of-strings", "list-body", "missing-body"],
)
def test_initial_messages_of_the_wrong_shape_are_400(alice, bob, client_for, messages):
    """`messages` must be a list of {"message_body": "<text>"} objects; anything else is 400."""
    response = client_for(alice).post(
        CONVERSATIONS_URL, {"participants": [str(bob.pk)], "messages": messages}, format="json"
    )

    body = assert_error(response, 400)
    assert all(e["attr"].startswith("messages") for e in body["errors"]), body
    assert not Conversation.objects.exists()


def test_more_than_50_initial_messages_is_400(alice, bob, client_for):
    """At most 50 messages may come with a new conversation."""
    messages = [{"message_body": f"m{i}"} for i in range(51)]

    response = client_for(alice).post(
        CONVERSATIONS_URL, {"participants": [str(bob.pk)], "messages": messages}, format="json"
    )

    assert_error(response, 400, attr="messages")
    assert not Conversation.objects.exists()


def test_more_than_100_participants_is_400(alice, client_for):
    """101 listed participants is a 400 on `participants`, before any lookup."""
    ids = [str(uuid.uuid4()) for _ in range(MAX_PARTICIPANTS + 1)]

    response = client_for(alice).post(CONVERSATIONS_URL, {"participants": ids}, format="json")

    assert_error(response, 400, attr="participants")
    assert not Conversation.objects.exists()


def test_100_others_plus_the_creator_is_over_the_limit(alice, client_for):
    """The creator counts: 100 others make 101 participants, a 400 on `participants`."""
    ids = [str(uuid.uuid4()) for _ in range(MAX_PARTICIPANTS)]

    response = client_for(alice).post(CONVERSATIONS_URL, {"participants": ids}, format="json")

    body = assert_error(response, 400, attr="participants")
    assert any(str(MAX_PARTICIPANTS) in e["detail"] for e in body["errors"]), body
    assert not Conversation.objects.exists()


def test_unknown_participant_is_400_not_500(alice, client_for):
    """A well-formed but unknown user id is a 400 on `participants`."""
    response = client_for(alice).post(
        CONVERSATIONS_URL, {"participants": [str(uuid.uuid4())]}, format="json"
    )

    assert_error(response, 400, attr="participants")
    assert not Conversation.objects.exists()


# --- Server errors ----------------------------------------------------------------------
def test_an_unhandled_exception_in_a_view_is_a_500_in_the_error_shape(alice, monkeypatch):
    """An unexpected exception becomes a JSON 500 without a traceback."""

    def boom(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "inbox_rows", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)

    response = client.get(CONVERSATIONS_URL)

    body = assert_error(response, 500)
    assert body["type"] == "server_error"
    assert response["Content-Type"].startswith("application/json")
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_the_django_500_handler_answers_in_the_error_shape():
    """handler500 (errors outside DRF) answers JSON in the same shape."""
    response = errors.server_error(RequestFactory().get("/api/"))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body == {
        "type": "server_error",
        "errors": [{"code": "error", "detail": "A server error occurred.", "attr": None}],
    }
