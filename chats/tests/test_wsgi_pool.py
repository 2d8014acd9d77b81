"""
messaging_app/wsgi_pool.py: HTTP under the ASGI server through a WSGI application on a fixed
pool of threads, with a deadline, probes that never wait for the pool, and channel-layer sends
from the pool threads made on the event loop. Driven as uvicorn drives it (ASGI messages).
"""
import asyncio
import json
import threading
import time

import pytest

from messaging_app.wsgi_pool import WSGIThreadPool, environ_from_scope


def scope(path="/api/x/", method="GET", headers=(), query=b""):
    return {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query,
            "headers": list(headers), "server": ("127.0.0.1", 8000), "client": ("10.0.0.7", 5555),
            "scheme": "http", "http_version": "1.1"}


async def request(app, the_scope, body=b"", chunks=None):
    parts = chunks if chunks is not None else [body]
    incoming = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await app(the_scope, receive, send)
    status = sent[0]["status"]
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return status, headers, b"".join(m.get("body", b"") for m in sent[1:]), sent


def echo_app(environ, start_response):
    body = json.dumps({
        "path": environ["PATH_INFO"], "length": environ["CONTENT_LENGTH"],
        "input": environ["wsgi.input"].read().decode(), "accept": environ.get("HTTP_ACCEPT"),
        "type": environ.get("CONTENT_TYPE"), "thread": threading.current_thread().name,
    }).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Set-Cookie", "a=1")])
    return [body]


def test_environ_has_the_body_length_joined_headers_and_the_path_as_wsgi_wants_it():
    headers = [(b"accept", b"a"), (b"accept", b"b"), (b"content-length", b"999"), (b"content-type", b"text/plain")]
    environ = environ_from_scope(scope("/api/caf\u00e9/", headers=headers, query=b"q=1"), b"hello")
    assert environ["PATH_INFO"].encode("latin-1").decode("utf-8") == "/api/caf\u00e9/"
    assert environ["CONTENT_LENGTH"] == "5" and environ["wsgi.input"].read() == b"hello"
    assert environ["HTTP_ACCEPT"] == "a,b" and environ["CONTENT_TYPE"] == "text/plain"
    assert environ["QUERY_STRING"] == "q=1" and environ["REMOTE_ADDR"] == "10.0.0.7"
    assert "HTTP_CONTENT_LENGTH" not in environ and "HTTP_CONTENT_TYPE" not in environ


def test_a_request_runs_in_a_pool_thread_with_its_whole_body_even_chunked():
    app = WSGIThreadPool(echo_app, threads=2)
    status, headers, body, _ = asyncio.run(request(app, scope(method="POST"), chunks=[b"ab", b"cd", b"e"]))
    answer = json.loads(body)
    assert status == 201 and headers["set-cookie"] == "a=1"
    assert answer["input"] == "abcde" and answer["length"] == "5"
    assert answer["thread"].startswith("http")


def test_no_answer_by_the_deadline_is_a_503_and_a_request_still_waiting_for_a_thread_never_runs():
    release, ran = threading.Event(), []

    def slow_app(environ, start_response):
        ran.append(environ["PATH_INFO"])
        release.wait(5)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    app = WSGIThreadPool(slow_app, threads=1, timeout=0.3)

    async def scenario():
        first = asyncio.create_task(request(app, scope("/first/")))
        await asyncio.sleep(0.05)
        second = await request(app, scope("/second/"))  # waits for the only thread: given up
        first = await first  # runs past the deadline: answered 503 too
        return first, second

    first, second = asyncio.run(scenario())
    release.set()
    for status, headers, body, _ in (first, second):
        assert status == 503 and headers["retry-after"] == "5"
        assert headers["x-content-type-options"] == "nosniff" and headers["x-request-id"]
        payload = json.loads(body)
        assert payload["type"] == "server_error" and payload["errors"][0]["code"] == "service_unavailable"
    app._pool.shutdown(wait=True)
    assert ran == ["/first/"]  # the second request was dropped before it ran


def test_probes_answer_while_every_thread_is_stuck():
    release = threading.Event()

    def app_of(environ, start_response):
        if environ["PATH_INFO"] == "/readyz" and release.is_set():
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"status": "ok"}']
        release.wait(5)  # a frozen database
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    app = WSGIThreadPool(app_of, threads=1, timeout=5, readyz_timeout=0.2)

    async def scenario():
        stuck = asyncio.create_task(request(app, scope("/api/stuck/")))
        await asyncio.sleep(0.05)
        health = await asyncio.wait_for(request(app, scope("/healthz")), 1)
        ready = await asyncio.wait_for(request(app, scope("/readyz")), 1)  # its check is stuck too
        again = await asyncio.wait_for(request(app, scope("/readyz")), 0.1)  # still stuck: 503 at once
        release.set()
        await stuck
        await asyncio.sleep(0.05)
        back = await request(app, scope("/readyz"))
        return health, ready, again, back

    health, ready, again, back = asyncio.run(scenario())
    assert health[0] == 200 and json.loads(health[2]) == {"status": "ok"}
    assert ready[0] == 503 and again[0] == 503
    assert json.loads(ready[2])["status"] == "unavailable"
    assert back[0] == 200


def test_a_streaming_response_is_sent_chunk_by_chunk_and_closed():
    closed = []

    class Streaming:
        streaming = True

        def __iter__(self):
            yield b"one,"
            yield b"two"

        def close(self):
            closed.append(threading.current_thread().name)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Streaming()

    status, _, body, sent = asyncio.run(request(WSGIThreadPool(app, threads=1), scope()))
    assert status == 200 and body == b"one,two"
    assert [m.get("more_body", False) for m in sent[1:]] == [True, False]  # small chunks travel together
    assert closed and closed[0].startswith("http")


@pytest.mark.django_db
def test_the_asgi_application_serves_the_api_through_the_pool(settings):
    from django.test import override_settings

    from messaging_app.asgi import application

    with override_settings(ALLOWED_HOSTS=["testserver", "127.0.0.1"]):
        status, headers, body, _ = asyncio.run(request(application, scope(
            "/api/", headers=[(b"host", b"127.0.0.1"), (b"accept", b"application/json")])))
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert "x-request-id" in headers


@pytest.mark.django_db
def test_django_cookies_come_out_as_legal_header_values():
    """Django's WSGI handler writes Set-Cookie values with a leading space; h11 (uvicorn) refused
    them, and every page setting a cookie (Swagger UI's CSRF cookie) ended in an empty reply."""
    import h11
    from django.test import override_settings

    from messaging_app.asgi import application

    with override_settings(ALLOWED_HOSTS=["127.0.0.1"]):
        status, headers, _, sent = asyncio.run(request(application, scope(
            "/api-auth/login/", headers=[(b"host", b"127.0.0.1")])))
    assert status == 200 and "csrftoken=" in headers["set-cookie"]
    h11.Response(status_code=status, headers=sent[0]["headers"])  # raises on an illegal header


def test_a_large_streamed_file_crosses_in_pieces_of_about_64_kib():
    class Streaming:
        streaming = True

        def __iter__(self):
            for _ in range(64):  # 256 KiB in 4 KiB chunks, as Django's FileResponse reads a file
                yield b"x" * 4096

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Streaming()

    status, _, body, sent = asyncio.run(request(WSGIThreadPool(app, threads=1), scope()))
    assert status == 200 and body == b"x" * 4096 * 64
    assert [len(m["body"]) for m in sent[1:]] == [64 * 1024] * 4 + [0]


def test_probes_that_arrive_during_a_readiness_check_share_its_answer():
    """Orchestrators probe often, from several places: a check in progress is not a stuck one."""
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        time.sleep(0.2)  # a database that takes a moment
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']

    pool = WSGIThreadPool(app, threads=1, readyz_timeout=2)

    async def scenario():
        return await asyncio.gather(*(request(pool, scope("/readyz")) for _ in range(5)))

    answers = asyncio.run(scenario())
    assert [status for status, *_ in answers] == [200] * 5
    assert calls == ["/readyz"]  # one check for the five probes
