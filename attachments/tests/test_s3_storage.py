"""
ATTACHMENTS_STORAGE=s3 for real: django-storages and boto3 talk HTTP to an S3 API (moto_server,
started here on a free port), nothing mocked inside the process. Upload, send, download (streamed
from the object's body), thumbnails, a private bucket, and deletion with the message.
"""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from django.test import override_settings

from attachments.models import Attachment
from attachments.storage import attachment_storage
from attachments.tests.helpers import image_bytes, png_upload, upload
from chats.tests.factories import make_conversation

pytestmark = pytest.mark.django_db

BUCKET = "messaging-attachments-test"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto_server process on a free port of 127.0.0.1, for this module."""
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3(s3_endpoint, settings):
    """The attachments storage is an S3 bucket (created empty for each test), as ATTACHMENTS_STORAGE=s3 sets it."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    storages = dict(settings.STORAGES)
    storages["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": BUCKET,
            "endpoint_url": s3_endpoint,
            "region_name": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "location": "attachments",
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    with override_settings(STORAGES=storages):
        assert type(attachment_storage()).__name__ == "S3Storage"
        yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_upload_send_download_and_delete_through_s3(s3, alice, bob, client_for, django_capture_on_commit_callbacks):
    conversation = make_conversation(alice, bob)
    client = client_for(alice)

    uploaded = client.post("/api/attachments/", {"file": png_upload("cat.png", width=640, height=480)},
                           format="multipart")
    assert uploaded.status_code == 201, uploaded.content
    attachment = Attachment.objects.get(pk=uploaded.json()["attachment_id"])
    assert keys(s3) == {f"attachments/{attachment.storage_key}", f"attachments/{attachment.thumbnail_key}"}
    stored = s3.get_object(Bucket=BUCKET, Key=f"attachments/{attachment.storage_key}")["Body"].read()
    assert stored == image_bytes(640, 480)
    # Private: no grant to everyone or to any authenticated AWS user.
    grants = s3.get_object_acl(Bucket=BUCKET, Key=f"attachments/{attachment.storage_key}")["Grants"]
    assert not [g for g in grants if "URI" in g.get("Grantee", {})], grants

    sent = client.post(f"/api/conversations/{conversation.pk}/messages/",
                       {"attachments": [str(attachment.pk)]}, format="json")
    assert sent.status_code == 201, sent.content

    download = client_for(bob).get(f"/api/attachments/{attachment.pk}/download/")
    assert download.status_code == 200
    assert download.streaming
    assert b"".join(download.streaming_content) == image_bytes(640, 480)
    assert (download["Content-Type"], download["Content-Length"]) == ("image/png", str(attachment.size))
    assert download["X-Content-Type-Options"] == "nosniff" and "sandbox" in download["Content-Security-Policy"]
    thumbnail = client_for(bob).get(f"/api/attachments/{attachment.pk}/thumbnail/")
    assert b"".join(thumbnail.streaming_content).startswith(b"\x89PNG")

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/messages/{sent.json()['message_id']}/").status_code == 204
    assert keys(s3) == set()


def test_an_outsider_gets_404_and_a_non_image_downloads_as_an_attachment(s3, alice, bob, mallory, client_for):
    conversation = make_conversation(alice, bob)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    body = client_for(alice).post(
        "/api/attachments/", {"file": upload(svg, "x.svg", "image/svg+xml")}, format="multipart"
    ).json()
    client_for(alice).post(f"/api/conversations/{conversation.pk}/messages/",
                           {"attachments": [body["attachment_id"]]}, format="json")

    assert client_for(mallory).get(body["download_url"]).status_code == 404
    download = client_for(bob).get(body["download_url"])
    assert download["Content-Disposition"] == 'attachment; filename="x.svg"'
    assert b"".join(download.streaming_content) == svg


def test_prune_deletes_the_objects_of_unsent_uploads(s3, alice, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    from attachments import services

    services.attachment_create(uploader=alice, upload=png_upload())
    assert len(keys(s3)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        call_command("prune_attachments", "--hours", "0")
    assert keys(s3) == set()


def _settings_in_a_fresh_process(**env):
    import json
    import os

    from django.conf import settings

    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['attachments']))"
    )
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ATTACHMENTS_"))},
        "DJANGO_SETTINGS_MODULE": "messaging_app.settings",
        "DJANGO_DEBUG": "1",
        **env,
    }
    done = subprocess.run([sys.executable, "-c", code], env=environment, cwd=settings.BASE_DIR,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else done.stderr)


def test_the_environment_chooses_the_storage():
    status, local = _settings_in_a_fresh_process(ATTACHMENTS_STORAGE="")
    assert status == 0 and local["BACKEND"] == "django.core.files.storage.FileSystemStorage"

    status, s3 = _settings_in_a_fresh_process(
        ATTACHMENTS_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="bucket", AWS_S3_ENDPOINT_URL="http://minio:9000"
    )
    assert status == 0 and s3["BACKEND"] == "storages.backends.s3.S3Storage"
    assert (s3["OPTIONS"]["bucket_name"], s3["OPTIONS"]["endpoint_url"]) == ("bucket", "http://minio:9000")
    assert s3["OPTIONS"]["default_acl"] is None

    status, error = _settings_in_a_fresh_process(ATTACHMENTS_STORAGE="s3")
    assert status != 0 and "needs AWS_STORAGE_BUCKET_NAME" in error
