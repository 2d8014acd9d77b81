"""
Attachments through the API: upload, send with a message, download, who may see them, the
limits (size, types, quota, decompression bombs, corrupt images), deletion and pruning.
"""
import struct
import zlib
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from attachments import services
from attachments.models import Attachment
from attachments.serializers import AttachmentSerializer, attachment_payload
from attachments.storage import attachment_storage
from attachments.tests.helpers import image_bytes, png_upload, upload
from chats import services as chat_services
from chats.models import Message
from chats.tests.factories import make_conversation, send
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db

UPLOAD = "/api/attachments/"


def post_file(client, content: bytes, name="file.bin", content_type="application/octet-stream"):
    return client.post(UPLOAD, {"file": upload(content, name, content_type)}, format="multipart")


def stored(key: str) -> bool:
    return bool(key) and attachment_storage().exists(key)


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A valid PNG header announcing width x height pixels, with next to no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


# --- Upload -----------------------------------------------------------------------------------
def test_upload_of_an_image_answers_its_details_and_a_thumbnail(alice, client_for):
    response = client_for(alice).post(UPLOAD, {"file": png_upload("cat.png", width=800, height=600)},
                                      format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    attachment = Attachment.objects.get(pk=body["attachment_id"])
    assert body == {
        "attachment_id": str(attachment.pk),
        "file_name": "cat.png",
        "content_type": "image/png",
        "size": len(image_bytes(800, 600)),
        "width": 800,
        "height": 600,
        "download_url": f"/api/attachments/{attachment.pk}/download/",
        "thumbnail_url": f"/api/attachments/{attachment.pk}/thumbnail/",
    }
    assert attachment.uploader == alice and attachment.message is None
    assert stored(attachment.storage_key) and stored(attachment.thumbnail_key)
    thumbnail = client_for(alice).get(body["thumbnail_url"])
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(b"".join(thumbnail.streaming_content)))
    assert (image.format, image.size) == ("PNG", (320, 240))


def test_a_file_that_is_no_image_has_no_size_or_thumbnail(alice, client_for):
    response = post_file(client_for(alice), b"%PDF-1.4 not much", "report.pdf", "application/pdf")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["content_type"], body["width"], body["height"], body["thumbnail_url"]) == (
        "application/pdf", None, None, None
    )
    assert client_for(alice).get(f"/api/attachments/{body['attachment_id']}/thumbnail/").status_code == 404


def test_an_image_is_recognised_by_its_content_not_its_name_or_declared_type(alice, client_for):
    response = post_file(client_for(alice), image_bytes(format="JPEG"), "page.html", "text/html")

    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == "image/jpeg"


def test_the_file_name_loses_any_path_and_control_characters(alice, client_for):
    response = post_file(client_for(alice), b"x", "../../etc/pass\x00wd\n.txt", "text/plain")

    assert response.status_code == 201, response.content
    assert response.json()["file_name"] == "passwd.txt"


@pytest.mark.parametrize(
    "content,name,declared,code",
    [
        (b"", "empty.txt", "text/plain", "empty"),
        (b"<html><script>alert(1)</script>", "x.html", "text/html", "unsupported_type"),
        (b"MZ\x90\x00", "setup.exe", "application/x-msdownload", "unsupported_type"),
        (b"\x89PNG\r\n\x1a\nthis is not a png", "broken.png", "image/png", "invalid_image"),
        (image_bytes(400, 400)[:200], "truncated.png", "image/png", "invalid_image"),
        (png_bomb(), "bomb.png", "image/png", "image_too_large"),
        (png_bomb(), "bomb.bin", "application/octet-stream", "image_too_large"),
    ],
    ids=["empty", "html", "executable", "corrupt", "truncated", "bomb", "bomb-undeclared"],
)
def test_refused_uploads_are_a_400_and_store_nothing(alice, client_for, content, name, declared, code):
    response = post_file(client_for(alice), content, name, declared)

    assert_error(response, 400, code=code, attr="file")
    assert not Attachment.objects.exists()


@override_settings(ATTACHMENTS_MAX_IMAGE_PIXELS=10_000)
def test_an_image_past_the_pixel_ceiling_is_refused_before_it_is_decoded(alice, client_for):
    response = post_file(client_for(alice), image_bytes(200, 200), "big.png", "image/png")

    assert_error(response, 400, code="image_too_large", attr="file")


@override_settings(ATTACHMENTS_MAX_BYTES=1000)
def test_a_declared_body_past_the_limit_is_a_413_before_anything_is_read(alice, client_for):
    response = post_file(client_for(alice), b"x" * 200_000, "big.txt", "text/plain")

    body = assert_error(response, 413, code="request_too_large")
    assert body["type"] == "client_error"
    assert not Attachment.objects.exists()


@override_settings(ATTACHMENTS_MAX_BYTES=1000)
def test_a_file_past_the_limit_is_a_413_while_it_is_read(alice, client_for):
    """Within the body allowance (the multipart framing) but past the file limit: cut off by the upload handler."""
    response = post_file(client_for(alice), b"x" * 5000, "big.txt", "text/plain")

    body = assert_error(response, 413, code="file_too_large")
    assert body["errors"][0]["detail"] == "The file is larger than 1000 bytes (ATTACHMENTS_MAX_BYTES)."
    assert not Attachment.objects.exists()


@override_settings(ATTACHMENTS_MAX_BYTES=1000)
def test_a_file_at_the_limit_is_accepted(alice, client_for):
    assert post_file(client_for(alice), b"x" * 1000, "exact.txt", "text/plain").status_code == 201


@override_settings(ATTACHMENTS_USER_QUOTA_BYTES=2500)
def test_the_quota_counts_every_stored_upload_of_the_user(alice, bob, client_for):
    client = client_for(alice)
    assert post_file(client, b"a" * 1000, "1.txt", "text/plain").status_code == 201
    assert post_file(client, b"b" * 1000, "2.txt", "text/plain").status_code == 201

    assert_error(post_file(client, b"c" * 1000, "3.txt", "text/plain"), 400, code="quota_exceeded", attr="file")
    assert post_file(client_for(bob), b"d" * 1000, "4.txt", "text/plain").status_code == 201  # Bob's own quota


@override_settings(ATTACHMENTS_ALLOWED_TYPES=["text/*"])
def test_allowed_types_take_wildcards(alice, client_for):
    assert post_file(client_for(alice), b"a,b", "t.csv", "text/csv").status_code == 201
    assert_error(post_file(client_for(alice), b"%PDF", "r.pdf", "application/pdf"), 400, code="unsupported_type")


def test_upload_needs_a_file_field(alice, client_for):
    assert_error(client_for(alice).post(UPLOAD, {}, format="multipart"), 400, attr="file")
    assert_error(client_for(alice).post(UPLOAD, {"file": "x"}, format="json"), 415)


# --- Sending -----------------------------------------------------------------------------------
def test_a_message_carries_its_attachments_everywhere_messages_are_shown(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    client = client_for(alice)
    first = client.post(UPLOAD, {"file": png_upload("a.png")}, format="multipart").json()
    second = post_file(client, b"notes", "b.txt", "text/plain").json()

    response = client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        {"attachments": [first["attachment_id"], second["attachment_id"]]},
        format="json",
    )

    assert response.status_code == 201, response.content
    sent = response.json()
    assert sent["message_body"] == "" and sent["attachments"] == [first, second]
    message_id = sent["message_id"]
    bob_client = client_for(bob)
    timeline = bob_client.get(f"/api/conversations/{conversation.pk}/messages/").json()["results"]
    assert timeline[0] == sent
    assert bob_client.get(f"/api/messages/{message_id}/").json() == sent
    assert bob_client.get("/api/messages/").json()["results"][0] == sent
    assert bob_client.get("/api/messages/", {"search": ""}).json()["results"][0] == sent
    assert bob_client.get("/api/conversations/").json()["results"][0]["last_message"] == sent
    assert bob_client.get(f"/api/conversations/{conversation.pk}/").json()["last_message"] == sent
    events = bob_client.get("/api/events/", {"since": 0}).json()["results"]
    assert [e["message"] for e in events if e["type"] == "message.created"] == [sent]


def test_a_message_may_have_text_and_attachments(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    attachment = post_file(client_for(alice), b"x", "x.txt", "text/plain").json()

    response = client_for(alice).post(
        "/api/messages/",
        {
            "conversation": str(conversation.pk),
            "message_body": "see attached",
            "attachments": [attachment["attachment_id"]],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert (response.json()["message_body"], response.json()["attachments"]) == ("see attached", [attachment])


def test_a_message_without_text_needs_attachments(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    url = f"/api/conversations/{conversation.pk}/messages/"
    assert_error(client_for(alice).post(url, {}, format="json"), 400, code="required", attr="message_body")
    assert_error(client_for(alice).post(url, {"message_body": "  "}, format="json"), 400, code="blank",
                 attr="message_body")
    assert_error(client_for(alice).post(url, {"attachments": []}, format="json"), 400, attr="message_body")


def test_someone_elses_unknown_or_already_sent_uploads_are_refused(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    url = f"/api/conversations/{conversation.pk}/messages/"
    bobs = post_file(client_for(bob), b"bob's", "b.txt", "text/plain").json()["attachment_id"]
    mine = post_file(client_for(alice), b"mine", "a.txt", "text/plain").json()["attachment_id"]
    client = client_for(alice)

    assert_error(client.post(url, {"attachments": [bobs]}, format="json"), 400, code="does_not_exist",
                 attr="attachments")
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(client.post(url, {"attachments": [unknown]}, format="json"), 400, code="does_not_exist")
    assert client.post(url, {"attachments": [mine]}, format="json").status_code == 201
    assert_error(client.post(url, {"attachments": [mine]}, format="json"), 400, code="already_attached",
                 attr="attachments")
    # The refused sends left nothing behind: one message, Bob's upload still unsent.
    assert conversation.messages.count() == 1
    assert Attachment.objects.get(pk=bobs).message is None


def test_too_many_attachments_are_refused(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    ids = [str(services.attachment_create(uploader=alice, upload=upload()).pk) for _ in range(11)]
    response = client_for(alice).post(f"/api/conversations/{conversation.pk}/messages/", {"attachments": ids},
                                      format="json")
    assert_error(response, 400, attr="attachments")


# --- Downloads ------------------------------------------------------------------------------
def sent_attachment(conversation, sender, the_upload) -> Attachment:
    attachment = services.attachment_create(uploader=sender, upload=the_upload)
    send(conversation, sender, "", attachment_ids=[attachment.pk])
    attachment.refresh_from_db()
    return attachment


def test_participants_download_the_file_streamed_with_safe_headers(alice, bob, client_for):
    conversation = make_conversation(alice, bob)
    attachment = sent_attachment(conversation, alice, png_upload("holiday photo.png"))

    response = client_for(bob).get(f"/api/attachments/{attachment.pk}/download/")

    assert response.status_code == 200
    assert response.streaming
    assert b"".join(response.streaming_content) == image_bytes()
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(attachment.size)
    assert response["Content-Disposition"] == 'inline; filename="holiday photo.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert "default-src 'none'" in response["Content-Security-Policy"]


@override_settings(ATTACHMENTS_ALLOWED_TYPES=["text/html", "image/svg+xml", "text/plain"])
@pytest.mark.parametrize(
    "content,name,declared",
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>',
         "logo.svg", "image/svg+xml"),
        (b"<script>alert(document.cookie)</script>", "page.html", "text/html"),
        (b"<script>alert(1)</script>", "notes.txt", "text/plain"),
    ],
    ids=["svg", "html", "text"],
)
def test_anything_but_a_raster_image_is_only_ever_a_sandboxed_download(
    alice, bob, client_for, content, name, declared
):
    conversation = make_conversation(alice, bob)
    attachment = sent_attachment(conversation, alice, upload(content, name, declared))

    response = client_for(bob).get(f"/api/attachments/{attachment.pk}/download/")

    assert response.status_code == 200
    assert response["Content-Type"] == declared
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == content


def test_outsiders_get_the_404_of_an_unknown_id(alice, bob, mallory, client_for):
    conversation = make_conversation(alice, bob)
    attachment = sent_attachment(conversation, alice, png_upload())
    client = client_for(mallory)

    for suffix in ("", "download/", "thumbnail/"):
        refused = client.get(f"/api/attachments/{attachment.pk}/{suffix}")
        unknown = client.get(f"/api/attachments/00000000-0000-4000-8000-000000000000/{suffix}")
        assert_error(refused, 404)
        assert (refused.status_code, refused.json()) == (unknown.status_code, unknown.json())
    assert_error(client.get("/api/attachments/not-a-uuid/download/"), 404)


def test_someone_who_leaves_loses_access_and_someone_who_joins_gains_it(alice, bob, carol, client_for):
    conversation = make_conversation(alice, bob, carol)
    attachment = sent_attachment(conversation, alice, upload())
    url = f"/api/attachments/{attachment.pk}/download/"
    chat_services.conversation_remove_participant(conversation=conversation, actor=carol, user_id=carol.pk)

    assert client_for(carol).get(url).status_code == 404
    assert client_for(bob).get(url).status_code == 200


def test_an_unsent_upload_is_its_uploaders_alone(alice, bob, client_for):
    make_conversation(alice, bob)
    attachment = services.attachment_create(uploader=alice, upload=upload())
    url = f"/api/attachments/{attachment.pk}/download/"

    assert client_for(alice).get(url).status_code == 200
    assert client_for(bob).get(url).status_code == 404


# --- Deletion and pruning -----------------------------------------------------------------------
def test_deleting_a_message_deletes_its_attachments_and_files(alice, bob, client_for,
                                                              django_capture_on_commit_callbacks):
    conversation = make_conversation(alice, bob)
    attachment = sent_attachment(conversation, alice, png_upload())
    keys = (attachment.storage_key, attachment.thumbnail_key)
    assert all(map(stored, keys))

    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(alice).delete(f"/api/messages/{attachment.message_id}/").status_code == 204

    assert not Attachment.objects.exists()
    assert not any(map(stored, keys))
    message = Message.objects.get(pk=attachment.message_id)
    assert (message.is_deleted, message.has_attachments) == (True, False)
    tombstone = client_for(bob).get(f"/api/messages/{message.pk}/").json()
    assert tombstone["attachments"] == [] and tombstone["is_deleted"]
    assert client_for(bob).get(f"/api/attachments/{attachment.pk}/download/").status_code == 404


def test_deleting_a_conversation_deletes_its_files(alice, bob, django_capture_on_commit_callbacks):
    conversation = make_conversation(alice, bob)
    attachment = sent_attachment(conversation, alice, upload())

    with django_capture_on_commit_callbacks(execute=True):
        chat_services.conversation_delete(conversation=conversation)

    assert not Attachment.objects.exists() and not stored(attachment.storage_key)


def test_prune_attachments_deletes_only_old_unsent_uploads(alice, bob, django_capture_on_commit_callbacks):
    conversation = make_conversation(alice, bob)
    old_draft = services.attachment_create(uploader=alice, upload=upload())
    new_draft = services.attachment_create(uploader=alice, upload=upload())
    old_sent = sent_attachment(conversation, alice, upload())
    Attachment.objects.filter(pk__in=[old_draft.pk, old_sent.pk]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    with django_capture_on_commit_callbacks(execute=True):
        call_command("prune_attachments")

    assert set(Attachment.objects.values_list("pk", flat=True)) == {new_draft.pk, old_sent.pk}
    assert not stored(old_draft.storage_key) and stored(new_draft.storage_key)


def test_prune_attachments_takes_hours(alice, capsys):
    services.attachment_create(uploader=alice, upload=upload())
    call_command("prune_attachments", "--hours", "0")
    assert "Deleted 1 unsent upload" in capsys.readouterr().out
    assert not Attachment.objects.exists()


# --- Shapes ---------------------------------------------------------------------------------
def test_the_fast_payload_is_what_the_serializer_gives(alice):
    for the_upload in (png_upload(), upload()):
        attachment = services.attachment_create(uploader=alice, upload=the_upload)
        assert attachment_payload(attachment) == AttachmentSerializer(attachment).data


def test_deleting_a_user_deletes_their_unsent_uploads_files(alice, django_capture_on_commit_callbacks):
    attachment = services.attachment_create(uploader=alice, upload=upload())

    with django_capture_on_commit_callbacks(execute=True):
        chat_services.user_delete(user=alice)

    assert not Attachment.objects.exists() and not stored(attachment.storage_key)


def test_the_admin_lists_attachments_read_only(alice, client):
    from chats.models import User

    attachment = services.attachment_create(uploader=alice, upload=png_upload("seen-by-staff.png"))
    User.objects.create_superuser("staff@example.com", "a-Staff-passphrase-31", first_name="S", last_name="T")
    client.login(email="staff@example.com", password="a-Staff-passphrase-31")

    listing = client.get("/admin/attachments/attachment/")
    detail = client.get(f"/admin/attachments/attachment/{attachment.pk}/change/")

    assert listing.status_code == 200 and b"seen-by-staff.png" in listing.content
    assert detail.status_code == 200 and b'name="file_name"' not in detail.content  # no form field: read-only
    assert client.post(f"/admin/attachments/attachment/{attachment.pk}/delete/").status_code == 403
    assert Attachment.objects.filter(pk=attachment.pk).exists()
