"""
Email digests over real SMTP: an aiosmtpd server started here receives what Django's SMTP backend
sends. Who is due one (offline long enough, unread in conversations not muted), never the same
message twice, and the unsubscribe link (signed token, no login).
"""
import email
import re
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.core import signing
from django.utils import timezone

from chats import services, services_membership
from chats.tests.factories import make_conversation, send
from chats.models import User
from notifications import digests, preferences
from notifications.models import EmailDigest, NotificationPreferences
from chats.tests.integration.servers import free_port

pytestmark = pytest.mark.django_db


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.PUBLIC_BASE_URL = "https://chat.example.com"
    try:
        yield inbox
    finally:
        controller.stop()


def away(user, minutes=120):
    User.objects.filter(pk=user.pk).update(last_seen_at=timezone.now() - timedelta(minutes=minutes), last_login=None)


def body_of(message) -> str:
    return message.get_payload(decode=True).decode()


def test_one_digest_of_unread_messages_then_none_for_the_same_messages(smtp, alice, bob, carol):
    away(bob)
    away(alice, minutes=1)  # Alice has Bob's message unread, but was here a minute ago
    first = make_conversation(alice, bob)
    send(first, alice, "lunch at noon?")
    send(first, alice, "or one?")
    quiet = make_conversation(carol, bob)
    send(quiet, carol, "muted chatter")
    services_membership.membership_update(conversation=quiet, user=bob, muted=True)
    send(first, bob, "my own words")

    assert digests.email_digests_send() == 1
    [(to, message)] = smtp.messages
    assert to == [bob.email]
    assert message["Subject"] == "2 unread messages"
    text = body_of(message)
    assert "lunch at noon?" in text and "or one?" in text
    assert "muted chatter" not in text and "my own words" not in text
    assert message["List-Unsubscribe"].strip().startswith("<https://chat.example.com/notifications/unsubscribe/")
    digest = EmailDigest.objects.get(user=bob)
    assert digest.message_count == 2

    # Again: nothing new, nothing sent; a new message makes a digest of it alone.
    assert digests.email_digests_send() == 0
    send(first, alice, "hello?")
    assert digests.email_digests_send() == 1
    text = body_of(smtp.messages[1][1])
    assert "hello?" in text and "lunch" not in text
    assert len(smtp.messages) == 2


def test_not_before_the_delay_nor_when_off_or_read(smtp, alice, bob):
    conversation = make_conversation(alice, bob)
    send(conversation, alice, "hi")
    away(bob, minutes=30)  # the default delay is 60 minutes
    assert digests.email_digests_send() == 0
    preferences.preferences_update(user=bob, email_digest_delay_minutes=15)
    preferences.preferences_update(user=bob, email_digest_enabled=False)
    assert digests.email_digests_send() == 0
    preferences.preferences_update(user=bob, email_digest_enabled=True)
    services.conversation_mark_read(conversation=conversation, user=bob)
    assert digests.email_digests_send() == 0
    send(conversation, alice, "and now?")
    assert digests.email_digests_send() == 1
    text = body_of(smtp.messages[0][1])
    assert f"- {alice.first_name} {alice.last_name}: and now?" in text and "hi" not in text.split("\n")[3:-2]
    assert len(smtp.messages) == 1


def test_the_unsubscribe_link_needs_no_login_and_a_get_changes_nothing(smtp, alice, bob, client):
    away(bob)
    send(make_conversation(alice, bob), alice, "hi")
    digests.email_digests_send()
    link = re.search(r"https://chat\.example\.com(\S+)", body_of(smtp.messages[0][1])).group(1)
    page = client.get(link)
    assert page.status_code == 200 and b"<form method=\"post\"" in page.content
    assert NotificationPreferences.objects.get(user=bob).email_digest_enabled is True
    assert client.post(link).status_code == 200
    assert NotificationPreferences.objects.get(user=bob).email_digest_enabled is False
    forged = signing.dumps(str(alice.pk), salt="another-salt")
    assert client.post(f"/notifications/unsubscribe/{forged}/").status_code == 404
    assert client.post(link[:-3] + "xx/").status_code == 404
    assert not NotificationPreferences.objects.filter(user=alice, email_digest_enabled=False).exists()


def test_an_smtp_failure_records_nothing_and_the_next_run_sends(settings, smtp, alice, bob):
    away(bob)
    send(make_conversation(alice, bob), alice, "hi")
    port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()  # nobody listening
    assert digests.email_digests_send() == 0
    assert not EmailDigest.objects.exists()
    settings.EMAIL_PORT = port
    assert digests.email_digests_send() == 1 and len(smtp.messages) == 1
