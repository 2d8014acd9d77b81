"""
WebSocket security (docs/websocket.md): the cap on sockets per user (4409), cookie
authentication only from the socket's own full origin (scheme, host, port) or a
trusted one, and sockets closed (4401) within seconds once the credentials they
stand on are revoked: a password change, a logout (that login's sockets only), an
account deactivated or deleted in the admin. Each credential change goes through
the real API or admin, and other people's sockets stay open.

Same machinery as test_realtime.py (its `ws` fixture and helpers), on the real ASGI
application; with REDIS_URL set the slots and events go through Redis.
"""
import io

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from chats.models import User
from chats.tests import test_realtime as realtime
from chats.tests.factories import PASSWORD, UserFactory, make_conversation
from chats.tests.test_admin_integrity import page_data
from chats.tests.test_realtime import (
    LOCAL_HOSTS,
    TIMEOUT,
    assert_closed,
    assert_cookie_authenticated,
    assert_open,
    assert_silent,
    receive,
    session_cookie,
)
from chats.tests.utils import assert_auth_ok

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

db = database_sync_to_async
ws = realtime.ws  # fixture: sockets closed after each test
fresh_live_delivery = realtime.fresh_live_delivery  # autouse fixture: a new in-memory layer per test
NEW_PASSWORD = "a-brand-new-passphrase-42"


async def authenticate(socket, access: str, user) -> None:
    await socket.send_json_to({"type": "auth", "token": access})
    assert_auth_ok(await receive(socket), user)


async def assert_refused_with_4409(ws, user) -> None:
    """A further socket of this user: its auth frame is answered by the 4409 close, no auth.ok."""
    socket = await ws.open()
    await socket.send_json_to({"type": "auth", "token": str(AccessToken.for_user(user))})
    await assert_closed(socket, 4409)


# ==================================================================================
# At most WS_MAX_SOCKETS_PER_USER sockets per user
# ==================================================================================
async def test_the_default_cap_accepts_20_sockets_and_closes_the_21st_with_4409(ws, alice, bob):
    """The report: 200 of 200 sockets of one account were accepted, and each event went out 200 times."""
    sockets = [await ws.login(alice) for _ in range(20)]
    await assert_refused_with_4409(ws, alice)
    await assert_open(sockets[0])
    await ws.login(bob)  # the cap is per user


async def test_beyond_the_cap_the_new_socket_is_refused_and_each_event_reaches_each_open_socket_once(
    ws, settings, alice, bob
):
    settings.WS_MAX_SOCKETS_PER_USER = 3
    sockets = [await ws.login(alice) for _ in range(3)]
    await assert_refused_with_4409(ws, alice)
    bob_socket = await ws.login(bob)
    await db(make_conversation)(bob, alice)
    for socket in [*sockets, bob_socket]:
        assert (await receive(socket))["type"] == "conversation.created"
    await assert_silent(*sockets, bob_socket)


async def test_a_closed_socket_gives_its_slot_back(ws, settings, alice):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    first = await ws.login(alice)
    await ws.login(alice)
    await first.disconnect()
    await ws.login(alice)
    await assert_refused_with_4409(ws, alice)


async def test_cookie_authenticated_sockets_count_against_the_cap(ws, settings, alice):
    settings.WS_MAX_SOCKETS_PER_USER = 1
    settings.WS_AUTH_TIMEOUT = 0.5
    cookie_socket = await ws.open(headers=[(b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(cookie_socket, alice)
    await assert_refused_with_4409(ws, alice)
    second_cookie_socket = await ws.open(headers=[(b"cookie", await session_cookie(alice))])
    await assert_closed(second_cookie_socket, 4409)


# ==================================================================================
# Cookie authentication: the whole origin must match
# ==================================================================================
@pytest.mark.parametrize(
    "headers",
    [
        # Same host, another port: another origin (another server on that machine).
        [(b"origin", b"http://127.0.0.1:9999"), (b"host", b"127.0.0.1:8000")],
        [(b"origin", b"http://localhost:8000"), (b"host", b"localhost")],
        [(b"origin", b"http://localhost"), (b"host", b"localhost:8000")],
        # Same host and port, another scheme: a plain-HTTP page may not use an HTTPS site's cookie...
        [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"x-forwarded-proto", b"https")],
        # ... nor the other way round.
        [(b"origin", b"https://localhost"), (b"host", b"localhost")],
        [(b"origin", b"https://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")],
    ],
    ids=["other-port", "port-vs-none", "none-vs-port", "http-to-https", "https-to-http", "https-to-http-port"],
)
async def test_session_cookie_from_our_host_with_another_port_or_scheme_is_ignored(ws, settings, alice, headers):
    settings.ALLOWED_HOSTS = LOCAL_HOSTS
    settings.WS_AUTH_TIMEOUT = 0.3
    socket = await ws.open(headers=headers + [(b"cookie", await session_cookie(alice))])
    await assert_closed(socket, 4401)  # the first frame is the close: no auth.ok came before it


async def test_session_cookie_from_a_csrf_trusted_origin_authenticates_but_not_from_its_other_ports(
    ws, settings, alice
):
    """Behind a proxy the page's origin may differ from the Host the server sees: DJANGO_CSRF_TRUSTED_ORIGINS."""
    settings.ALLOWED_HOSTS = ["backend.internal"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    settings.WS_AUTH_TIMEOUT = 0.5
    cookie = await session_cookie(alice)
    trusted = await ws.open(
        headers=[(b"origin", b"https://chat.example.com"), (b"host", b"backend.internal"), (b"cookie", cookie)]
    )
    await assert_cookie_authenticated(trusted, alice)
    for origin in (b"https://chat.example.com:8443", b"http://chat.example.com"):
        other = await ws.open(headers=[(b"origin", origin), (b"host", b"backend.internal"), (b"cookie", cookie)])
        await assert_closed(other, 4401)


async def test_a_wildcard_csrf_trusted_origin_trusts_its_subdomains_with_its_scheme(ws, settings, alice):
    settings.ALLOWED_HOSTS = ["backend.internal"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com"]
    settings.WS_AUTH_TIMEOUT = 0.5
    cookie = await session_cookie(alice)
    sub = await ws.open(headers=[(b"origin", b"https://app.example.com"), (b"host", b"backend.internal"),
                                 (b"cookie", cookie)])
    await assert_cookie_authenticated(sub, alice)
    for origin in (b"http://app.example.com", b"https://app.example.com.evil.example"):
        other = await ws.open(headers=[(b"origin", origin), (b"host", b"backend.internal"), (b"cookie", cookie)])
        await assert_closed(other, 4401)


# ==================================================================================
# Revoked credentials close the sockets that stand on them
# ==================================================================================
@db
def login(user) -> dict:
    """POST /api/token/: {"access", "refresh"} of a new login (a device)."""
    response = APIClient().post("/api/token/", {"email": user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@db
def post(path: str, data: dict, *, user=None, status: int) -> dict | None:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    response = client.post(path, data, format="json")
    assert response.status_code == status, response.content
    return response.json() if response.content else None


async def test_a_password_change_closes_every_socket_of_the_user_with_4401_and_no_one_elses(ws, alice, bob):
    phone = await ws.open()
    await authenticate(phone, (await login(alice))["access"], alice)
    browser = await ws.open(headers=[(b"cookie", await session_cookie(alice))])
    await assert_cookie_authenticated(browser, alice)
    bob_socket = await ws.login(bob)

    await post("/api/users/me/password/", {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
               user=alice, status=204)
    await assert_closed(phone, 4401, timeout=TIMEOUT)
    await assert_closed(browser, 4401, timeout=TIMEOUT)
    await assert_open(bob_socket)


async def test_logout_closes_the_sockets_of_that_login_even_after_rotation_and_not_the_other_devices(
    ws, alice, bob
):
    phone, laptop = await login(alice), await login(alice)
    phone_before_rotation = await ws.open()
    await authenticate(phone_before_rotation, phone["access"], alice)
    rotated = await post("/api/token/refresh/", {"refresh": phone["refresh"]}, status=200)
    phone_after_rotation = await ws.open()
    await authenticate(phone_after_rotation, rotated["access"], alice)
    laptop_socket = await ws.open()
    await authenticate(laptop_socket, laptop["access"], alice)
    bob_socket = await ws.login(bob)

    await post("/api/token/blacklist/", {"refresh": rotated["refresh"]}, status=200)
    await assert_closed(phone_before_rotation, 4401, timeout=TIMEOUT)
    await assert_closed(phone_after_rotation, 4401, timeout=TIMEOUT)
    await assert_open(laptop_socket)
    await assert_open(bob_socket)


async def test_logout_with_a_token_from_before_login_ids_closes_all_the_users_sockets(ws, alice, bob):
    """Such a token names no login, so every socket of its user closes (the safe side)."""
    legacy = await db(RefreshToken.for_user)(alice)
    assert "login_id" not in legacy.payload
    sockets = [await ws.login(alice), await ws.login(alice)]
    bob_socket = await ws.login(bob)
    await post("/api/token/blacklist/", {"refresh": str(legacy)}, status=200)
    for socket in sockets:
        await assert_closed(socket, 4401, timeout=TIMEOUT)
    await assert_open(bob_socket)


@db
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@db
def admin_deactivate(client: Client, user) -> None:
    """Unticks Active on the user's admin page and saves it, as staff would."""
    url = f"/admin/chats/user/{user.pk}/change/"
    data = page_data(client.get(url))
    data.pop("is_active")
    response = client.post(url, data)
    assert response.status_code == 302, response.content
    assert not User.objects.get(pk=user.pk).is_active


async def test_deactivating_an_account_in_the_admin_closes_its_sockets_with_4401(ws, alice, bob):
    client = await staff_client()
    sockets = [await ws.login(alice), await ws.open(headers=[(b"cookie", await session_cookie(alice))])]
    await assert_cookie_authenticated(sockets[1], alice)
    bob_socket = await ws.login(bob)
    await admin_deactivate(client, alice)
    for socket in sockets:
        await assert_closed(socket, 4401, timeout=TIMEOUT)
    await assert_open(bob_socket)


@db
def refresh_token_is_blacklisted(refresh: RefreshToken) -> bool:
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    return BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()


async def test_a_password_set_in_the_admin_ends_the_users_logins(ws, alice, bob):
    """Staff's "change password" form: the user's refresh tokens are blacklisted and their sockets close."""
    client = await staff_client()
    refresh = await db(RefreshToken.for_user)(alice)
    socket = await ws.login(alice)
    bob_socket = await ws.login(bob)
    response = await db(client.post)(f"/admin/chats/user/{alice.pk}/password/",
                                     {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302, response.content
    assert await db(lambda: User.objects.get(pk=alice.pk).check_password(NEW_PASSWORD))()
    await assert_closed(socket, 4401, timeout=TIMEOUT)
    assert await refresh_token_is_blacklisted(refresh)
    await assert_open(bob_socket)


async def test_manage_py_changepassword_ends_the_users_logins(ws, alice, bob, monkeypatch):
    from django.contrib.auth.management.commands import changepassword
    from django.core.management import call_command

    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="Password: ": NEW_PASSWORD)
    refresh = await db(RefreshToken.for_user)(alice)
    socket = await ws.login(alice)
    bob_socket = await ws.login(bob)
    await db(call_command)("changepassword", alice.email, stdout=io.StringIO())
    assert await db(lambda: User.objects.get(pk=alice.pk).check_password(NEW_PASSWORD))()
    await assert_closed(socket, 4401, timeout=TIMEOUT)
    assert await refresh_token_is_blacklisted(refresh)
    await assert_open(bob_socket)


async def test_deleting_an_account_in_the_admin_closes_its_sockets_with_4401(ws, alice, bob):
    client = await staff_client()
    socket = await ws.login(alice)
    bob_socket = await ws.login(bob)
    response = await db(client.post)(f"/admin/chats/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not await db(User.objects.filter(pk=alice.pk).exists)()
    await assert_closed(socket, 4401, timeout=TIMEOUT)
    await assert_open(bob_socket)


@db
def browser_logged_in(user) -> Client:
    """A browser with a session of its own (Django's login)."""
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client


def cookie_of(browser: Client) -> bytes:
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={browser.cookies[name].value}".encode()


@db
def log_out(browser: Client, path: str) -> None:
    assert browser.post(path).status_code in (200, 302)


@pytest.mark.parametrize("logout_path", ["/api-auth/logout/", "/admin/logout/"])
async def test_a_session_logout_closes_that_browsers_sockets_and_not_the_others(ws, alice, bob, logout_path):
    """Logging out of the browsable API (or the admin) ends the cookie sockets of that session only."""
    if logout_path.startswith("/admin/"):
        await db(User.objects.filter(pk=alice.pk).update)(is_staff=True)  # the admin serves staff only
    leaving, staying = await browser_logged_in(alice), await browser_logged_in(alice)
    leaving_socket = await ws.open(headers=[(b"cookie", cookie_of(leaving))])
    await assert_cookie_authenticated(leaving_socket, alice)
    staying_socket = await ws.open(headers=[(b"cookie", cookie_of(staying))])
    await assert_cookie_authenticated(staying_socket, alice)
    phone = await ws.open()
    await authenticate(phone, (await login(alice))["access"], alice)
    bob_socket = await ws.login(bob)

    await log_out(leaving, logout_path)
    await assert_closed(leaving_socket, 4401, timeout=TIMEOUT)
    await assert_open(staying_socket)
    await assert_open(phone)
    await assert_open(bob_socket)
