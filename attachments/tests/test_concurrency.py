"""
Races on attachments, with real threads on their own connections (chats/tests/test_concurrency.py's
harness): one upload sent from two conversations at once lands on one message; uploads of one
user racing for the last of their quota store one.
"""
import pytest
from django.test import override_settings

from attachments import services
from attachments.models import Attachment
from attachments.tests.helpers import upload
from chats import services as chat_services
from chats.models import Message
from chats.tests.factories import UserFactory, make_conversation
from chats.tests.test_concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(work):
    def run():
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - the loser's refusal is the point
            return exc

    return run


def test_one_upload_sent_twice_at_once_is_attached_once():
    alice, bob, carol = UserFactory.create_batch(3)
    first, second = make_conversation(alice, bob), make_conversation(alice, carol)
    attachment = services.attachment_create(uploader=alice, upload=upload())

    results = run_concurrently([
        outcome(lambda c=conversation: chat_services.message_send(
            conversation=c, sender=alice, message_body="", attachment_ids=[attachment.pk]
        ))
        for conversation in (first, second)
    ])

    sent = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if not isinstance(r, tuple)]
    assert len(sent) == 1 and len(refused) == 1, results
    assert "already_attached" in str(refused[0].error_dict["attachments"][0].code)
    assert Message.objects.filter(has_attachments=True).count() == 1
    assert Attachment.objects.get().message_id == sent[0][0].pk


@override_settings(ATTACHMENTS_USER_QUOTA_BYTES=1500)
def test_uploads_racing_for_the_last_of_the_quota_store_one():
    alice = UserFactory()

    results = run_concurrently([
        outcome(lambda: services.attachment_create(uploader=alice, upload=upload(b"x" * 1000))) for _ in range(2)
    ])

    assert sum(isinstance(r, Attachment) for r in results) == 1, results
    assert Attachment.objects.count() == 1
