"""
Outgoing webhooks against a real HTTP receiver (tests/receiver.py): what is sent, in which
order, signed how; retries, auto-disable, the address checks; and the API that manages them.
Delivery runs in-process here (no broker: task_always_eager); test_worker.py runs it in a
real worker process.
"""
import json
import time

import pytest
from django.core.cache import cache

from chats import services as chat_services
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error
from notifications import services, webhook_http
from notifications.models import Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db


def deliver(webhook):
    return services.webhook_deliver_pending(webhook_id=webhook.pk)


# --- What is sent ------------------------------------------------------------------------------
def test_a_webhook_receives_its_owners_stream_frames_in_order_signed(alice, bob, receiver, local_webhooks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    conversation = make_conversation(alice, bob)
    for body in ("one", "two", "three"):
        send(conversation, bob, body)

    run = deliver(webhook)

    frames = receiver.frames()
    assert run.sent == len(frames) == 4  # conversation.created + three messages
    assert [f["event_id"] for f in frames] == [1, 2, 3, 4]
    assert [f["type"] for f in frames] == ["conversation.created"] + ["message.created"] * 3
    assert [f["message"]["message_body"] for f in frames[1:]] == ["one", "two", "three"]
    for request in receiver.requests:
        headers = request["headers"]
        assert webhook_http.verify(webhook.secret, request["body"], headers["X-Messaging-Signature"])
        assert not webhook_http.verify("whsec_wrong", request["body"], headers["X-Messaging-Signature"])
        assert headers["X-Messaging-Webhook-Id"] == str(webhook.pk)
        assert headers["Content-Type"] == "application/json"
    assert [r["headers"]["X-Messaging-Event-Id"] for r in receiver.requests] == ["1", "2", "3", "4"]
    webhook.refresh_from_db()
    assert webhook.last_event_id == 4
    assert list(WebhookDelivery.objects.filter(webhook=webhook).values_list("event_id", "status", "attempts",
                                                                            "response_code")) == [
        (4, "succeeded", 1, 200), (3, "succeeded", 1, 200), (2, "succeeded", 1, 200), (1, "succeeded", 1, 200)]
    # Caught up: a second run sends nothing again.
    assert deliver(webhook).sent == 0
    assert len(receiver.requests) == 4


def test_only_events_after_registration_and_only_the_owners(alice, bob, carol, receiver, local_webhooks):
    conversation = make_conversation(alice, bob, messages=("before",))
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(bob, carol, messages=("not alice's",))
    send(conversation, bob, "after")

    deliver(webhook)

    frames = receiver.frames()
    assert [f["message"]["message_body"] for f in frames] == ["after"]
    assert frames[0]["event_id"] == webhook.last_event_id + 1


def test_signature_is_hmac_sha256_of_timestamp_and_body_with_a_replay_window():
    body = b'{"type":"message.created"}'
    header = webhook_http.sign("whsec_k", body, timestamp=1_700_000_000)
    import hashlib
    import hmac

    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert webhook_http.verify("whsec_k", body, header, now=1_700_000_000 + 299)
    assert not webhook_http.verify("whsec_k", body, header, now=1_700_000_000 + 301)  # replayed too late
    assert not webhook_http.verify("whsec_k", body + b" ", header, now=1_700_000_000)  # body changed
    assert not webhook_http.verify("whsec_k", body, "garbage", now=1_700_000_000)


def test_committed_events_schedule_delivery_after_commit(alice, bob, receiver, local_webhooks,
                                                         django_capture_on_commit_callbacks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    conversation = make_conversation(alice, bob)
    with django_capture_on_commit_callbacks(execute=True):
        send(conversation, bob, "live")
    # No broker in the tests: the task ran in-process once the message's transaction committed.
    assert [f.get("message", {}).get("message_body") for f in receiver.frames()] == [None, "live"]
    webhook.refresh_from_db()
    assert webhook.last_event_id == 2


def test_no_query_per_commit_while_nobody_has_a_webhook(alice, bob, django_assert_num_queries,
                                                        django_capture_on_commit_callbacks):
    cache.clear()
    services.webhooks_notify(recipients={alice.pk, bob.pk})  # one query, then cached
    with django_assert_num_queries(0):
        services.webhooks_notify(recipients={alice.pk, bob.pk})


# --- Failures ----------------------------------------------------------------------------------
def test_a_5xx_is_retried_and_nothing_after_it_is_sent_before_it(alice, bob, receiver, local_webhooks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    conversation = make_conversation(alice, bob)
    send(conversation, bob, "one")
    receiver.script = [200, 500, 503]  # the created frame passes, then "one" fails twice

    first = deliver(webhook)
    assert (first.sent, first.failed) == (1, True)
    webhook.refresh_from_db()
    assert (webhook.last_event_id, webhook.consecutive_failures) == (1, 1)
    assert webhook.next_attempt_at is not None
    delivery = WebhookDelivery.objects.get(webhook=webhook, event_id=2)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 500)

    assert deliver(webhook).failed
    assert deliver(webhook).sent == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    assert [f["event_id"] for f in receiver.frames()] == [1, 2, 2, 2]
    webhook.refresh_from_db()
    assert (webhook.last_event_id, webhook.consecutive_failures, webhook.next_attempt_at) == (2, 0, None)


def test_a_timeout_is_a_failed_attempt(alice, bob, receiver, local_webhooks):
    local_webhooks.WEBHOOKS_TIMEOUT = 0.3
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(alice, bob)
    receiver.script = [("sleep", 1.0)]
    assert deliver(webhook).failed
    delivery = WebhookDelivery.objects.get(webhook=webhook, event_id=1)
    assert (delivery.status, delivery.response_code) == ("pending", None)
    assert delivery.last_error.startswith("timeout")
    assert deliver(webhook).sent == 1  # the receiver answers in time now


def test_a_connection_error_is_a_failed_attempt(alice, bob, local_webhooks):
    from notifications.tests.receiver import Receiver

    with Receiver() as gone:
        url = gone.url
    webhook = services.webhook_create(owner=alice, url=url)
    make_conversation(alice, bob)
    assert deliver(webhook).failed
    assert WebhookDelivery.objects.get(webhook=webhook).last_error.startswith("connection")


def test_backoff_doubles_up_to_its_cap(settings):
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 10
    settings.WEBHOOKS_RETRY_MAX_SECONDS = 3600
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4, 9, 30)] == [10, 20, 40, 80, 2560, 3600]


def test_no_attempt_before_the_backoff_has_passed(alice, bob, receiver, local_webhooks):
    local_webhooks.WEBHOOKS_RETRY_BASE_SECONDS = 60
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(alice, bob)
    receiver.script = [500]
    assert deliver(webhook).failed
    refused = deliver(webhook)  # a new event's task, during the backoff
    assert refused.backing_off and refused.sent == 0
    assert len(receiver.requests) == 1


def test_sustained_failure_disables_the_webhook(alice, bob, client_for, receiver, local_webhooks):
    local_webhooks.WEBHOOKS_DISABLE_AFTER_FAILURES = 3
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(alice, bob)
    receiver.script = [500, 502, 500, 200]
    assert [deliver(webhook).disabled for _ in range(3)] == [False, False, True]
    webhook.refresh_from_db()
    assert not webhook.is_active
    assert "3 failed attempts" in webhook.disabled_reason
    assert WebhookDelivery.objects.get(webhook=webhook).status == "failed"
    assert deliver(webhook).sent == 0  # nothing more is sent
    assert len(receiver.requests) == 3
    listed = client_for(alice).get("/api/webhooks/").json()["results"][0]
    assert listed["is_active"] is False and listed["disabled_reason"] == webhook.disabled_reason


def test_a_deleted_webhook_gets_nothing_more(alice, bob, receiver, local_webhooks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(alice, bob)
    services.webhook_delete(webhook=webhook)
    assert deliver(webhook).sent == 0
    assert receiver.requests == []


def test_a_second_run_while_one_holds_the_webhook_sends_nothing(alice, bob, receiver, local_webhooks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    make_conversation(alice, bob)
    lease, _ = services._claim(webhook.pk)
    busy = deliver(webhook)
    assert busy.busy_until == lease and busy.sent == 0
    services._release(webhook.pk, lease)
    assert deliver(webhook).sent == 1


# --- Where webhooks may deliver (SSRF) ---------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://example.com/hook",  # plain http
    "https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://192.168.0.1/hook", "https://169.254.169.254/latest",
    "https://[::1]/hook", "https://[fd00::1]/hook", "https://[::ffff:127.0.0.1]/hook", "https://localhost/hook",
    "https://0.0.0.0/hook", "https://100.64.0.1/hook", "ftp://example.com/", "https://user:pw@example.com/hook",
])
def test_registration_refuses_urls_that_are_not_public_https(alice, client_for, url):
    response = client_for(alice).post("/api/webhooks/", {"url": url}, format="json")
    assert_error(response, 400, attr="url")
    assert not Webhook.objects.exists()


def test_send_time_check_refuses_a_name_that_resolves_to_a_private_address(
    alice, bob, receiver, settings, monkeypatch
):
    """A public-looking name passes registration; at send time it resolves to loopback: refused, nothing sent."""
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    port = receiver.server.server_address[1]
    webhook = services.webhook_create(owner=alice, url=f"http://rebind.example.com:{port}/hooks")
    real = webhook_http.socket.getaddrinfo
    monkeypatch.setattr(webhook_http.socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1", *a, **k))
    make_conversation(alice, bob)
    assert deliver(webhook).failed
    delivery = WebhookDelivery.objects.get(webhook=webhook)
    assert delivery.last_error.startswith("refused") and "not a public address" in delivery.last_error
    assert receiver.requests == []
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # local development: the same name is delivered to
    settings.WEBHOOKS_RETRY_BASE_SECONDS = 0
    Webhook.objects.filter(pk=webhook.pk).update(next_attempt_at=None)
    assert deliver(webhook).sent == 1 and len(receiver.requests) == 1


def test_resolve_checks_every_address_of_the_host(monkeypatch, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    answers = [(2, 1, 6, "", ("93.184.216.34", 443)), (2, 1, 6, "", ("10.0.0.5", 443))]
    monkeypatch.setattr(webhook_http.socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(webhook_http.AddressRefused, match="10.0.0.5"):
        webhook_http.resolve("mixed.example", 443)
    monkeypatch.setattr(webhook_http.socket, "getaddrinfo", lambda *a, **k: answers[:1])
    assert webhook_http.resolve("public.example", 443) == "93.184.216.34"


# --- The API -----------------------------------------------------------------------------------
def test_register_list_show_and_delete(alice, client_for, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    client = client_for(alice)
    created = client.post("/api/webhooks/", {"url": "https://hooks.example.com/in", "description": "CI bot"},
                          format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["url"] == "https://hooks.example.com/in" and body["description"] == "CI bot"
    assert body["is_active"] is True and body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    webhook_id = body["webhook_id"]

    listed = client.get("/api/webhooks/").json()
    assert listed["count"] == 1 and listed["results"][0]["webhook_id"] == webhook_id
    assert "secret" not in listed["results"][0]
    shown = client.get(f"/api/webhooks/{webhook_id}/").json()
    assert "secret" not in shown and shown["webhook_id"] == webhook_id

    assert client.delete(f"/api/webhooks/{webhook_id}/").status_code == 204
    assert client.get("/api/webhooks/").json()["count"] == 0
    assert_error(client.get(f"/api/webhooks/{webhook_id}/"), 404)


def test_someone_elses_webhook_is_a_404_like_an_unknown_id(alice, mallory, client_for):
    webhook = services.webhook_create(owner=alice, url="https://hooks.example.com/in")
    client = client_for(mallory)
    for method, path in [("get", f"/api/webhooks/{webhook.pk}/"), ("delete", f"/api/webhooks/{webhook.pk}/"),
                         ("get", f"/api/webhooks/{webhook.pk}/deliveries/"), ("get", "/api/webhooks/not-a-uuid/")]:
        assert_error(getattr(client, method)(path), 404)
    assert client.get("/api/webhooks/").json()["count"] == 0
    assert Webhook.objects.filter(pk=webhook.pk).exists()


def test_delivery_log_is_paged_newest_first(alice, bob, client_for, receiver, local_webhooks):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    conversation = make_conversation(alice, bob)
    for n in range(4):
        send(conversation, bob, f"m{n}")
    receiver.script = [200, 200, 200, 200, 500]
    deliver(webhook)
    page = client_for(alice).get(f"/api/webhooks/{webhook.pk}/deliveries/?page_size=2").json()
    assert page["count"] == 5 and page["next"]
    first = page["results"][0]
    assert (first["event_id"], first["status"], first["attempts"], first["response_code"]) == (5, "pending", 1, 500)
    assert first["event_type"] == "message.created" and first["last_attempt_at"] and first["delivered_at"] is None
    assert page["results"][1]["status"] == "succeeded" and page["results"][1]["delivered_at"]


def test_at_most_webhooks_max_per_user(alice, client_for, settings):
    settings.WEBHOOKS_MAX_PER_USER = 2
    client = client_for(alice)
    for n in range(2):
        assert client.post("/api/webhooks/", {"url": f"https://h{n}.example.com/"}, format="json").status_code == 201
    assert_error(client.post("/api/webhooks/", {"url": "https://h3.example.com/"}, format="json"), 400,
                 code="too_many_webhooks")


def test_bad_input_is_a_400(alice, client_for):
    client = client_for(alice)
    assert_error(client.post("/api/webhooks/", {}, format="json"), 400, attr="url")
    assert_error(client.post("/api/webhooks/", {"url": "not a url"}, format="json"), 400, attr="url")
    assert_error(client.post("/api/webhooks/", {"url": "https://x.example.com/", "description": "d" * 201},
                             format="json"), 400, attr="description")


def test_frames_are_exactly_the_stream_frames(alice, bob, receiver, local_webhooks):
    from chats import stream

    webhook = services.webhook_create(owner=alice, url=receiver.url)
    conversation = make_conversation(alice, bob)
    message = send(conversation, bob, "x")
    chat_services.message_edit(message=message, actor=bob, message_body="y")
    deliver(webhook)
    assert receiver.frames() == stream.after(alice.pk, 0, 100)
    assert json.loads(receiver.requests[0]["body"]) == receiver.frames()[0]
    assert time.time() - int(receiver.requests[0]["headers"]["X-Messaging-Signature"][2:12]) < 60


# --- Queries -----------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 15])
def test_the_lists_cost_a_fixed_number_of_queries(alice, bob, client_for, receiver, local_webhooks,
                                                  django_assert_num_queries, count):
    webhook = services.webhook_create(owner=alice, url=receiver.url)
    for n in range(min(count, 10) - 1):  # up to WEBHOOKS_MAX_PER_USER in the list
        services.webhook_create(owner=alice, url=f"https://h{n}.example.com/")
    conversation = make_conversation(alice, bob)
    for n in range(count - 1):
        send(conversation, bob, f"m{n}")
    deliver(webhook)
    client = client_for(alice)
    # The page (authentication is forced); no count: a first page that holds the whole list is it.
    with django_assert_num_queries(1):
        assert client.get("/api/webhooks/").status_code == 200
    with django_assert_num_queries(2):  # the webhook, the page
        page = client.get(f"/api/webhooks/{webhook.pk}/deliveries/").json()
    assert page["count"] == count
    if count > 1:
        with django_assert_num_queries(3):  # a page that does not hold it all: its count too
            page = client.get(f"/api/webhooks/{webhook.pk}/deliveries/", {"page_size": count - 1}).json()
        assert page["count"] == count


def test_with_webhooks_a_commit_costs_one_query_whatever_its_recipients(alice, bob, carol, django_assert_num_queries):
    services.webhook_create(owner=alice, url="https://hooks.example.com/a")
    services.webhook_create(owner=bob, url="https://hooks.example.com/b")
    services.any_active_webhooks()
    with django_assert_num_queries(1):  # the recipients' active webhooks (their tasks go after commit)
        services.webhooks_notify(recipients={alice.pk, bob.pk, carol.pk})
