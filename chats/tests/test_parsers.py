"""
Hostile JSON and page numbers: bodies and WebSocket frames nested thousands deep are a 400
`parse_error` / the documented bad-frame answer (not a RecursionError), and no `?page=` value
is a 500 on any list.
"""
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import given, note, settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from chats.tests.factories import make_conversation
from chats.tests.test_properties import PROPERTY_SETTINGS
from chats.tests.utils import assert_error
from messaging_app.asgi import application
from messaging_app.parsers import nested_deeper_than
from notifications.services import webhook_create

DEEP_BODIES = {
    "1000-nested-lists": "[" * 1000 + "]" * 1000,
    "1000-nested-objects": '{"a":' * 1000 + "1" + "}" * 1000,
    "100000-unclosed-lists": "[" * 100_000,
    "deep-inside-a-valid-object": '{"message_body": "hi", "x": ' + "[" * 5000 + "]" * 5000 + "}",
    "one-level-too-deep": "[" * 33 + "]" * 33,
}


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def post_raw(client, url: str, body: str):
    return client.generic("POST", url, body.encode(), content_type="application/json")


# --- REST --------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize("url", ["/api/users/", "/api/token/", "/api/token/refresh/"])
def test_deeply_nested_json_to_an_anonymous_endpoint_is_400_parse_error(url, body):
    assert_error(post_raw(APIClient(), url, body), 400, code="parse_error")


@pytest.mark.django_db
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
def test_deeply_nested_json_from_a_participant_is_400_parse_error(client_for, alice, bob, body):
    conversation = make_conversation(alice, bob)
    client = client_for(alice)
    for url in ("/api/messages/", f"/api/conversations/{conversation.pk}/messages/", "/api/conversations/"):
        body_json = assert_error(post_raw(client, url, body), 400, code="parse_error")
        assert f"nested deeper than {settings.MAX_JSON_DEPTH} levels" in body_json["errors"][0]["detail"] or (
            body.startswith("[" * 100_000)  # unclosed: the decoder's own error is fine too
        )


@pytest.mark.django_db
def test_nesting_up_to_the_limit_still_parses(client_for, alice, bob):
    """The bound refuses nothing legitimate: a body nested exactly MAX_JSON_DEPTH deep reaches validation."""
    conversation = make_conversation(alice, bob)
    nested = "[" * (settings.MAX_JSON_DEPTH - 1) + '"x"' + "]" * (settings.MAX_JSON_DEPTH - 1)
    response = post_raw(client_for(alice), "/api/messages/", '{"conversation": "%s", "message_body": %s}' % (
        conversation.pk, nested))
    assert_error(response, 400, code="invalid", attr="message_body")  # a list is not a string: validation, not parse


@hypothesis_settings(**PROPERTY_SETTINGS)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k'), children, max_size=3)
    ),
    max_leaves=40,
))
def test_the_depth_scan_agrees_with_the_decoder(value):
    """Brackets inside strings (escaped quotes too) do not count; every real level does."""
    text = json.dumps(value)
    for limit in range(depth(value) + 2):
        assert nested_deeper_than(text, limit) == (depth(value) > limit), (text, limit)


# --- WebSocket ---------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
async def test_a_deeply_nested_first_frame_closes_with_4400(body):
    socket = WebsocketCommunicator(application, "/ws/")
    assert (await socket.connect(timeout=3))[0]
    await socket.send_to(text_data=body.replace('"message_body"', '"type"'))
    frame = await socket.receive_output(3)
    assert frame == {"type": "websocket.close", "code": 4400}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_deeply_nested_frame_after_auth_is_error_bad_frame_and_the_socket_stays_open(alice):
    socket = WebsocketCommunicator(application, "/ws/")
    assert (await socket.connect(timeout=3))[0]
    try:
        await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(alice))})
        assert (await socket.receive_json_from(3))["type"] == "auth.ok"
        await socket.send_to(text_data='{"type": "ping", "x": ' + "[" * 1000 + "]" * 1000 + "}")
        error = await socket.receive_json_from(3)
        assert (error["type"], error["code"]) == ("error", "bad_frame")
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(3) == {"type": "pong"}
    finally:
        await socket.disconnect()


# --- page numbers ------------------------------------------------------------------------
def paginated_list_paths() -> list[str]:
    """Every GET of the OpenAPI schema that takes ?page=, so a new list is covered when it is added."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        path for path, operations in schema["paths"].items()
        if any(p["name"] == "page" for p in operations.get("get", {}).get("parameters", []))
    )


WEIRD_PAGES = ["²", "①", "٣", "1²", "9" * 5000, "9" * 20, "0", "-1", "1.0", " 1", "1e3", "１", "0x1", "", "\x00"]


@pytest.mark.django_db
def test_no_page_value_is_a_500_on_any_list(client_for, alice, bob):
    """Not a page: 404 "Invalid page." as DRF answers; page 1 in any digits that int() reads is still a page."""
    conversation = make_conversation(alice, bob, messages=("hello",))
    message = conversation.messages.get()
    webhook = webhook_create(owner=alice, url="https://hooks.example.com/pages")
    client = client_for(alice)
    paths = paginated_list_paths()
    assert len(paths) >= 6 and "/api/messages/" in paths
    for template in paths:
        path = template.format(conversation_id=conversation.pk, message_id=message.pk, webhook_id=webhook.pk)
        for page in WEIRD_PAGES:
            response = client.get(path, {"page": page})
            assert response.status_code in (200, 404), (path, page[:20], response.status_code)
            if response.status_code == 404:
                assert_error(response, 404, code="not_found")
        # The 5,000-digit page is a 404 like any page past the end, on every list.
        assert_error(client.get(path, {"page": "9" * 5000}), 404, code="not_found")
        assert_error(client.get(path, {"page": "²"}), 404, code="not_found")


@given(page=st.text(max_size=12) | st.integers(min_value=0).map(str) | st.sampled_from(["9" * 4301, "1" * 6000]))
@hypothesis_settings(max_examples=150, **PROPERTY_SETTINGS)
@pytest.mark.django_db
def test_any_page_text_on_the_flat_message_list_is_200_or_404(client_for, alice, page):
    note(repr(page[:40]))
    response = client_for(alice).get("/api/messages/", {"page": page.replace("\x00", "")})
    assert response.status_code in (200, 404), (page[:20], response.status_code)
