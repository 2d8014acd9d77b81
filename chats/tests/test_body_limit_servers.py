"""
The body limit (MAX_REQUEST_BODY_BYTES, 256 KiB; an attachment upload's: ATTACHMENTS_MAX_BYTES
plus the multipart framing) on the bytes actually sent, on the real
servers: `make run`'s daphne runserver and production's gunicorn + uvicorn workers, started
as subprocesses on free ports. A chunked body announces no size; before the fix both servers
read (and spooled) all of it, then answered. Now each answers 413 while the client is still
sending, and reads no further.
"""
import json
import select
import socket
import time
import urllib.request

import pytest
from django.conf import settings

from chats.tests.integration.servers import Server, app_env, free_port, migrate, start_gunicorn, wait_until_answering
from chats.tests.test_first_run import dev_env, manage, start_dev_server, stop
from messaging_app.server import WS_MAX_MESSAGE_BYTES

LIMIT = 256 * 1024
BODY = 64 * 1024 * 1024  # what the client would send: 256 times the limit
CHUNK = 64 * 1024
# Loopback socket buffers (the client's send buffer, the server's receive buffer) hold a few
# MiB in flight: "answered early" means before a quarter of the body was sent.
ANSWERED_BEFORE = BODY // 4
KINDS: dict[int, str] = {}  # port -> which server


def server_kind(port: int) -> str:
    return KINDS[port]


@pytest.fixture(scope="module", params=["runserver", "gunicorn"])
def server(request, tmp_path_factory):
    """`make run`'s command (DJANGO_DEBUG=1) or `make serve`'s (production settings)."""
    folder = tmp_path_factory.mktemp(request.param)
    database = folder / "db.sqlite3"
    if request.param == "runserver":
        assert manage("migrate", "--no-input", "-v", "0", env=dev_env(database)).returncode == 0
        port = free_port()
        process = start_dev_server(database, port)
        KINDS[port] = "runserver"
        yield port
        stop(process)
        return
    served = Server("gunicorn", free_port(), folder / "gunicorn.log")
    env = app_env(database_url=f"sqlite:///{database}", secret_key="body-limit-test-secret-" + "x" * 40,
                  DJANGO_MEDIA_ROOT=str(folder / "media"))
    migrate(env)
    start_gunicorn(served, env, workers=1)
    try:
        wait_until_answering(served, timeout=60)
        KINDS[served.port] = "gunicorn"
        yield served.port
    finally:
        served.stop()


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Status, headers and body of one HTTP/1.1 response, read until the server closes."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:  # the unread rest of our body: the answer came before
            break
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "connection closed without a response"
    lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            chunks, body = chunks + rest[: int(size, 16)], rest[int(size, 16) + 2:]
        body = chunks
    return int(lines[0].split()[1]), headers, body


def send_body_until_answered(port: int, head: bytes, pieces) -> tuple[int, dict, bytes, int]:
    """Sends the request's head, then its body pieces until the server answers; returns the answer and bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    try:
        sock.sendall(head)
        sock.setblocking(False)
        sent = 0
        pending = b""
        deadline = time.monotonic() + 120
        pieces = iter(pieces)
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                return (*read_response(sock), sent)
            if not writable:
                continue
            if not pending:
                pending = next(pieces, b"")
                if not pending:  # all sent: wait for the answer
                    readable, _, _ = select.select([sock], [], [], 30)
                    assert readable, "no answer 30 s after the whole body was sent"
                    return (*read_response(sock), sent)
            try:
                written = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                return (*read_response(sock), sent)
            pending = pending[written:]
            sent += written
        raise AssertionError("no answer within 120 s")
    finally:
        sock.close()


def chunked(total: int):
    for _ in range(total // CHUNK):
        yield b"%x\r\n" % CHUNK + b"[" * CHUNK + b"\r\n"
    yield b"0\r\n\r\n"


def assert_413(status: int, headers: dict, body: bytes) -> None:
    assert status == 413, (status, body[:300])
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "type": "client_error",
        "errors": [{
            "code": "request_too_large", "detail": f"The request body is larger than {LIMIT} bytes.", "attr": None,
        }],
    }


def still_serving(port: int) -> bool:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"http://127.0.0.1:{port}/healthz", timeout=10
    ) as response:
        return response.status == 200


def test_a_chunked_body_past_the_limit_is_413_before_the_client_has_sent_it(server):
    head = (
        b"POST /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, headers, body, sent = send_body_until_answered(server, head, chunked(BODY))
    assert_413(status, headers, body)
    assert sent < ANSWERED_BEFORE, f"answered only after {sent} of {BODY} bytes"
    assert still_serving(server)
    # A chunked body within the limit reaches the API whole (HTTP is served through Django's WSGI
    # handler with the length of the body read: wsgi_pool.py), here a registration in two chunks.
    head = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    email = f"chunked-{server_kind(server)}@example.com"
    payload = json.dumps({"email": email, "password": "Integration-Pass-7319!", "first_name": "Chunked",
                          "last_name": "Body"}).encode()
    half = len(payload) // 2
    pieces = [b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:half], payload[half:])] + [b"0\r\n\r\n"]
    status, _, body, _ = send_body_until_answered(server, head, pieces)
    assert status == 201 and json.loads(body)["email"] == email, body


def test_a_declared_oversize_body_is_413_before_any_of_it_is_sent(server):
    head = (
        b"POST /api/users/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % BODY
    )
    status, headers, body, sent = send_body_until_answered(server, head, [b"[" * CHUNK] * (BODY // CHUNK))
    assert_413(status, headers, body)
    assert sent < ANSWERED_BEFORE, f"answered only after {sent} of {BODY} bytes"


def test_a_websocket_message_past_64_kib_closes_the_socket_with_1009(server):
    """Both servers bound client messages (uvicorn took 16 MiB, daphne 1 MiB); ours are a few hundred bytes."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    frame = json.dumps({"type": "auth", "token": "x" * (WS_MAX_MESSAGE_BYTES + 1)})
    with connect(f"ws://127.0.0.1:{server}/ws/", open_timeout=10, max_size=None) as socket_:
        socket_.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            socket_.recv(timeout=10)
    # Never the application's 4401: the message does not reach it. uvicorn closes with 1009;
    # daphne's WebSocket library drops the connection without a close frame (1006).
    code = closed.value.rcvd.code if closed.value.rcvd is not None else 1006
    assert code == (1009 if server_kind(server) == "gunicorn" else 1006), closed.value


def test_the_worker_and_the_settings_agree_on_the_websocket_bound():
    assert WS_MAX_MESSAGE_BYTES == settings.WS_MAX_MESSAGE_BYTES == settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE


# --- Attachment uploads: their own, larger limit, on the upload path only ------------------------
UPLOAD_LIMIT = settings.ATTACHMENTS_MAX_BYTES + 64 * 1024  # attachments/uploads.py: + the multipart framing
BOUNDARY = b"attachment-test-boundary"


def assert_upload_413(status: int, headers: dict, body: bytes) -> None:
    assert status == 413, (status, body[:300])
    assert json.loads(body) == {
        "type": "client_error",
        "errors": [{
            "code": "request_too_large", "detail": f"The request body is larger than {UPLOAD_LIMIT} bytes.",
            "attr": None,
        }],
    }


def multipart(content: bytes, name: str = "big.bin") -> bytes:
    return (
        b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" % (BOUNDARY, name.encode())
        + content + b"\r\n--%s--\r\n" % BOUNDARY
    )


def test_an_upload_past_the_general_limit_is_stored(server):
    """1 MiB: four times MAX_REQUEST_BODY_BYTES, well within ATTACHMENTS_MAX_BYTES."""
    import base64

    email = f"uploader-{server_kind(server)}@example.com"
    password = "Integration-Pass-7319!"
    registration = json.dumps({"email": email, "password": password, "first_name": "Up", "last_name": "Loader"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        f"http://127.0.0.1:{server}/api/users/", data=registration.encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    assert opener.open(request, timeout=30).status == 201
    content = bytes(range(256)) * 4096  # 1 MiB
    request = urllib.request.Request(
        f"http://127.0.0.1:{server}/api/attachments/", data=multipart(content), method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY.decode()}",
            "Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode(),
        },
    )
    with opener.open(request, timeout=60) as response:
        assert response.status == 201
        uploaded = json.loads(response.read())
    assert (uploaded["size"], uploaded["content_type"]) == (len(content), "application/octet-stream")


def test_a_declared_oversize_upload_is_413_before_any_of_it_is_sent(server):
    head = (
        b"POST /api/attachments/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, BODY)
    )
    status, headers, body, sent = send_body_until_answered(server, head, [b"[" * CHUNK] * (BODY // CHUNK))
    assert_upload_413(status, headers, body)
    assert sent < ANSWERED_BEFORE, f"answered only after {sent} of {BODY} bytes"
    assert still_serving(server)


def test_a_chunked_upload_past_its_limit_is_413_while_it_is_sent(server):
    head = (
        b"POST /api/attachments/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=%s\r\nTransfer-Encoding: chunked\r\n\r\n" % BOUNDARY
    )
    total = 2 * BODY  # 128 MiB offered; the limit is about 25 MiB
    status, headers, body, sent = send_body_until_answered(server, head, chunked(total))
    assert_upload_413(status, headers, body)
    assert sent < UPLOAD_LIMIT + 8 * 1024 * 1024, f"answered only after {sent} of {total} bytes"
    assert still_serving(server)
