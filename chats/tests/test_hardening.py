"""
Security round 2 (issue 12): what a request can make the server log, which request ids it
echoes, the headers on API and HTML responses, and the cost of the public schema.
"""
import io
import logging
import re
import uuid

import pytest
from django.test import override_settings

from chats.models import User
from chats.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def log_output():
    """What the app's real log handler (settings.LOGGING "console") writes, as text."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


class TestLogInjection:
    @pytest.mark.parametrize(
        "raw_path, escaped",
        [
            ("/%0d%0a2026-01-01 00:00:00,000 INFO messaging_app.requests [x] GET /admin/ 200", "\\r\\n2026-01-01"),
            ("/%0aFORGED", "\\nFORGED"),
            ("/%1b[2J%1b]0;owned%07", "\\x1b[2J\\x1b]0;owned\\x07"),  # clear screen, set the title
            ("/%E2%80%A8next%C2%85line%0bv%0cf", "\\u2028next\\x85line\\x0bv\\x0cf"),
        ],
    )
    def test_a_request_path_cannot_forge_log_lines_or_reach_the_terminal(self, client, log_output, raw_path, escaped):
        response = client.get(raw_path)
        assert response.status_code == 404
        written = log_output.getvalue()
        request_lines = [line for line in written.splitlines() if "messaging_app.requests" in line]
        # One record, one physical line, whatever line breaks str.splitlines() knows.
        assert len(written.splitlines()) == 1 and len(request_lines) == 1, written
        assert f"GET /{escaped}" in request_lines[0]
        assert request_lines[0].endswith("ms")
        assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", written.rstrip("\n"))

    def test_a_traceback_never_starts_a_line_of_its_own(self, log_output):
        """An exception message quoting a request cannot pose as a record of its own."""
        try:
            raise ValueError("bad\r\n2026-01-01 00:00:00,000 INFO messaging_app.requests [x] GET / 200\x1b[0m")
        except ValueError:
            logging.getLogger("chats").exception("failed")
        lines = log_output.getvalue().splitlines()
        assert lines[0].endswith("ERROR chats [None] failed")
        assert all(line.startswith(" ") for line in lines[1:]), lines
        assert "\x1b" not in log_output.getvalue() and "\\x1b[0m" in lines[-1]


class TestRequestIds:
    @pytest.mark.parametrize(
        "spelling",
        [
            lambda u: u.hex,  # no hyphens
            lambda u: str(u).upper(),
            lambda u: "{%s}" % u,
            lambda u: f"urn:uuid:{u}",
            lambda u: f" {u}",
            lambda u: f"{u}\n",
            lambda u: str(u).replace("-", "-\u2028", 1),
        ],
        ids=["hex", "upper", "braces", "urn", "space", "newline", "line-separator"],
    )
    def test_only_a_canonical_uuid_is_echoed(self, client, log_output, spelling):
        given = spelling(uuid.uuid4())
        response = client.get("/api/ping/", HTTP_X_REQUEST_ID=given)
        returned = response["X-Request-ID"]
        assert CANONICAL_UUID.fullmatch(returned) and returned != given
        assert f"[{returned}] GET /api/ping/" in log_output.getvalue()

    def test_a_canonical_uuid_is_kept_and_a_new_one_is_canonical(self, client, log_output):
        given = str(uuid.uuid4())
        assert client.get("/api/ping/", HTTP_X_REQUEST_ID=given)["X-Request-ID"] == given
        assert f"[{given}] GET /api/ping/" in log_output.getvalue()
        assert CANONICAL_UUID.fullmatch(client.get("/api/ping/")["X-Request-ID"])


def _bearer(client, user) -> str:
    response = client.post("/api/token/", {"email": user.email, "password": PASSWORD}, content_type="application/json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"  # the tokens themselves
    return f"Bearer {response.json()['access']}"


class TestCacheControl:
    def test_authenticated_api_responses_are_never_stored(self, client, conversation, alice):
        bearer = _bearer(client, alice)
        for path in ["/api/users/me/", "/api/conversations/", f"/api/conversations/{conversation.pk}/messages/"]:
            response = client.get(path, HTTP_AUTHORIZATION=bearer)
            assert response.status_code == 200 and response["Cache-Control"] == "no-store", path
        sent = client.post(
            f"/api/conversations/{conversation.pk}/messages/", {"message_body": "hi"},
            content_type="application/json", HTTP_AUTHORIZATION=bearer,
        )
        assert sent.status_code == 201 and sent["Cache-Control"] == "no-store"

    def test_every_api_answer_and_any_page_seen_with_a_session_is_never_stored(self, client, alice):
        anonymous = client.get("/api/users/me/")
        assert anonymous.status_code == 401 and anonymous["Cache-Control"] == "no-store"
        assert "Content-Security-Policy" not in anonymous  # JSON: only HTML pages need one
        assert client.get("/api/nowhere/")["Cache-Control"] == "no-store"  # 404
        client.force_login(alice)
        browsable = client.get("/api/users/me/", HTTP_ACCEPT="text/html")
        assert browsable.status_code == 200 and browsable["Cache-Control"] == "no-store"
        assert client.get("/")["Cache-Control"] == "no-store"


PAGES = ["/", "/docs/websocket/", "/api/", "/api/users/me/", "/api-auth/login/", "/admin/", "/admin/chats/user/",
         "/admin/chats/user/add/", "/admin/chats/conversation/"]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


class TestContentSecurityPolicy:
    @pytest.fixture
    def staff_client(self, client):
        admin = User.objects.create_superuser("root@example.com", PASSWORD, first_name="Ad", last_name="Min")
        UserFactory()
        client.force_login(admin)
        return client

    @pytest.mark.parametrize("path", PAGES)
    def test_every_html_page_allows_only_this_hosts_scripts(self, staff_client, path):
        response = staff_client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
        policy = dict(d.strip().split(" ", 1) for d in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert policy["base-uri"] == "'self'" and policy["form-action"] == "'self'"
        # The policy costs the page nothing: it has no inline script and no event-handler attribute.
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html) and not EVENT_HANDLER.search(html)

    def test_anonymous_pages_carry_it_too(self, client):
        for path in ["/", "/api-auth/login/", "/admin/login/"]:
            response = client.get(path)
            assert "script-src 'self';" in response["Content-Security-Policy"], path
            assert not INLINE_SCRIPT.search(response.content.decode()), path


class TestSchemaCost:
    JSON = "application/vnd.oai.openapi+json"

    @override_settings(ALLOWED_HOSTS=["testserver", "api.example.com", "docs.example.com"])
    def test_the_schema_is_generated_once_per_release_and_revalidated_by_etag(self, client, monkeypatch):
        from messaging_app.api_docs import SchemaView, _rendered_schemas

        _rendered_schemas.clear()
        generated = []
        render = SchemaView._render
        monkeypatch.setattr(SchemaView, "_render", lambda view, request: generated.append(1) or render(view, request))
        host = {"HTTP_HOST": "api.example.com", "HTTP_ACCEPT": self.JSON}
        first = client.get("/api/schema/", **host)
        assert first.status_code == 200 and first["Cache-Control"] == "public, max-age=300"
        assert first.json()["servers"][0]["url"] == "http://api.example.com"
        assert "Accept" in first["Vary"]
        # ?lang= and ?version= would each have generated (and kept) a schema of their own.
        paths = ["/api/schema/", "/api/schema/?lang=fr", "/api/schema/?version=9"]
        again = [client.get(path, **host) for path in paths]
        assert all(r.content == first.content and r["ETag"] == first["ETag"] for r in again)
        assert len(generated) == 1  # the later answers are the kept one
        revalidated = client.get("/api/schema/", HTTP_IF_NONE_MATCH=first["ETag"], **host)
        assert revalidated.status_code == 304 and revalidated.content == b"" and revalidated["ETag"] == first["ETag"]
        # Each host (and format) gets its own: the servers entry names the address asked for.
        other = client.get("/api/schema/", HTTP_HOST="docs.example.com", HTTP_ACCEPT=self.JSON)
        assert other.json()["servers"][0]["url"] == "http://docs.example.com" and other["ETag"] != first["ETag"]
        yaml = client.get("/api/schema/", HTTP_HOST="api.example.com")
        assert yaml["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
        assert yaml["Content-Disposition"] == 'inline; filename="messaging_app-api.yaml"'
        assert b"url: http://api.example.com" in yaml.content and yaml["ETag"] != first["ETag"]
