"""
Web Push for real: a local HTTP server stands in for the push service (notifications/tests/receiver.py),
each push's VAPID Authorization header is verified with the server's public key, and its body is
decrypted (RFC 8291, http_ece) with the private key of the browser subscription the test made.
pywebpush is not mocked. Also: the subscriptions API, batching, muted/own/connected/opt-in rules, and
404/410 dropping a subscription.
"""
import base64
import json
import os
import time

import http_ece
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from django.core.cache import cache

from chats import services_membership, socket_slots
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error
from notifications import preferences, push
from notifications.models import PushSubscription

pytestmark = pytest.mark.django_db

URL = "/api/push-subscriptions/"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """A browser's push subscription: its own P-256 key pair and auth secret, as PushManager makes them."""

    def __init__(self, endpoint: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.endpoint = endpoint

    def subscription(self) -> dict:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64(public), "auth": b64(self.auth)}}

    def decrypt(self, body: bytes) -> dict:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))


def verify_vapid(authorization: str, vapid_public_key: str, endpoint: str) -> dict:
    """`vapid t=<JWT ES256>, k=<public key>` (RFC 8292): the key is ours and the JWT's signature verifies."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == vapid_public_key
    header, claims, signature = fields["t"].split(".")
    raw = unb64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(vapid_public_key))
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    decoded = json.loads(unb64(claims))
    assert decoded["aud"] == endpoint.split("/hooks")[0]
    assert decoded["exp"] > time.time()
    return decoded


@pytest.fixture
def vapid(settings):
    """Push on, with a VAPID key made for this test, to the tests' own HTTP server."""
    key = ec.generate_private_key(ec.SECP256R1())
    settings.PUSH_VAPID_PRIVATE_KEY = b64(key.private_numbers().private_value.to_bytes(32, "big"))
    settings.PUSH_VAPID_SUBJECT = "mailto:ops@example.com"
    settings.PUSH_ALLOW_HTTP = settings.PUSH_ALLOW_PRIVATE = True
    settings.PUSH_BATCH_SECONDS = 30
    cache.delete(push.ANY_SUBSCRIPTION_CACHE_KEY)
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64(public)


@pytest.fixture
def bobs_browser(vapid, receiver, bob, client_for):
    browser = Browser(receiver.url)
    response = client_for(bob).post(URL, browser.subscription(), format="json")
    assert response.status_code == 201, response.content
    return browser


def sent(receiver) -> list[dict]:
    return list(receiver.requests)


class TestSubscriptionsApi:
    def test_register_list_again_and_delete(self, vapid, receiver, alice, bob, client_for):
        browser = Browser(receiver.url)
        created = client_for(alice).post(URL, browser.subscription(), format="json")
        assert created.status_code == 201
        body = created.json()
        assert set(body) == {"subscription_id", "endpoint", "created_at"} and body["endpoint"] == receiver.url
        assert client_for(alice).post(URL, browser.subscription(), format="json").status_code == 200  # same browser
        listing = client_for(alice).get(URL).json()
        assert listing["vapid_public_key"] == vapid
        assert [s["subscription_id"] for s in listing["subscriptions"]] == [body["subscription_id"]]
        assert client_for(bob).get(URL).json()["subscriptions"] == []
        assert_error(client_for(bob).delete(f"{URL}{body['subscription_id']}/"), 404)
        assert_error(client_for(alice).delete(f"{URL}not-an-id/"), 404)
        assert client_for(alice).delete(f"{URL}{body['subscription_id']}/").status_code == 204
        assert not PushSubscription.objects.exists()

    @pytest.mark.parametrize("change, attr", [
        ({"endpoint": "ftp://push.example.com/x"}, "endpoint"),
        ({"keys": {"p256dh": "abc", "auth": "tBHItJI5svbpez7KI4CCXg"}}, "keys.p256dh"),
        ({"keys": {"auth": "tBHItJI5svbpez7KI4CCXg"}}, "keys.p256dh"),
        ({"keys": None}, "keys"),
    ])
    def test_bad_subscriptions_are_400(self, vapid, receiver, alice, client_for, change, attr):
        payload = {**Browser(receiver.url).subscription(), **change}
        assert_error(client_for(alice).post(URL, payload, format="json"), 400, attr=attr)

    def test_ssrf_guard_in_production(self, vapid, receiver, alice, client_for, settings):
        settings.PUSH_ALLOW_HTTP = settings.PUSH_ALLOW_PRIVATE = False
        for endpoint in (receiver.url, "https://127.0.0.1/push", "https://10.0.0.8/push", "https://localhost/x"):
            payload = {**Browser(endpoint).subscription()}
            assert_error(client_for(alice).post(URL, payload, format="json"), 400, code="url_refused", attr="endpoint")
        assert client_for(alice).post(URL, Browser("https://push.example.com/a").subscription(),
                                      format="json").status_code == 201

    def test_without_vapid_key_no_public_key(self, alice, client_for, settings):
        settings.PUSH_VAPID_PRIVATE_KEY = ""
        assert client_for(alice).get(URL).json()["vapid_public_key"] is None


class TestPushes:
    def test_a_real_push_verifies_and_decrypts_without_text_by_default(
        self, bobs_browser, receiver, vapid, alice, bob, django_capture_on_commit_callbacks
    ):
        conversation = make_conversation(alice, bob)
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "the secret plan")
        [request] = sent(receiver)
        headers = {k.lower(): v for k, v in request["headers"].items()}
        verify_vapid(headers["authorization"], vapid, receiver.url)
        assert headers["content-encoding"] == "aes128gcm"
        assert int(headers["ttl"]) > 0
        assert b"secret" not in request["body"]
        payload = bobs_browser.decrypt(request["body"])
        assert payload == {
            "type": "messages", "conversation_id": str(conversation.pk), "unread_count": 1,
            "sender": {"user_id": str(alice.pk), "first_name": alice.first_name},
        }

    def test_text_only_when_opted_in(self, bobs_browser, receiver, alice, bob, django_capture_on_commit_callbacks):
        preferences.preferences_update(user=bob, push_include_text=True)
        conversation = make_conversation(alice, bob)
        with django_capture_on_commit_callbacks(execute=True):
            message = send(conversation, alice, "the secret plan")
        payload = bobs_browser.decrypt(sent(receiver)[0]["body"])
        assert payload["message_body"] == "the secret plan" and payload["message_id"] == str(message.pk)

    def test_ten_quick_messages_make_one_push(self, bobs_browser, receiver, alice, bob,
                                              django_capture_on_commit_callbacks):
        conversation = make_conversation(alice, bob)
        for n in range(10):
            with django_capture_on_commit_callbacks(execute=True):
                send(conversation, alice, f"quick {n}")
        assert len(sent(receiver)) == 1
        cache.delete(push._pending_key(bob.pk, conversation.pk))  # the window has passed
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "later")
        assert len(sent(receiver)) == 2
        assert bobs_browser.decrypt(sent(receiver)[1]["body"])["unread_count"] == 11

    def test_a_worker_batch_clears_its_key_and_pushes_the_count_at_run_time(
        self, bobs_browser, receiver, alice, bob
    ):
        conversation = make_conversation(alice, bob)
        send(conversation, alice, "one")
        send(conversation, alice, "two")
        run = push.push_conversation_send(user_id=bob.pk, conversation_id=conversation.pk)
        assert run.sent == 1 and bobs_browser.decrypt(sent(receiver)[0]["body"])["unread_count"] == 2
        assert cache.add(push._pending_key(bob.pk, conversation.pk), 1, 5)  # cleared: the next message schedules

    def test_never_for_own_muted_none_mentions_or_connected(
        self, bobs_browser, receiver, alice, bob, carol, django_capture_on_commit_callbacks
    ):
        conversation = make_conversation(alice, bob, carol)
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, bob, "my own")  # Bob's own message
        services_membership.membership_update(conversation=conversation, user=bob, muted=True)
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "muted")
        for level in ("none", "mentions"):  # no message mentions anyone yet: "mentions" stays quiet
            services_membership.membership_update(conversation=conversation, user=bob, muted=False,
                                                  notifications=level)
            with django_capture_on_commit_callbacks(execute=True):
                send(conversation, alice, level)
        services_membership.membership_update(conversation=conversation, user=bob, notifications="all")
        preferences.preferences_update(user=bob, push_enabled=False)
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "push off")
        preferences.preferences_update(user=bob, push_enabled=True)
        socket_slots._local[bob.pk] = {"a-channel"}  # an open socket in this process (no Redis here)
        try:
            with django_capture_on_commit_callbacks(execute=True):
                send(conversation, alice, "online")
        finally:
            socket_slots._local.pop(bob.pk, None)
        assert sent(receiver) == []
        cache.delete(push._pending_key(bob.pk, conversation.pk))  # the "push off" batch's window has passed
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "away again")
        assert len(sent(receiver)) == 1

    @pytest.mark.parametrize("status", [404, 410])
    def test_gone_subscriptions_are_dropped(self, bobs_browser, receiver, alice, bob, status,
                                            django_capture_on_commit_callbacks):
        receiver.script = [status]
        conversation = make_conversation(alice, bob)
        with django_capture_on_commit_callbacks(execute=True):
            send(conversation, alice, "hello")
        assert len(sent(receiver)) == 1
        assert not PushSubscription.objects.filter(user=bob).exists()

    def test_a_500_keeps_the_subscription_for_a_retry(self, bobs_browser, receiver, alice, bob):
        receiver.script = [500]
        conversation = make_conversation(alice, bob)
        send(conversation, alice, "hello")
        run = push.push_conversation_send(user_id=bob.pk, conversation_id=conversation.pk)
        [subscription] = PushSubscription.objects.filter(user=bob)
        assert run.sent == 0 and run.failed == [str(subscription.pk)]
        again = push.push_conversation_send(user_id=bob.pk, conversation_id=conversation.pk, only=run.failed)
        assert again.sent == 1 and len(sent(receiver)) == 2

    def test_no_query_while_nobody_subscribed(self, settings, vapid, alice, bob, django_assert_num_queries):
        conversation = make_conversation(alice, bob)
        message = send(conversation, alice, "hello")
        push.any_subscriptions()  # cached: none
        with django_assert_num_queries(0):
            push.on_message_created(message=message)
