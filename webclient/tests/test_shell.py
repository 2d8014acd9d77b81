"""The web client's HTML shell at /app/: served by the app, linked from the landing page, never cached,
under the site's Content-Security-Policy with only the WebSocket origin and blob: images added (and only here)."""
import re

from django.contrib.staticfiles import finders

from messaging_app.security_headers import PAGES_CONTENT_SECURITY_POLICY


def test_the_shell_is_served_uncached_with_its_own_connect_src(client):
    response = client.get("/app/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"]
    csp = response["Content-Security-Policy"]
    assert "connect-src 'self' ws://testserver;" in csp
    # Attachments are shown from object URLs of blobs fetched with the JWT: blob: images, here only.
    assert "img-src 'self' data: blob:;" in csp
    # Everything else is the site's policy: no inline script, nothing from another host.
    assert csp.replace(" ws://testserver", "").replace(" blob:", "") == PAGES_CONTENT_SECURITY_POLICY
    assert "blob:" not in PAGES_CONTENT_SECURITY_POLICY
    html = response.content.decode()
    assert '<script type="module" src="/static/webclient/app.js"></script>' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script would be blocked by the CSP"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the client loads nothing from another host"


def test_the_shell_names_wss_behind_tls(client):
    response = client.get("/app/", secure=True)
    assert "connect-src 'self' wss://testserver;" in response["Content-Security-Policy"]


def test_only_safe_methods(client):
    assert client.post("/app/").status_code == 405


def test_the_rest_of_the_site_keeps_its_policy(client):
    assert client.get("/")["Content-Security-Policy"] == PAGES_CONTENT_SECURITY_POLICY


def test_the_landing_page_links_the_client(client):
    assert 'href="/app/"' in client.get("/").content.decode()


def test_static_files_are_found_and_import_nothing_from_elsewhere():
    for name in ("webclient/app.js", "webclient/app.css"):
        path = finders.find(name)
        assert path, name
        text = open(path, encoding="utf-8").read()
        assert not re.search(r"https?://", text.replace("http://127.0.0.1", "")), f"{name} names another host"
