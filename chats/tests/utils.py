"""Assertions shared by the API tests."""


def assert_error(response, status_code: int, code: str | None = None, attr: str | None = None):
    """Every error has the one documented shape."""
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == {"type", "errors"}, body
    assert body["type"] in {"validation_error", "client_error", "server_error"}
    assert body["errors"] and all(set(e) == {"code", "detail", "attr"} for e in body["errors"])
    if code is not None:
        assert code in {e["code"] for e in body["errors"]}, body
    if attr is not None:
        assert attr in {e["attr"] for e in body["errors"]}, body
    return body


def assert_auth_ok(frame: dict, user) -> None:
    """A socket's auth.ok: who it is, and where their event stream stands."""
    assert set(frame) == {"type", "user_id", "last_event_id"}, frame
    assert frame["type"] == "auth.ok" and frame["user_id"] == str(user.pk)
    assert isinstance(frame["last_event_id"], int) and frame["last_event_id"] >= 0
