"""
Security round 2 (issue 12): what a request can make the server log, which request ids it
echoes, the headers on API and HTML responses, and the cost of the public schema.
"""
import io
import logging
import re
import uuid

import pytest

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
